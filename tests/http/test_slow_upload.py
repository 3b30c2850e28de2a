"""A slow but steady upload is never dropped: the stall timer sees every byte."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from .conftest import ClientFactory

STEADY = 10 * 1024  # bytes a second: a phone on a bad network
FAST_PART = 1024 * 1024  # the body is large enough to be read off the socket directly


async def _send_slowly(
    client: TestClient[Any, Any], head: str, body: bytes, seconds: float
) -> bytes:
    """Send ``head``, the first MiB at once, then the rest at STEADY bytes a second."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head.encode() + body[:FAST_PART])
    await writer.drain()
    deadline = time.monotonic() + seconds + 10
    for at in range(FAST_PART, len(body), STEADY // 10):
        writer.write(body[at : at + STEADY // 10])
        await writer.drain()
        await asyncio.sleep(0.1)
        assert time.monotonic() < deadline
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    return answer


@pytest.mark.slow
async def test_a_plain_upload_slower_than_the_wake_up_size_is_kept(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client(read_timeout=2)
    body = os.urandom(FAST_PART + 5 * STEADY)  # 5 s of steady bytes: longer than the timeout
    head = f"POST /files/ HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n\r\n"
    answer = await _send_slowly(client, head, body, 5)
    assert answer.startswith(b"HTTP/1.1 201"), answer[:300]
    stored = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert stored["sha256"] == hashlib.sha256(body).hexdigest()


@pytest.mark.slow
async def test_a_slow_tus_patch_is_kept(make_app_client: ClientFactory) -> None:
    client = await make_app_client(read_timeout=2)
    body = os.urandom(FAST_PART + 5 * STEADY)
    created = await client.post(
        "/tus/", headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(body))}
    )
    path = created.headers["Location"].split("//", 1)[-1].split("/", 1)[1]
    head = (
        f"PATCH /{path} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    answer = await _send_slowly(client, head, body, 5)
    assert answer.startswith(b"HTTP/1.1 204"), answer[:300]
    resp = await client.head(f"/{path}", headers={"Tus-Resumable": "1.0.0"})
    assert resp.headers["Upload-Offset"] == str(len(body))
