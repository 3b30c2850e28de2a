"""One suite for file metadata, against SQLite and the real PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.files.rules import StoredFile, new_id, token_digest
from satchel.metadata.files import SqlFileRepo

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def repo(engine: AsyncEngine) -> SqlFileRepo:
    return SqlFileRepo(engine)


def record(**changes: object) -> StoredFile:
    base = StoredFile(
        id=new_id(), name="фото.jpg", size=10, content_type="image/jpeg", sha256="ab" * 32,
        crc32=0xFFFFFFFF, created_at=NOW, expires_at=NOW + timedelta(days=7), max_downloads=None,
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_insert_then_get_round_trips(repo: SqlFileRepo) -> None:
    r = record(max_downloads=3)
    await repo.insert(r, token_digest("t"))
    assert await repo.get(r.id) == r
    assert await repo.get("missing") is None


async def test_racing_claims_never_pass_the_maximum(repo: SqlFileRepo) -> None:
    r = record(max_downloads=5)
    await repo.insert(r, token_digest("t"))
    claimed = await asyncio.gather(*(repo.claim_download(r.id, NOW) for _ in range(20)))
    assert claimed.count(True) == 5
    got = await repo.get(r.id)
    assert got is not None and got.downloads == 0 and got.downloads_left == 5  # none done yet
    for _ in range(5):
        await repo.end_download(r.id, completed=True, claimed=True)
    got = await repo.get(r.id)
    assert got is not None and got.downloads == 5 and got.downloads_left == 0
    assert not await repo.claim_download(r.id, NOW)


async def test_a_claim_given_back_can_be_taken_again(repo: SqlFileRepo) -> None:
    r = record(max_downloads=1)
    await repo.insert(r, token_digest("t"))
    assert await repo.claim_download(r.id, NOW)
    assert not await repo.claim_download(r.id, NOW)
    await repo.end_download(r.id, completed=False, claimed=True)  # cut short
    assert await repo.claim_download(r.id, NOW)
    await repo.end_download(r.id, completed=True, claimed=True)
    got = await repo.get(r.id)
    assert got is not None and got.downloads == 1 and not got.available(NOW)


async def test_unlimited_files_count_every_download(repo: SqlFileRepo) -> None:
    r = record()
    await repo.insert(r, token_digest("t"))
    for _ in range(3):
        await repo.end_download(r.id, completed=True, claimed=False)
    got = await repo.get(r.id)
    assert got is not None and got.downloads == 3 and got.downloads_left is None


async def test_expired_files_cannot_be_claimed(repo: SqlFileRepo) -> None:
    r = record(expires_at=NOW - timedelta(seconds=1), max_downloads=3)
    await repo.insert(r, token_digest("t"))
    assert not await repo.claim_download(r.id, NOW)


async def test_purge_lets_go_of_claims_left_by_a_dead_process(repo: SqlFileRepo) -> None:
    r = record(max_downloads=1)
    await repo.insert(r, token_digest("t"))
    assert await repo.claim_download(r.id, NOW - timedelta(days=2))
    assert not await repo.claim_download(r.id, NOW)
    assert await repo.purge(NOW) == []
    assert await repo.claim_download(r.id, NOW)


async def test_delete_needs_the_right_token(repo: SqlFileRepo) -> None:
    r = record()
    await repo.insert(r, token_digest("secret"))
    assert not await repo.delete(r.id, token_digest("wrong"))
    assert await repo.get(r.id) is not None
    assert await repo.delete(r.id, token_digest("secret"))
    assert await repo.get(r.id) is None


async def test_purge_removes_expired_and_used_up_only(repo: SqlFileRepo) -> None:
    expired = record(expires_at=NOW - timedelta(minutes=1))
    used_up = record(max_downloads=1, downloads=1)
    alive = record(max_downloads=2, downloads=1)
    for r in (expired, used_up, alive):
        await repo.insert(r, token_digest("t"))
    assert sorted(await repo.purge(NOW)) == sorted([expired.id, used_up.id])
    assert await repo.known([expired.id, used_up.id, alive.id, "nope"]) == {alive.id}
