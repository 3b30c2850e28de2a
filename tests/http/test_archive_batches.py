"""Folders of many small files: their members are read in batches and sent with their
headers in one write. The bytes must be those of the whole archive for any range, the
CRCs computed on the way cached, and a member changed or removed before its batch is
read still cuts the connection."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import random
import time
import zipfile
import zlib
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from satchel.archive.sender import BATCH, SMALL
from tests.helpers import make_folder

from .conftest import ClientFactory
from .test_archive import crc_rows
from .test_archive_failures import abort_at, aborts_leave_nothing, ended


def small_files(count: int, seed: int) -> dict[str, bytes]:
    """Sizes around the batching threshold, empty ones too, some in sub-folders."""
    rng = random.Random(seed)
    sizes = [0, 1, SMALL - 1, SMALL, SMALL + 1, 3 * SMALL]
    return {
        f"d{i % 7}/{i:04}.jpg": rng.randbytes(rng.choice(sizes + [rng.randint(0, 20_000)] * 6))
        for i in range(count)
    }


async def test_any_range_of_a_folder_of_small_files_is_a_slice_of_the_whole(
    make_client: ClientFactory, photos: Path
) -> None:
    files = small_files(300, seed=5)
    make_folder(photos, "many", files)
    client = await make_client()
    whole = await (await client.get("/archive/many/")).read()  # cold: CRCs read in batches
    with zipfile.ZipFile(io.BytesIO(whole)) as zf:
        assert zf.testzip() is None
        assert {n: zf.read(n) for n in zf.namelist()} == files
    assert sum(len(d) for d in files.values()) > 3 * BATCH  # several batches
    assert await (await client.get("/archive/many/")).read() == whole  # warm
    rng = random.Random(9)
    for _ in range(40):
        start = rng.randrange(len(whole))
        stop = rng.randrange(start, min(start + 3 * BATCH, len(whole)))
        part = await client.get("/archive/many/", headers={"Range": f"bytes={start}-{stop}"})
        assert part.status == 206
        assert await part.read() == whole[start : stop + 1], (start, stop)


async def test_crcs_computed_in_a_range_are_cached(
    make_app_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    files = {f"{i}.jpg": os.urandom(1000 + i) for i in range(20)}
    make_folder(photos, "c", files)
    client = await make_app_client()
    head = await client.head("/archive/c/")
    size = int(head.headers["Content-Length"])
    part = await client.get("/archive/c/", headers={"Range": f"bytes=0-{size // 2}"})
    assert part.status == 206
    await part.read()
    deadline = time.monotonic() + 10  # saved once the last byte is out: maybe just after
    while not (cached := {name for _f, name, _crc in await crc_rows(data_dir)}):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert cached < set(files)  # those the first half reached, no more


@pytest.mark.parametrize("change", ["removed", "changed"])
async def test_a_small_member_gone_before_its_batch_cuts_the_connection(
    make_client: ClientFactory, photos: Path, caplog: pytest.LogCaptureFixture, change: str
) -> None:
    files = {f"{i:04}.jpg": os.urandom(4096) for i in range(1000)}
    folder = make_folder(photos, "slow", files)
    client = await make_client()
    resp = await client.get("/archive/slow/?kbps=1024")  # 4 s: the server is far behind
    declared = int(resp.headers["Content-Length"])
    await resp.content.readexactly(100_000)
    last = folder / "0999.jpg"
    if change == "removed":
        last.unlink()
    else:
        last.write_bytes(b"other bytes")
    received = 100_000
    with pytest.raises(aiohttp.ClientPayloadError):
        while chunk := await resp.content.read(65536):
            received += len(chunk)
    assert received < declared
    [(_, _, _, reason)] = ended(caplog, "archive slow", logging.ERROR)
    assert "0999.jpg" in str(reason)


async def snapshot_crcs(data_dir: Path, label: str, etag: str) -> bytes:
    """The CRCs of the snapshot of ``label`` once it is kept under ``etag`` (just after
    the archive's last byte, maybe)."""
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    query = text("SELECT etag, crcs FROM crc_snapshots WHERE label = :label")
    deadline = time.monotonic() + 10
    try:
        while True:
            async with engine.connect() as conn:
                row = (await conn.execute(query, {"label": label})).first()
            if row is not None and row[0] == etag:
                return bytes(row[1])
            assert time.monotonic() < deadline, row
            await asyncio.sleep(0.05)
    finally:
        await engine.dispose()


async def test_every_crc_of_an_archive_is_kept_in_one_snapshot_under_its_etag(
    make_app_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    files = {f"{i:02}.jpg": os.urandom(100 + i) for i in range(30)}
    folder = make_folder(photos, "snap", files)
    client = await make_app_client()
    first = await client.get("/archive/snap/")
    await first.read()
    packed = await snapshot_crcs(data_dir, "snap", first.headers["ETag"])
    assert packed == b"".join(zlib.crc32(files[n]).to_bytes(4, "big") for n in sorted(files))
    assert await crc_rows(data_dir) == []  # a folder's snapshot holds them: no row a file
    # Other bytes, same size and mtime: only a CRC kept can be the old one, so the header
    # proves the snapshot was read, not the file.
    st = os.stat(folder / "00.jpg")
    (folder / "00.jpg").write_bytes(b"z" * 100)
    os.utime(folder / "00.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    again = await (await client.get("/archive/snap/")).read()
    with zipfile.ZipFile(io.BytesIO(again)) as zf:
        assert zlib.crc32(files["00.jpg"]) == zf.getinfo("00.jpg").CRC
    # A new file is a new ETag: the snapshot still gives the CRCs of the files that did
    # not change (the old, wrong one of 00.jpg again proves it), and is replaced.
    (folder / "new.jpg").write_bytes(b"new")
    changed = await client.get("/archive/snap/")
    with zipfile.ZipFile(io.BytesIO(await changed.read())) as zf:
        assert zf.read("new.jpg") == b"new"
        assert zlib.crc32(files["00.jpg"]) == zf.getinfo("00.jpg").CRC
    packed = await snapshot_crcs(data_dir, "snap", changed.headers["ETag"])
    assert packed[-4:] == zlib.crc32(b"new").to_bytes(4, "big")


async def test_a_damaged_snapshot_is_not_trusted(
    make_app_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    """A snapshot row whose CRCs do not match its archive's member count (written by
    hand, or cut) is passed over: the CRCs are computed again, the archive is whole."""
    files = {f"{i:02}.jpg": os.urandom(50 + i) for i in range(12)}
    make_folder(photos, "cut", files)
    client = await make_app_client()
    first = await client.get("/archive/cut/")
    await first.read()
    await snapshot_crcs(data_dir, "cut", first.headers["ETag"])
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE crc_snapshots SET crcs = substr(crcs, 1, 8)"))
    await engine.dispose()
    again = await client.get("/archive/cut/")
    assert again.status == 200 and again.headers["ETag"] == first.headers["ETag"]
    with zipfile.ZipFile(io.BytesIO(await again.read())) as zf:
        assert zf.testzip() is None
        assert {n: zf.read(n) for n in zf.namelist()} == files


async def test_clients_gone_mid_batches_leave_no_fds_or_tasks(
    make_client: ClientFactory, photos: Path
) -> None:
    """Batches are assembled ahead in a thread; a client gone mid-run stops it, and every
    file it opened is closed."""
    make_folder(photos, "many", {f"{i:04}.jpg": os.urandom(8192) for i in range(800)})
    client = await make_client()
    size = int((await client.head("/archive/many/")).headers["Content-Length"])
    # some start mid-batch
    await aborts_leave_nothing(
        lambda n: abort_at(client, "/archive/many/", (n * 104_729) % (size - 65536), 65536), 40, 3
    )


async def test_clients_that_stop_reading_hold_no_thread(
    make_client: ClientFactory, photos: Path
) -> None:
    """A batch thread ends once a few batches wait for a client that takes nothing:
    more stalled downloads than the default thread pool has workers leave the server
    free to serve the next archive."""
    make_folder(photos, "many", {f"{i:04}.jpg": bytes(16384) for i in range(2000)})  # 33 MB
    make_folder(photos, "next", {"a.jpg": b"a", "b.jpg": b"b"})
    client = await make_client(send_timeout=120)
    stalled = []
    for _ in range(min(32, (os.cpu_count() or 1) + 4) + 2):  # ThreadPoolExecutor's default
        reader, writer = await asyncio.open_connection(client.host, client.port)
        writer.write(b"GET /archive/many/ HTTP/1.1\r\nHost: t\r\n\r\n")
        await reader.readexactly(1024)  # the stream is under way; then nothing is read
        stalled.append(writer)
    await asyncio.sleep(1)  # every sender fills the socket and its batches
    try:
        async with asyncio.timeout(10):
            resp = await client.get("/archive/next/")
            with zipfile.ZipFile(io.BytesIO(await resp.read())) as zf:
                assert zf.namelist() == ["a.jpg", "b.jpg"]
    finally:
        for writer in stalled:
            writer.transport.abort()
