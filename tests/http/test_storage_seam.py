"""The whole service on a storage that is not a filesystem (the in-memory one of the
tests): the services use nothing of storage but its protocols, and downloads from a
reader without a file descriptor are streamed by reads even where sendfile is on."""

from __future__ import annotations

import hashlib
import os
from io import BytesIO
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from satchel.tus.rules import upload_key
from tests.memory_storage import MemoryStorage

from .conftest import ClientFactory

TUS = {"Tus-Resumable": "1.0.0"}
CHUNK = {**TUS, "Content-Type": "application/offset+octet-stream"}


async def on_memory(make_client: ClientFactory) -> tuple[TestClient[Any, Any], MemoryStorage]:
    memory = MemoryStorage()
    client = await make_client(backend=lambda _data: memory)
    return client, memory


def nothing_on_disk(data_dir: Path) -> bool:
    """No bytes of a file or an upload: the data folder holds the database and the
    ballast only."""
    kept = ("ballast", "satchel.sqlite3")
    return not any(p.is_file() and not p.name.startswith(kept) for p in data_dir.rglob("*"))


async def test_files_are_stored_downloaded_in_ranges_and_deleted(
    make_client: ClientFactory, data_dir: Path
) -> None:
    client, memory = await on_memory(make_client)
    data = os.urandom(3 * 1024 * 1024 + 17)  # large enough to be read off the socket
    resp = await client.post("/files/", data=BytesIO(data))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert memory.files[body["id"]][0] == data
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    download = f"/files/{body['id']}/"
    assert await (await client.get(download)).read() == data
    part = await client.get(download, headers={"Range": "bytes=100-199,-5"})
    assert part.status == 206 and part.content_type == "multipart/byteranges"
    text = await part.read()
    assert data[100:200] in text and data[-5:] in text
    one = await client.get(download, headers={"Range": "bytes=1000000-"})
    assert one.status == 206 and await one.read() == data[1000000:]
    token = body["links"]["delete"].rsplit("token=", 1)[1]
    gone = await client.delete(download, headers={"X-Delete-Token": token})
    assert gone.status == 204
    assert memory.files == {} and memory.incoming == set()
    assert nothing_on_disk(data_dir)


async def test_a_resumable_upload_is_locked_while_written_and_becomes_a_file(
    make_client: ClientFactory, data_dir: Path
) -> None:
    client, memory = await on_memory(make_client)
    data = os.urandom(2 * 1024 * 1024 + 5)
    created = await client.post("/tus/", headers={**TUS, "Upload-Length": str(len(data))})
    assert created.status == 201
    url = "/tus/" + created.headers["Location"].rsplit("/", 1)[1]
    key = upload_key(url.rsplit("/", 1)[1])
    first = await client.patch(
        url, data=BytesIO(data[:300_001]), headers={**CHUNK, "Upload-Offset": "0"}
    )
    assert first.status == 204
    assert bytes(memory.uploads[key]) == data[:300_001]
    release = memory.acquire(key)  # another writer holds it
    locked = await client.patch(
        url, data=BytesIO(data[300_001:]), headers={**CHUNK, "Upload-Offset": "300001"}
    )
    assert locked.status == 423
    release()
    last = await client.patch(
        url, data=BytesIO(data[300_001:]), headers={**CHUNK, "Upload-Offset": "300001"}
    )
    assert last.status == 204
    file_id = last.headers["Satchel-File-Id"]
    assert memory.files[file_id][0] == data and key not in memory.uploads
    got = await client.get(f"/files/{file_id}/")
    assert await got.read() == data
    assert nothing_on_disk(data_dir)
