"""One suite for resumable-upload metadata, against SQLite and the real PostgreSQL."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.files.rules import new_id
from satchel.metadata.files import SqlFileRepo
from satchel.metadata.tus import SqlUploadRepo
from satchel.tus.rules import Upload

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def repo(engine: AsyncEngine) -> SqlUploadRepo:
    return SqlUploadRepo(engine)


def upload(**changes: object) -> Upload:
    base = Upload(
        id=new_id(), length=10 * 1024**3, offset=0,
        metadata={"filename": "отпуск.mp4", "filetype": "video/mp4", "flag": None},
        file_id=new_id(), max_downloads=3, max_days=7,
        created_at=NOW, expires_at=NOW + timedelta(days=1),
    )  # fmt: skip
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


async def test_insert_then_get_round_trips(repo: SqlUploadRepo) -> None:
    u = upload()
    await repo.insert(u)
    assert await repo.get(u.id) == u
    assert await repo.get("missing") is None


async def test_offsets_lengths_and_completion_are_recorded(repo: SqlUploadRepo) -> None:
    u = upload(length=None)
    await repo.insert(u)
    later = NOW + timedelta(days=2)
    await repo.advance(u.id, 5 * 1024**3, None, later)
    assert await repo.get(u.id) == dataclasses.replace(u, offset=5 * 1024**3, expires_at=later)
    await repo.advance(u.id, 6 * 1024**3, 8 * 1024**3, later)
    await repo.complete(u.id)
    got = await repo.get(u.id)
    assert got is not None
    assert (got.offset, got.length, got.completed) == (6 * 1024**3, 8 * 1024**3, True)


async def test_expired_uploads_are_removed_once(repo: SqlUploadRepo) -> None:
    old, fresh = upload(expires_at=NOW - timedelta(seconds=1)), upload()
    await repo.insert(old)
    await repo.insert(fresh)
    assert await repo.expired(NOW) == [old.key]
    assert await repo.expired(NOW) == []
    assert await repo.get(fresh.id) == fresh


async def test_delete_says_whether_there_was_one(repo: SqlUploadRepo) -> None:
    u = upload()
    await repo.insert(u)
    assert await repo.delete(u.id) is True
    assert await repo.delete(u.id) is False


async def test_the_database_keeps_no_id_and_no_token(
    repo: SqlUploadRepo, engine: AsyncEngine
) -> None:
    u = upload()
    await repo.insert(u)
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM tus_uploads"))).all()
    stored = repr(rows)
    assert u.id not in stored and u.delete_token not in stored and u.key in stored


async def test_a_live_uploads_file_is_known_so_the_orphan_sweep_spares_it(
    repo: SqlUploadRepo, engine: AsyncEngine
) -> None:
    """On S3 a resumable upload's bytes become its file's object before the file's row
    is written (and a partial upload's stay so until it is joined)."""
    u = upload()
    await repo.insert(u)
    files = SqlFileRepo(engine)
    assert await files.known([u.file_id, "nope"]) == {u.file_id}
    await repo.delete(u.id)
    assert await files.known([u.file_id]) == set()
