"""What happens when files change mid-stream or clients vanish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

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


async def abort_at(client: TestClient[Any, Any], path: str, start: int, read: int) -> None:
    """GET ``path`` from byte ``start``, take ``read`` bytes, then reset the connection."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: t\r\nRange: bytes={start}-\r\n\r\n".encode())
    await reader.readexactly(read)
    writer.transport.abort()


async def aborts_leave_nothing(
    abort: Callable[[int], Awaitable[None]], at_once: int, rounds: int
) -> None:
    """``abort`` ``at_once`` downloads at a time, ``rounds`` times, after a round that
    lets the database pool open the connections so many need: then, within 15 s, as
    many open descriptors and tasks as before."""
    await asyncio.gather(*(abort(i) for i in range(at_once)))
    await asyncio.sleep(0.5)
    fds, tasks = open_fds(), len(asyncio.all_tasks())
    for round_ in range(1, rounds + 1):
        await asyncio.gather(*(abort(round_ * at_once + i) for i in range(at_once)))
    deadline = time.monotonic() + 15
    while open_fds() > fds or len(asyncio.all_tasks()) > tasks:
        assert time.monotonic() < deadline, (open_fds(), fds, len(asyncio.all_tasks()), tasks)
        await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_a_thousand_aborted_downloads_leave_no_fds_or_tasks(
    make_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "big", {f"{i}.bin": os.urandom(4 * 1024 * 1024) for i in range(4)})
    client = await make_client()
    # some start mid-file
    await aborts_leave_nothing(
        lambda n: abort_at(client, "/archive/big/", (n * 7919) % (8 * 1024 * 1024), 1024), 50, 20
    )


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
