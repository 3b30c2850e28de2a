"""/check answers from a short per-process cache: one lookup per id at a time, failures
not kept, and another worker's delete visible once the entry expires."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from satchel.files.rules import StoredFile
from satchel.files.service import FileStore
from satchel.http.keys import CHECKS, FILESTORE

from .conftest import ClientFactory


class GatedRepo:
    """The real repository, with its lookups counted and held until the gate opens."""

    def __init__(self, repo: Any) -> None:
        self.repo = repo
        self.gets = 0
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.fail_next = False
        self.replace: dict[str, Any] = {}

    async def get(self, file_id: str) -> StoredFile | None:
        self.gets += 1
        self.entered.set()
        await self.gate.wait()
        if self.fail_next:
            self.fail_next = False
            raise OSError("the database went away")
        record: StoredFile | None = await self.repo.get(file_id)
        return dataclasses.replace(record, **self.replace) if record else None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)


async def _uploaded(make_app_client: ClientFactory) -> tuple[Any, FileStore, GatedRepo, str]:
    client = await make_app_client()
    resp = await client.post("/files/", data=b"hello")
    assert resp.status == 201
    file_id = (await resp.json())["id"]
    store = client.app[FILESTORE]
    gated = GatedRepo(store.repo)
    store.repo = gated
    return client, store, gated, file_id


async def test_concurrent_checks_share_one_lookup(make_app_client: ClientFactory) -> None:
    client, _, repo, file_id = await _uploaded(make_app_client)
    requests = [asyncio.ensure_future(client.get(f"/check/{file_id}")) for _ in range(40)]
    await asyncio.wait_for(repo.entered.wait(), 5)
    await asyncio.sleep(0.1)  # every request has arrived and is waiting
    repo.gate.set()
    answers = await asyncio.gather(*requests)
    assert [r.status for r in answers] == [200] * 40
    bodies = {await r.read() for r in answers}
    assert len(bodies) == 1 and file_id.encode() in bodies.pop()
    assert repo.gets == 1


async def test_a_failed_lookup_is_not_kept(make_app_client: ClientFactory) -> None:
    client, _, repo, file_id = await _uploaded(make_app_client)
    repo.fail_next = True
    repo.gate.set()
    failed = await client.get(f"/check/{file_id}")
    assert failed.status == 500 and (await failed.json())["error"] == "internal_error"
    resp = await client.get(f"/check/{file_id}")
    assert resp.status == 200 and (await resp.json())["id"] == file_id
    assert repo.gets == 2


async def test_a_caller_that_leaves_does_not_cancel_the_lookup(
    make_app_client: ClientFactory,
) -> None:
    client, _, repo, file_id = await _uploaded(make_app_client)
    checks = client.app[CHECKS]
    leaving = asyncio.ensure_future(checks.answer(file_id, "http://satchel"))
    staying = asyncio.ensure_future(checks.answer(file_id, "http://satchel"))
    await asyncio.wait_for(repo.entered.wait(), 5)
    leaving.cancel()
    repo.gate.set()
    assert file_id.encode() in await staying
    assert leaving.cancelled() and repo.gets == 1


async def test_another_workers_delete_shows_once_the_entry_expires(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    # Two apps on one data folder stand for two worker processes.
    first = await make_app_client()
    second = await make_app_client()
    second.app[CHECKS].ttl = 0.2
    resp = await first.post("/files/", data=b"hello")
    created = await resp.json()
    check = f"/check/{created['id']}"
    assert (await second.get(check)).status == 200
    deleted = await first.delete(f"/files/{created['id']}/?token={created['delete_token']}")
    assert deleted.status == 204
    assert (await first.get(check)).status == 404  # its own delete: at once
    assert (await second.get(check)).status == 200  # cached, within check_ttl
    await asyncio.sleep(0.25)
    resp = await second.get(check)
    assert resp.status == 404 and (await resp.json())["error"] == "file_not_found"


async def test_a_cached_answer_ends_when_the_file_expires(make_app_client: ClientFactory) -> None:
    client, _, repo, file_id = await _uploaded(make_app_client)
    expires = datetime.now(UTC) + timedelta(seconds=0.3)
    repo.replace = {"expires_at": expires}
    repo.gate.set()
    client.app[CHECKS].ttl = 60.0  # the cache entry outlives the file
    first = await client.get(f"/check/{file_id}")
    assert first.status == 200 and (await first.json())["expires_at"] == expires.isoformat()
    assert (await client.get(f"/check/{file_id}")).status == 200
    await asyncio.sleep(0.35)
    gone = await client.get(f"/check/{file_id}")
    assert gone.status == 404 and (await gone.json())["error"] == "file_not_found"
    assert repo.gets == 1  # answered from the cache, which knows the expiry
