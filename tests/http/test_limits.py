"""Speed limits and admission through a real socket.

Timing bounds are generous (a 4 MiB transfer at 1 MiB/s must take 3.5–5 s): the
host is shared and noisy. Exact accuracy is measured by `make bench`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from tests.helpers import make_folder

from .conftest import ClientFactory

MiB = 1024 * 1024


async def timed(request: Awaitable[Any]) -> tuple[float, int, bytes]:
    started = time.monotonic()
    resp = await request
    body = await resp.read()
    return time.monotonic() - started, resp.status, body


async def stored(client: TestClient[Any, Any], data: bytes) -> str:
    resp = await client.post("/files/", data=BytesIO(data))
    assert resp.status == 201
    file_id: str = (await resp.json())["id"]
    return file_id


async def test_a_download_keeps_to_the_per_connection_rate(make_client: ClientFactory) -> None:
    client = await make_client(download_rate="1M")
    data = os.urandom(4 * MiB)
    file_id = await stored(client, data)
    seconds, status, body = await timed(client.get(f"/files/{file_id}/"))
    assert (status, body == data) == (200, True)
    assert 3.5 <= seconds <= 5, seconds


async def test_an_archive_keeps_to_the_per_connection_rate(
    make_client: ClientFactory, photos: Path
) -> None:
    files = {"a.bin": os.urandom(2 * MiB), "b/c.bin": os.urandom(2 * MiB)}
    make_folder(photos, "limited", files)
    client = await make_client(download_rate="1M")
    seconds, status, body = await timed(client.get("/archive/limited/"))
    assert status == 200
    with zipfile.ZipFile(BytesIO(body)) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == files
    assert 3.5 <= seconds <= 5, seconds


async def test_range_requests_share_the_client_limit(make_client: ClientFactory) -> None:
    """A download manager splitting a file into ranges gets no more than one client's rate."""
    client = await make_client(client_download_rate="1M")
    data = os.urandom(4 * MiB)
    file_id = await stored(client, data)
    halves = [(0, 2 * MiB - 1), (2 * MiB, 4 * MiB - 1)]
    started = time.monotonic()
    results = await asyncio.gather(
        *(
            timed(client.get(f"/files/{file_id}/", headers={"Range": f"bytes={a}-{b}"}))
            for a, b in halves
        )
    )
    seconds = time.monotonic() - started
    assert [status for _, status, _ in results] == [206, 206]
    assert b"".join(body for _, _, body in results) == data
    assert 3.5 <= seconds <= 5, seconds
    # shared evenly: both halves end at about the same time
    assert abs(results[0][0] - results[1][0]) < 1.0


async def test_a_client_may_ask_for_a_lower_rate(make_client: ClientFactory) -> None:
    client = await make_client()
    data = os.urandom(MiB)
    file_id = await stored(client, data)
    seconds, status, body = await timed(client.get(f"/files/{file_id}/?kbps=512"))
    assert (status, body == data) == (200, True)
    assert 1.5 <= seconds <= 3, seconds
    resp = await client.get(f"/files/{file_id}/?kbps=fast")
    assert resp.status == 400
    assert "kbps" in (await resp.json())["message"]


@pytest.mark.parametrize(
    ("delay", "rate", "low", "high"),
    [
        (0.5, "8M", 1.8, 4.5),  # the pauses rule: 4 chunks, 0.5 s after each
        (0.01, "1M", 1.6, 3.0),  # the rate rules: 2 MiB at 1 MiB/s
    ],
)
async def test_per_chunk_delay_works_beside_a_limit(
    make_client: ClientFactory, photos: Path, delay: float, rate: str, low: float, high: float
) -> None:
    make_folder(photos, "delayed", {"a.bin": os.urandom(2 * MiB)})
    client = await make_client(download_rate=rate, delay=delay, chunk_size=512 * 1024)
    seconds, status, _ = await timed(client.get("/archive/delayed/"))
    assert status == 200
    assert low <= seconds <= high, seconds


# -- uploads and admission: how responses are sent does not matter ----------------------


async def test_an_upload_keeps_to_the_per_connection_rate(make_app_client: ClientFactory) -> None:
    client = await make_app_client(upload_rate="1M")
    data = os.urandom(4 * MiB)

    async def body() -> AsyncIterator[bytes]:  # chunked, as a browser streams
        for i in range(0, len(data), 256 * 1024):
            yield data[i : i + 256 * 1024]

    started = time.monotonic()
    resp = await client.post("/files/", data=body())
    seconds = time.monotonic() - started
    assert resp.status == 201
    assert (await resp.json())["sha256"] == hashlib.sha256(data).hexdigest()
    assert 3.5 <= seconds <= 5, seconds


async def test_an_upload_into_a_folder_keeps_to_the_rate(
    make_app_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "album", {})
    client = await make_app_client(upload_rate="1M", upload_token=("t",))
    data = os.urandom(4 * MiB)
    started = time.monotonic()
    resp = await client.put(
        "/archive/album/new.bin", data=BytesIO(data), headers={"Authorization": "Bearer t"}
    )
    seconds = time.monotonic() - started
    assert resp.status == 201
    assert (photos / "album" / "new.bin").read_bytes() == data
    assert 3.5 <= seconds <= 5, seconds


async def test_waiting_for_the_limit_is_not_a_stalled_upload(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client(upload_rate="64K", read_timeout=1)
    data = os.urandom(256 * 1024)  # about 3.5 s at this rate, longer than the timeout
    resp = await client.post("/files/", data=BytesIO(data))
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["size"] == len(data)


# -- admission ---------------------------------------------------------------------------


async def slow_download(
    client: TestClient[Any, Any], path: str, **headers: str
) -> aiohttp.ClientResponse:
    """A download that has begun and stays open until closed."""
    resp = await client.get(path, headers=headers)
    assert resp.status == 200
    return resp


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.05)


async def test_too_many_requests_from_one_client_get_429(make_app_client: ClientFactory) -> None:
    client = await make_app_client(download_rate="64K", max_connections_per_client=1)
    file_id = await stored(client, os.urandom(MiB))
    first = await slow_download(client, f"/files/{file_id}/")
    resp = await client.get(f"/check/{file_id}")
    assert resp.status == 429
    assert resp.headers["Retry-After"] == "1"
    body = await resp.json()
    assert body["error"] == "too_many_requests"
    assert "1 requests running" in body["message"]
    assert (await client.get("/healthz")).status == 200  # probes are not counted
    first.close()

    async def admitted() -> bool:
        return (await client.get(f"/check/{file_id}")).status == 200

    await eventually(admitted)  # the slot is freed once the cut-off download ends


async def test_a_trusted_proxy_names_the_client(make_app_client: ClientFactory) -> None:
    client = await make_app_client(
        download_rate="64K", max_connections_per_client=1, trusted_proxy=("127.0.0.1",)
    )
    file_id = await stored(client, os.urandom(MiB))
    first = await slow_download(client, f"/files/{file_id}/", **{"X-Forwarded-For": "192.0.2.1"})
    other = await client.get(f"/check/{file_id}", headers={"X-Forwarded-For": "192.0.2.2"})
    same = await client.get(f"/check/{file_id}", headers={"X-Forwarded-For": "192.0.2.1"})
    assert (other.status, same.status) == (200, 429)
    first.close()


async def test_a_spoofed_header_from_an_untrusted_peer_buys_nothing(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client(download_rate="64K", max_connections_per_client=1)
    file_id = await stored(client, os.urandom(MiB))
    first = await slow_download(client, f"/files/{file_id}/", **{"X-Forwarded-For": "192.0.2.1"})
    spoofed = await client.get(f"/check/{file_id}", headers={"X-Forwarded-For": "192.0.2.2"})
    assert spoofed.status == 429
    first.close()


async def test_archive_streams_over_the_limit_get_503(
    make_app_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "busy", {"a.bin": os.urandom(MiB)})
    client = await make_app_client(download_rate="64K", max_archive_streams=1)
    file_id = await stored(client, b"not an archive")
    first = await slow_download(client, "/archive/busy/")
    resp = await client.get("/archive/busy/")
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "5"
    assert (await resp.json())["error"] == "service_unavailable"
    assert (await client.head("/archive/busy/")).status == 200  # HEAD streams nothing
    assert (await client.get(f"/files/{file_id}/")).status == 200  # files are not archives
    first.close()

    async def admitted() -> bool:
        resp = await client.get("/archive/busy/", headers={"Range": "bytes=0-9"})
        return resp.status == 206

    await eventually(admitted)
