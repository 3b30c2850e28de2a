"""The whole service with --storage s3://…: stored files and resumable uploads in the
S3 server of the tests (SeaweedFS), with the smallest parts S3 allows so that every
upload here crosses parts. What a user would see, and what lands in the bucket."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import zlib
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from satchel.tus.rules import upload_key
from tests.conftest import S3_BUCKET, s3_keys

from .conftest import ClientFactory
from .test_storage_seam import nothing_on_disk
from .test_tus import TUS, create, offset_of, patch, path_of

MiB = 1024 * 1024


@pytest.fixture
async def on_s3(make_app_client: ClientFactory, s3_url: str) -> TestClient[Any, Any]:
    return await make_app_client(storage=s3_url, s3_part_size="5M")


def prefix_of(client: TestClient[Any, Any]) -> str:
    from satchel.http.keys import SETTINGS

    prefix: str = client.app[SETTINGS].storage.prefix
    return prefix


def multipart_uploads(s3_client: Any, prefix: str) -> list[str]:
    answer = s3_client.list_multipart_uploads(Bucket=S3_BUCKET, Prefix=prefix)
    return [upload["Key"] for upload in answer.get("Uploads", [])]


async def test_a_file_is_stored_as_one_object_served_in_ranges_and_deleted(
    on_s3: TestClient[Any, Any], s3_client: Any, data_dir: Path
) -> None:
    client, prefix = on_s3, prefix_of(on_s3)
    data = os.urandom(2 * 5 * MiB + 17)  # three parts
    resp = await client.post("/files/", data=BytesIO(data))
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    key = f"{prefix}files/{body['id']}"
    assert s3_keys(s3_client, prefix) == [key]  # no temp object, no marker left
    assert multipart_uploads(s3_client, prefix) == []
    head = s3_client.head_object(Bucket=S3_BUCKET, Key=key, ChecksumMode="ENABLED")
    assert head["ContentLength"] == len(data)
    crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert head["ChecksumCRC32"] == crc
    download = f"/files/{body['id']}/"
    got = await client.get(download)
    assert got.headers["Content-Length"] == str(len(data)) and await got.read() == data
    one = await client.get(download, headers={"Range": f"bytes={5 * MiB - 3}-"})
    assert one.status == 206 and await one.read() == data[5 * MiB - 3 :]
    several = await client.get(download, headers={"Range": "bytes=0-9,-5"})
    text = await several.read()
    assert several.status == 206 and data[:10] in text and data[-5:] in text
    token = body["links"]["delete"].rsplit("token=", 1)[1]
    assert (await client.delete(download, headers={"X-Delete-Token": token})).status == 204
    assert s3_keys(s3_client, prefix) == []
    assert nothing_on_disk(data_dir)


async def test_a_resumable_upload_survives_a_dropped_patch_and_becomes_the_object(
    on_s3: TestClient[Any, Any], s3_client: Any
) -> None:
    client, prefix = on_s3, prefix_of(on_s3)
    data = os.urandom(2 * 5 * MiB + 1234)
    url = await create(client, len(data))
    first = await patch(client, url, 0, data[: 3 * MiB])
    assert first.status == 204
    # a PATCH that crosses a part boundary, then the network drops
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"PATCH {url} HTTP/1.1\r\nHost: t\r\nTus-Resumable: 1.0.0\r\n"
        "Content-Type: application/offset+octet-stream\r\n"
        f"Upload-Offset: {3 * MiB}\r\nContent-Length: {len(data) - 3 * MiB}\r\n\r\n".encode()
        + data[3 * MiB : 7 * MiB]
    )
    await writer.drain()
    await asyncio.sleep(0.5)  # 4 MiB arrive
    writer.transport.abort()
    for _ in range(100):
        if (kept := await offset_of(client, url)) == 7 * MiB:
            break
        await asyncio.sleep(0.1)
    assert kept == 7 * MiB  # every byte that arrived
    last = await patch(client, url, kept, data[kept:])
    assert last.status == 204, await last.text()
    file_id = last.headers["Satchel-File-Id"]
    got = await client.get(f"/files/{file_id}/")
    assert await got.read() == data
    assert got.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()[:40]}"'
    assert s3_keys(s3_client, prefix) == [f"{prefix}files/{file_id}"]
    assert multipart_uploads(s3_client, prefix) == []
    assert not any(
        k.startswith(f"{prefix}tus/{upload_key(url.rsplit('/', 1)[1])}")
        for k in s3_keys(s3_client, prefix)
    )


async def test_partial_uploads_concatenate_on_s3(on_s3: TestClient[Any, Any]) -> None:
    client = on_s3
    parts = [os.urandom(6 * MiB), b"", os.urandom(10)]
    urls = []
    for data in parts:
        resp = await client.post(
            "/tus/", headers={**TUS, "Upload-Length": str(len(data)), "Upload-Concat": "partial"}
        )
        assert resp.status == 201
        if data:
            assert (await patch(client, path_of(resp.headers["Location"]), 0, data)).status == 204
        urls.append(resp.headers["Location"])
    final = await client.post("/tus/", headers={**TUS, "Upload-Concat": "final;" + " ".join(urls)})
    assert final.status == 201, await final.text()
    got = await client.get(path_of(final.headers["Satchel-Download"]))
    assert await got.read() == b"".join(parts)


async def test_a_crash_mid_patch_resumes_at_the_acknowledged_offset(
    on_s3: TestClient[Any, Any],
) -> None:
    """Bytes written to S3 but never acknowledged (the process died before the record
    moved) are cut off: the client resumes where the server told it, with other bytes."""
    from satchel.http.keys import TUSSTORE

    client = on_s3
    data = os.urandom(6 * MiB)
    url = await create(client, len(data))
    assert (await patch(client, url, 0, data[:MiB])).status == 204
    storage = client.app[TUSSTORE].storage
    key = upload_key(url.rsplit("/", 1)[1])
    appending = await asyncio.to_thread(storage.append, key, MiB)
    await asyncio.to_thread(appending.write, memoryview(b"x" * (5 * MiB)))  # a part, then…
    await asyncio.to_thread(appending.keep, 6 * MiB)  # …kept, but the record never moved
    assert await offset_of(client, url) == MiB
    done = await patch(client, url, MiB, data[MiB:])
    assert done.status == 204
    got = await client.get(f"/files/{done.headers['Satchel-File-Id']}/")
    assert await got.read() == data


def test_a_bad_storage_url_is_refused_with_what_is_wrong(tmp_path: Path) -> None:
    from satchel.config import load_settings
    from satchel.errors import ConfigError

    for url, says in [
        ("s3://", "bucket"),
        ("s3://Bad_Bucket/x", "bucket"),
        ("s3://bucket/a//b", "segment"),
        ("/var/data", "s3://"),
    ]:
        with pytest.raises(ConfigError, match=says):
            load_settings(storage=url)


def test_an_unreachable_bucket_is_refused_before_serving(tmp_path: Path, s3_client: Any) -> None:
    from satchel.config import check_paths, load_settings
    from satchel.errors import ConfigError

    (tmp_path / "photos").mkdir()
    settings = load_settings(
        storage="s3://no-such-bucket-here/x", photos=tmp_path / "photos", data=tmp_path / "d"
    )
    with pytest.raises(ConfigError, match="no-such-bucket-here.*cannot reach it"):
        check_paths(settings)


async def test_expired_files_are_swept_by_the_instance_holding_the_lease(
    make_app_client: ClientFactory, s3_url: str, s3_client: Any
) -> None:
    """Instances on one bucket sweep once: here another instance holds the lease, so
    this one leaves an expired file alone until that lease lapses."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from satchel.http.keys import ENGINE
    from satchel.metadata.tables import files, leases

    client = await make_app_client(storage=s3_url, purge_interval=0.1)
    engine = client.app[ENGINE]
    far = datetime.now(UTC) + timedelta(hours=1)
    async with engine.begin() as conn:  # another instance took it over, and stays alive
        moved = await conn.execute(update(leases).values(holder="other", until=far))
        assert moved.rowcount == 1  # this instance held it since it started
    resp = await client.post("/files/", data=b"short-lived")
    file_id = (await resp.json())["id"]
    async with engine.begin() as conn:
        past = datetime.now(UTC) - timedelta(seconds=1)
        await conn.execute(update(files).where(files.c.id == file_id).values(expires_at=past))
    await asyncio.sleep(0.5)
    prefix = prefix_of(client)
    assert s3_keys(s3_client, prefix) == [f"{prefix}files/{file_id}"]  # not swept here
    async with engine.begin() as conn:  # the other instance died: its lease lapses
        await conn.execute(update(leases).values(until=datetime.now(UTC)))
    for _ in range(50):
        if s3_keys(s3_client, prefix) == []:
            break
        await asyncio.sleep(0.1)
    assert s3_keys(s3_client, prefix) == []
    assert (await client.get(f"/files/{file_id}/")).status == 404


async def test_s3_redirect_hands_out_a_presigned_url_and_counts_the_download(
    make_app_client: ClientFactory, s3_url: str
) -> None:
    import urllib.request

    from satchel.http.keys import FILESTORE

    client = await make_app_client(storage=s3_url, s3_redirect=True)
    data = os.urandom(300_000)
    free = await (await client.post("/files/", data=BytesIO(data))).json()
    download = f"/files/{free['id']}/"
    resp = await client.get(download, allow_redirects=False)
    assert resp.status == 302 and resp.headers["Cache-Control"] == "no-store"
    presigned = resp.headers["Location"]
    assert "X-Amz-Signature=" in presigned and "X-Amz-Expires=300" in presigned

    def fetch(headers: dict[str, str]) -> tuple[int, bytes, str | None]:
        request = urllib.request.Request(presigned, headers=headers)
        with urllib.request.urlopen(request, timeout=30) as got:
            return got.status, got.read(), got.headers.get("Content-Disposition")

    status, body, disposition = await asyncio.to_thread(fetch, {})
    assert status == 200 and body == data  # straight from S3, with Satchel's file name
    assert disposition is not None and free["name"] in disposition
    status, body, _ = await asyncio.to_thread(fetch, {"Range": "bytes=10-19"})
    assert status == 206 and body == data[10:20]
    record = await client.app[FILESTORE].repo.get(free["id"])
    assert record is not None and record.downloads == 1  # the whole-file redirect counted
    part = await client.get(download, headers={"Range": "bytes=0-9"}, allow_redirects=False)
    assert part.status == 302  # a part counts for nothing, as when it is sent
    head = await client.head(download)
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
    # a file with Max-Downloads is sent by Satchel, so its count stays exact
    limited = await client.post("/files/", data=BytesIO(data), headers={"Max-Downloads": "1"})
    limited_id = (await limited.json())["id"]
    first = await client.get(f"/files/{limited_id}/", allow_redirects=False)
    assert first.status == 200 and await first.read() == data
    assert (await client.get(f"/files/{limited_id}/", allow_redirects=False)).status == 404
    record = await client.app[FILESTORE].repo.get(free["id"])
    assert record is not None and record.downloads == 1


def test_s3_redirect_needs_s3_storage(tmp_path: Path) -> None:
    from satchel.config import check_paths, load_settings
    from satchel.errors import ConfigError

    (tmp_path / "photos").mkdir()
    settings = load_settings(s3_redirect=True, photos=tmp_path / "photos", data=tmp_path / "d")
    with pytest.raises(ConfigError, match="--s3-redirect needs --storage"):
        check_paths(settings)
