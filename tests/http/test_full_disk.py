"""A full disk never wedges the service: every write path keeps to --disk-reserve,
counting what running uploads were promised, and a delete always works.

On a real small filesystem: a tmpfs mounted for each test (root only; CI runs as root).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from satchel.errors import InsufficientStorage
from satchel.space import Space
from tests.conftest import IN_CI

from .conftest import ClientFactory

MiB = 1024 * 1024
DISK = 48 * MiB
RESERVE = 8 * MiB
TUS = {"Tus-Resumable": "1.0.0"}
pytestmark = pytest.mark.slow


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    mounted = os.geteuid() == 0 and shutil.which("mount") is not None and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(where)], check=False
    ).returncode == 0  # fmt: skip
    if not mounted:
        if IN_CI:
            pytest.fail("cannot mount a tmpfs: CI runs as root and must")
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def photos(disk: Path) -> Path:
    (disk / "photos").mkdir()
    return disk / "photos"


@pytest.fixture
def data_dir(disk: Path) -> Path:
    return disk / "data"


def free(disk: Path) -> int:
    return shutil.disk_usage(disk).free


def leftovers(disk: Path) -> list[str]:
    """Files a refused write may not leave: stored files, temp files, folder members."""
    found = []
    for path in disk.rglob("*"):
        if path.is_file() and path.suffix not in (".sqlite3", ".sqlite3-wal", ".sqlite3-shm"):
            found.append(str(path.relative_to(disk)))
    return sorted(found)


async def _chunks(size: int) -> AsyncIterator[bytes]:
    block = os.urandom(MiB)
    for _ in range(size // MiB):
        yield block


def _multipart(size: int) -> Any:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(os.urandom(size)), filename="big.bin")
    return form


async def _write(client: TestClient[Any, Any], how: str, size: int) -> tuple[int, dict[str, str]]:
    """One write of ``size`` bytes by the path ``how``; (status, headers)."""
    if how == "tus":
        created = await client.post("/tus/", headers={**TUS, "Upload-Defer-Length": "1"})
        if created.status != 201:
            return created.status, dict(created.headers)
        url = created.headers["Location"].split("//", 1)[1].split("/", 1)[1]
        headers = {**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}
        resp = await client.patch(f"/{url}", data=_chunks(size), headers=headers)
        head = await client.head(f"/{url}", headers=TUS)
        assert resp.status != 507 or resp.headers["Upload-Offset"] == head.headers["Upload-Offset"]
        return resp.status, dict(resp.headers)
    if how == "plain":
        resp = await client.post("/files/", data=io.BytesIO(os.urandom(size)))
    elif how == "chunked":
        resp = await client.post("/files/", data=_chunks(size))
    elif how == "multipart":
        resp = await client.post("/files/", data=_multipart(size))
    else:
        resp = await client.put("/archive/g/big.bin", data=_chunks(size), headers=AUTH)
    return resp.status, dict(resp.headers)


AUTH = {"Authorization": "Bearer t"}


@pytest.mark.parametrize("how", ["plain", "chunked", "multipart", "tus", "folder"])
async def test_every_write_path_stops_at_the_reserve(
    make_app_client: ClientFactory, disk: Path, how: str
) -> None:
    client = await make_app_client(disk_reserve=RESERVE, upload_token=("t",))
    kept = await client.post("/files/", data=b"keep me", headers=AUTH)
    assert kept.status == 201
    before = leftovers(disk)
    status, _ = await _write_authorised(client, how, 44 * MiB)
    assert status == 507
    if how != "tus":  # a resumable upload keeps what it wrote, to resume later
        assert leftovers(disk) == before
    assert free(disk) >= RESERVE - 4 * MiB  # at most one look's worth into the reserve
    assert (await client.get("/healthz")).status == 200
    assert await (await client.get(f"/files/{(await kept.json())['id']}/")).read() == b"keep me"


async def _write_authorised(
    client: TestClient[Any, Any], how: str, size: int
) -> tuple[int, dict[str, str]]:
    client.session.headers.update(AUTH)
    try:
        return await _write(client, how, size)
    finally:
        client.session.headers.pop("Authorization")


async def test_an_upload_length_promises_its_rest(make_app_client: ClientFactory) -> None:
    client = await make_app_client(disk_reserve=RESERVE)
    created = await client.post("/tus/", headers={**TUS, "Upload-Length": str(20 * MiB)})
    assert created.status == 201
    assert (await client.post("/files/", data=io.BytesIO(os.urandom(25 * MiB)))).status == 507
    assert (
        await client.post("/tus/", headers={**TUS, "Upload-Length": str(25 * MiB)})
    ).status == 507
    url = created.headers["Location"].split("//", 1)[1].split("/", 1)[1]
    assert (await client.delete(f"/{url}", headers=TUS)).status == 204
    assert (await client.post("/files/", data=io.BytesIO(os.urandom(25 * MiB)))).status == 201


async def test_concurrent_uploads_never_eat_the_reserve(
    make_app_client: ClientFactory, disk: Path
) -> None:
    client = await make_app_client(disk_reserve=RESERVE)
    body = os.urandom(8 * MiB)
    answers = await asyncio.gather(
        *(client.post("/files/", data=io.BytesIO(body)) for _ in range(7))
    )
    statuses = sorted(a.status for a in answers)
    assert set(statuses) == {201, 507} and statuses.count(201) <= 5, statuses
    assert free(disk) >= RESERVE - MiB  # promised bodies are admitted exactly


@pytest.mark.parametrize("reserve", [0, RESERVE])
async def test_on_a_full_disk_writes_are_507_and_deletes_work(
    make_app_client: ClientFactory, disk: Path, reserve: int
) -> None:
    """Filled to the last block by someone else: writes are refused with 507 (never 500),
    and deleting a file or an upload works, because freeing space is the cure."""
    client = await make_app_client(disk_reserve=reserve)
    stored = await (await client.post("/files/", data=io.BytesIO(os.urandom(4 * MiB)))).json()
    created = await client.post("/tus/", headers={**TUS, "Upload-Length": str(MiB)})
    upload = created.headers["Location"].split("//", 1)[1].split("/", 1)[1]
    assert (disk / "data" / "ballast").stat().st_size == MiB  # room held back for deletes
    with _filled(disk):
        assert free(disk) < 64 * 1024
        for how in ("plain", "chunked", "tus"):
            status, headers = await _write(client, how, 2 * MiB)
            assert status == 507, how
        patch_headers = {
            **TUS,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        }
        resp = await client.patch(f"/{upload}", data=os.urandom(MiB), headers=patch_headers)
        assert resp.status == 507 and resp.headers["Upload-Offset"] == "0"
        assert (await client.delete(f"/{upload}", headers=TUS)).status == 204  # frees nothing
        assert not (disk / "data" / "ballast").exists()  # given up so the row could go
        token = {"X-Delete-Token": stored["delete_token"]}
        assert (await client.delete(f"/files/{stored['id']}/", headers=token)).status == 204
        assert (await client.get(f"/files/{stored['id']}/")).status == 404
        assert (await client.get("/healthz")).status == 200


@contextlib.contextmanager
def _filled(disk: Path) -> Iterator[None]:
    """Another program fills the filesystem to its last block."""
    filler = disk / "filler"
    with filler.open("wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * MiB)

        with contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 4096)

    try:
        yield
    finally:
        filler.unlink()


async def test_bodies_that_come_together_are_promised_room_first_come(disk: Path) -> None:
    """Seven bodies of 8 MiB enter at once: as many as fit above the reserve are
    promised room, the others refused, never all of them (each counting the others)."""
    space = Space(lambda: free(disk), RESERVE)
    fits = (free(disk) - RESERVE) // (8 * MiB)
    held = asyncio.Event()

    async def body() -> bool:
        try:
            async with space.promise(8 * MiB):
                await held.wait()
                return True
        except InsufficientStorage:
            return False

    bodies = [asyncio.create_task(body()) for _ in range(7)]
    await asyncio.sleep(0.5)  # every body has asked
    held.set()
    admitted = await asyncio.gather(*bodies)
    assert 0 < fits < 7 and admitted.count(True) == fits, (fits, admitted)
