"""Archives of folders in an S3 bucket (--photos s3://…), served by the whole app from
the tests' SeaweedFS: exact length, ranges, the unzipped bytes, CRCs from the objects'
checksums, a member replaced mid-stream, writes into folders."""

from __future__ import annotations

import base64
import io
import logging
import os
import zipfile
import zlib
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from satchel.storage import s3
from satchel.storage.s3_folders import S3Member
from tests.conftest import S3_BUCKET, s3_keys

from .conftest import ClientFactory

MiB = 1024 * 1024
AUTH = {"Authorization": "Bearer cms-token"}


def put_object(client: Any, key: str, data: bytes, *, checksum: bool) -> None:
    """As a CMS or a sync tool puts photos: with the CRC-32 S3 keeps, or without."""
    extra: dict[str, Any] = {}
    if checksum:
        extra["ChecksumCRC32"] = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    client.put_object(Bucket=S3_BUCKET, Key=key, Body=data, **extra)


@pytest.fixture
def album(s3_client: Any, s3_url: str) -> dict[str, bytes]:
    prefix = s3_url.split("/", 3)[3]
    members = {
        "a.jpg": os.urandom(300_000),
        "sub/b.jpg": os.urandom(2 * MiB + 3),
        "sub/deeper/c.txt": b"hello",
        "empty": b"",
    }
    for n, (name, data) in enumerate(members.items()):
        put_object(s3_client, f"{prefix}/album/{name}", data, checksum=n % 2 == 0)
    s3_client.put_object(Bucket=S3_BUCKET, Key=f"{prefix}/album/sub/aux.jpg", Body=b"x")
    return members


async def on_s3(
    make_app_client: ClientFactory, s3_url: str, **settings: Any
) -> TestClient[Any, Any]:
    return await make_app_client(photos=s3_url, **settings)


async def test_an_s3_folder_is_an_exact_resumable_zip(
    make_app_client: ClientFactory, s3_url: str, album: dict[str, bytes]
) -> None:
    client = await on_s3(make_app_client, s3_url)
    resp = await client.get("/archive/album/")
    assert resp.status == 200
    body = await resp.read()
    assert int(resp.headers["Content-Length"]) == len(body)
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        assert {name: zf.read(name) for name in zf.namelist()} == album  # the unsafe name is not
    etag = resp.headers["ETag"]
    for start in (1, 300_100, len(body) - 10):
        part = await client.get(
            "/archive/album/", headers={"Range": f"bytes={start}-", "If-Range": etag}
        )
        assert part.status == 206 and await part.read() == body[start:]
    same = await client.get("/archive/album/", headers={"If-None-Match": etag})
    assert same.status == 304
    head = await client.head("/archive/album/")
    assert head.headers["Content-Length"] == str(len(body))
    assert (await client.get("/archive/nothing/")).status == 404


async def test_crcs_come_from_the_objects_checksums_or_are_read_once(
    make_app_client: ClientFactory, s3_url: str, album: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Members with a stored CRC-32 are never read for it; the others once, then the
    CRC cache answers."""
    reads_for_crc: list[str] = []
    real = S3Member.read_into

    def counting(self: S3Member, offset: int, view: memoryview) -> int:
        reads_for_crc.append(self.version.name)  # the CRC pass reads into its buffer
        return real(self, offset, view)

    monkeypatch.setattr(S3Member, "read_into", counting)
    client = await on_s3(make_app_client, s3_url)
    first = await (await client.get("/archive/album/")).read()
    assert sorted(set(reads_for_crc)) == ["sub/b.jpg"]  # no stored checksum, and not tiny
    reads_for_crc.clear()
    assert await (await client.get("/archive/album/")).read() == first
    assert reads_for_crc == []


async def test_a_member_replaced_mid_stream_aborts_the_connection(
    make_app_client: ClientFactory, s3_url: str, s3_client: Any,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    monkeypatch.setattr(s3, "WINDOW", 64 * 1024)  # each member takes several GETs
    prefix = s3_url.split("/", 3)[3]
    put_object(s3_client, f"{prefix}/x/a.bin", os.urandom(1 * MiB), checksum=True)
    put_object(s3_client, f"{prefix}/x/b.bin", os.urandom(1 * MiB), checksum=True)
    client = await on_s3(make_app_client, s3_url, delay=0.01, chunk_size=16384)
    resp = await client.get("/archive/x/")
    declared = int(resp.headers["Content-Length"])
    await resp.content.readexactly(200_000)
    put_object(s3_client, f"{prefix}/x/a.bin", os.urandom(1 * MiB), checksum=True)
    received = 200_000
    with pytest.raises(aiohttp.ClientPayloadError):
        while chunk := await resp.content.read(65536):
            received += len(chunk)
    assert received < declared
    errors = [r for r in caplog.records if r.name == "satchel.http" and r.levelno == logging.ERROR]
    assert errors and "a.bin" in str(errors[-1].args)


async def test_writing_into_an_s3_folder(
    make_app_client: ClientFactory, s3_url: str, s3_client: Any
) -> None:
    client = await on_s3(make_app_client, s3_url, upload_token=("cms-token",))
    prefix = s3_url.split("/", 3)[3]
    data = os.urandom(6 * MiB)  # streamed in parts
    resp = await client.put("/archive/gallery/2024/море.jpg", data=io.BytesIO(data), headers=AUTH)
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["crc32"] == zlib.crc32(data)
    assert s3_keys(s3_client, prefix) == [f"{prefix}/gallery/2024/море.jpg"]  # no temp left
    assert (await client.put("/archive/gallery/2024", data=b"x", headers=AUTH)).status == 409
    archive = await (await client.get("/archive/gallery/")).read()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.read("2024/море.jpg") == data
    gone = await client.delete("/archive/gallery/2024/море.jpg", headers=AUTH)
    assert gone.status == 204
    assert s3_keys(s3_client, prefix) == []


async def test_a_selection_of_s3_members_and_s3_stored_files(
    make_app_client: ClientFactory, s3_url: str, album: dict[str, bytes]
) -> None:
    client = await on_s3(make_app_client, s3_url, storage=f"{s3_url}/stored", s3_part_size="5M")
    video = os.urandom(6 * MiB + 5)
    stored = await client.post("/files/?name=video.bin", data=io.BytesIO(video))
    file_id = (await stored.json())["id"]
    entries = [{"path": "album/sub/b.jpg", "name": "b.jpg"}, {"file": file_id}]
    entries.append({"path": "album/sub/deeper/c.txt"})
    made = await client.post("/archives/", json={"entries": entries})
    assert made.status == 201, await made.text()
    url = (await made.json())["url"].split("/", 3)[3]
    resp = await client.get(f"/{url}")
    body = await resp.read()
    assert resp.status == 200 and int(resp.headers["Content-Length"]) == len(body)
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        assert zf.testzip() is None
        assert [(i.filename, zf.read(i)) for i in zf.infolist()] == [
            ("b.jpg", album["sub/b.jpg"]),
            ("video.bin", video),
            ("sub/deeper/c.txt", album["sub/deeper/c.txt"]),
        ]
    for start in (1, 2 * MiB + 200, len(body) - 10):
        part = await client.get(
            f"/{url}", headers={"Range": f"bytes={start}-", "If-Range": resp.headers["ETag"]}
        )
        assert part.status == 206 and await part.read() == body[start:]
