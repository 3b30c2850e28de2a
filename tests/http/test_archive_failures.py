"""What happens when files change mid-stream or clients vanish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import make_folder, open_fds

from .conftest import ClientFactory


def ended(caplog: pytest.LogCaptureFixture, what: str, level: int) -> list[tuple[object, ...]]:
    """How the server recorded the end of a download of ``what`` that did not finish:
    (what, bytes sent, bytes declared, …) of its records at ``level``; the data, not
    the wording."""
    return [
        r.args
        for r in caplog.records
        if r.name == "satchel.http" and r.levelno == level
        and isinstance(r.args, tuple) and r.args[0] == what
    ]  # fmt: skip


async def test_file_changed_mid_stream_aborts_the_connection(
    make_client: ClientFactory, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_folder(
        photos, "x", {"a.bin": os.urandom(64 * 1024), "b.bin": os.urandom(64 * 1024)}
    )
    client = await make_client(delay=0.02, chunk_size=4096)
    resp = await client.get("/archive/x/")
    declared = int(resp.headers["Content-Length"])
    await resp.content.readexactly(4096)
    (folder / "b.bin").write_bytes(b"changed")  # before its header is reached
    received = 4096
    with pytest.raises(aiohttp.ClientPayloadError):
        while chunk := await resp.content.read(65536):
            received += len(chunk)
    assert received < declared
    [(_, sent, length, reason)] = ended(caplog, "archive x", logging.ERROR)
    assert isinstance(sent, int) and sent < declared == length and "b.bin" in str(reason)


async def test_file_removed_mid_stream_aborts_the_connection(
    make_client: ClientFactory, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = make_folder(photos, "y", {"a.bin": os.urandom(64 * 1024), "b.bin": b"soon gone"})
    client = await make_client(delay=0.02, chunk_size=4096)
    resp = await client.get("/archive/y/")
    await resp.content.readexactly(4096)
    (folder / "b.bin").unlink()
    with pytest.raises(aiohttp.ClientPayloadError):
        await resp.read()
    [(_, _, _, reason)] = ended(caplog, "archive y", logging.ERROR)
    assert "b.bin" in str(reason)


async def test_client_gone_is_logged_with_bytes_sent(
    make_client: ClientFactory, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="satchel")
    make_folder(photos, "g", {"a.bin": os.urandom(256 * 1024)})
    client = await make_client(delay=0.01, chunk_size=4096)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /archive/g/ HTTP/1.1\r\nHost: t\r\n\r\n")
    await reader.readexactly(8192)
    writer.transport.abort()
    for _ in range(200):
        if ended(caplog, "archive g", logging.INFO):
            break
        await asyncio.sleep(0.02)
    [(_, sent, length)] = ended(caplog, "archive g", logging.INFO)
    assert isinstance(sent, int) and isinstance(length, int) and 8192 <= sent < length


@pytest.mark.slow
async def test_a_thousand_aborted_downloads_leave_no_fds_or_tasks(
    make_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "big", {f"{i}.bin": os.urandom(4 * 1024 * 1024) for i in range(4)})
    client = await make_client()

    async def abort_one(n: int) -> None:
        reader, writer = await asyncio.open_connection(client.host, client.port)
        offset = (n * 7919) % (8 * 1024 * 1024)  # some start mid-file, by Range
        writer.write(
            f"GET /archive/big/ HTTP/1.1\r\nHost: t\r\nRange: bytes={offset}-\r\n\r\n".encode()
        )
        await reader.readexactly(1024)
        writer.transport.abort()

    # Warm-up: the database pool opens its (bounded) connections once.
    await asyncio.gather(*(abort_one(i) for i in range(50)))
    await asyncio.sleep(0.5)
    baseline_fds, baseline_tasks = open_fds(), len(asyncio.all_tasks())
    for batch in range(20):
        await asyncio.gather(*(abort_one(batch * 50 + i) for i in range(50)))
    for _ in range(300):
        if open_fds() <= baseline_fds and len(asyncio.all_tasks()) <= baseline_tasks:
            break
        await asyncio.sleep(0.05)
    assert open_fds() <= baseline_fds
    assert len(asyncio.all_tasks()) <= baseline_tasks


async def test_a_client_that_stops_reading_is_cut_off(
    make_client: ClientFactory, photos: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="satchel")
    folder = make_folder(photos, "stall", {})
    for i in range(4):  # 64 MiB of zeros, more than socket buffers hold; sparse, so cheap
        with (folder / f"{i}.bin").open("wb") as f:
            f.truncate(16 * 1024 * 1024)
    client = await make_client(send_timeout=0.5)
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(b"GET /archive/stall/ HTTP/1.1\r\nHost: t\r\n\r\n")
    await reader.readexactly(1024)  # then read nothing more, but keep the socket open
    for _ in range(100):
        if ended(caplog, "archive stall", logging.INFO):
            break
        await asyncio.sleep(0.05)
    [(_, sent, length)] = ended(caplog, "archive stall", logging.INFO)
    assert isinstance(sent, int) and isinstance(length, int) and sent < length
    received = 1024  # the server hung up: what was in flight arrives, then the end
    with contextlib.suppress(ConnectionResetError):
        async with asyncio.timeout(10):
            while chunk := await reader.read(1 << 20):
                received += len(chunk)
    assert received < length
    writer.close()
