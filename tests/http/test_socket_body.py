"""Large plain upload bodies, read by Satchel straight off the socket (satchel.http.body).

What a client must not notice, except ``Connection: close``: the bytes, the digests,
Expect: 100-continue, a client leaving mid-body, a stall, a wrong digest; and what
must stay on aiohttp's stream (chunked bodies, small bodies) keeps its connection.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import time
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from satchel.http.body import DIRECT_FROM

from .conftest import ClientFactory
from .test_files import stored_files, temp_files

SIZE = 5 * 1024 * 1024 + 12_345  # past the socket path's threshold, not block-aligned


async def open_upload(
    client: TestClient[Any, Any], length: int, *extra: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    head = ["POST /files/ HTTP/1.1", "Host: t", f"Content-Length: {length}", *extra]
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
    await writer.drain()
    return reader, writer


async def until_no_temp_files(data_dir: Path) -> None:
    deadline = time.monotonic() + 10
    while temp_files(data_dir) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert temp_files(data_dir) == []


async def test_a_large_body_arrives_whole_and_closes_its_connection(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    data = os.urandom(SIZE)
    resp = await client.post("/files/", data=io.BytesIO(data))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert resp.headers["Connection"] == "close"  # aiohttp's parser never saw the body
    assert (body["size"], body["sha256"]) == (SIZE, hashlib.sha256(data).hexdigest())
    [path] = stored_files(data_dir)
    assert path.read_bytes() == data and temp_files(data_dir) == []
    small = await client.post("/files/", data=os.urandom(DIRECT_FROM - 1))
    assert small.status == 201 and "Connection" not in small.headers  # kept alive


async def test_a_body_sent_in_odd_pieces_with_pauses(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    data = os.urandom(SIZE)
    reader, writer = await open_upload(client, SIZE)
    for at in range(0, SIZE, 777_777):  # the server waits for bytes several times
        writer.write(data[at : at + 777_777])
        await writer.drain()
        await asyncio.sleep(0.01)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert head.startswith(b"HTTP/1.1 201")
    [path] = stored_files(data_dir)
    assert path.read_bytes() == data


async def test_expect_continue_comes_before_the_body_is_read(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    data = os.urandom(SIZE)
    reader, writer = await open_upload(client, SIZE, "Expect: 100-continue")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(data)
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    writer.close()
    assert final.startswith(b"HTTP/1.1 201") and b"Connection: close" in final
    [path] = stored_files(data_dir)
    assert path.read_bytes() == data


async def test_a_client_leaving_mid_body_leaves_nothing(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    _, writer = await open_upload(client, SIZE)
    writer.write(os.urandom(2 * 1024 * 1024))
    await writer.drain()
    writer.close()
    await until_no_temp_files(data_dir)
    assert stored_files(data_dir) == []
    assert (
        await client.post("/files/", data=io.BytesIO(os.urandom(SIZE)))
    ).status == 201  # still serving


async def test_a_stall_mid_body_is_408(make_client: ClientFactory, data_dir: Path) -> None:
    client = await make_client(read_timeout=0.5)
    reader, writer = await open_upload(client, SIZE)
    writer.write(os.urandom(2 * 1024 * 1024))
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 408") and b"Connection: close" in answer
    assert stored_files(data_dir) == [] and temp_files(data_dir) == []


async def test_a_wrong_digest_on_a_large_body_is_400(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    resp = await client.post(
        "/files/",
        data=io.BytesIO(os.urandom(SIZE)),
        headers={"Content-Digest": f"sha-256=:{wrong}:"},
    )
    assert resp.status == 400 and (await resp.json())["error"] == "digest_mismatch"
    assert resp.headers["Connection"] == "close"  # errors too
    assert stored_files(data_dir) == [] and temp_files(data_dir) == []


async def test_chunked_bodies_stay_on_aiohttps_stream(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    data = os.urandom(SIZE)

    async def chunks() -> Any:
        for at in range(0, SIZE, 100_000):
            yield data[at : at + 100_000]

    resp = await client.post("/files/", data=chunks())
    assert resp.status == 201 and "Connection" not in resp.headers
    [path] = stored_files(data_dir)
    assert path.read_bytes() == data


async def test_a_large_file_put_into_a_folder(make_app_client: ClientFactory, photos: Path) -> None:
    client = await make_app_client(upload_token=("t",))
    data = os.urandom(SIZE)
    resp = await client.put(
        "/archive/gallery/big/photo.raw",
        data=io.BytesIO(data),
        headers={"Authorization": "Bearer t"},
    )
    assert resp.status == 201, await resp.text()
    assert (photos / "gallery" / "big" / "photo.raw").read_bytes() == data
