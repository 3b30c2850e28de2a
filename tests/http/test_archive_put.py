"""PUT and DELETE /archive/<folder>/<path>: a CMS writes into folders without FTP."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import zipfile
import zlib
from pathlib import Path

from tests.helpers import raw_get

from .conftest import ClientFactory
from .test_archive import crc_rows

AUTH = {"Authorization": "Bearer cms-token"}


async def test_writing_into_folders_needs_a_configured_token(
    make_client: ClientFactory, photos: Path
) -> None:
    client = await make_client()
    resp = await client.put("/archive/gallery/1.jpg", data=b"x")
    assert resp.status == 403 and "--upload-token" in (await resp.json())["message"]
    assert not (photos / "gallery").exists()


async def test_put_lands_atomically_and_its_crc_is_cached(
    make_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    client = await make_client(upload_token=("cms-token",))
    assert (await client.put("/archive/gallery/a.jpg", data=b"x")).status == 401
    data = os.urandom(200_000)
    resp = await client.put("/archive/gallery/2024/море.jpg", data=data, headers=AUTH)
    assert resp.status == 201
    body = await resp.json()
    assert body["path"] == "2024/море.jpg" and body["size"] == len(data)
    assert body["crc32"] == zlib.crc32(data)
    assert body["archive"].endswith("/archive/gallery/")
    assert (photos / "gallery" / "2024" / "море.jpg").read_bytes() == data
    assert list((photos / ".satchel-tmp").iterdir()) == []
    assert await crc_rows(data_dir) == [("gallery", "2024/море.jpg", zlib.crc32(data))]
    replaced = await client.put("/archive/gallery/2024/море.jpg", data=b"new", headers=AUTH)
    assert replaced.status == 200
    archive = await (await client.get("/archive/gallery/")).read()
    with zipfile.ZipFile(io.BytesIO(archive)) as zf:
        assert zf.read("2024/море.jpg") == b"new"


async def test_unsafe_paths_are_refused(
    make_client: ClientFactory, photos: Path, tmp_path: Path
) -> None:
    client = await make_client(upload_token=("cms-token",))
    (photos / "g").mkdir()
    os.symlink(tmp_path, photos / "g" / "out")
    resp = await client.put("/archive/g/out/x.jpg", data=b"x", headers=AUTH)
    assert resp.status == 409  # through a symlink: never followed for writing
    resp = await client.put("/archive/g/a//b.jpg", data=b"x", headers=AUTH)
    assert resp.status == 400
    assert (await client.put("/archive/bad.name/x.jpg", data=b"x", headers=AUTH)).status == 404
    # Dot segments only survive over a raw socket (clients normalise them away).
    for path in ("/archive/g/./x.jpg", "/archive/g/../x.jpg", "/archive/g/..%2F..%2Fx.jpg",
                 "/archive/g/%2E%2E/%2E%2E/x.jpg", "/archive/g/a%00b.jpg"):  # fmt: skip
        status = await raw_put(client.host, client.port, path)
        assert status in (400, 404), path
    assert not (tmp_path / "x.jpg").exists() and not (photos / "x.jpg").exists()
    assert sorted(p.name for p in (photos / "g").iterdir()) == ["out"]
    status, _, _ = await raw_get(client.host, client.port, "/archive/g/..%2F..%2Fx.jpg")
    assert status == 404  # GET of a member path is never served


async def raw_put(host: str, port: int | None, path: str) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"PUT {path} HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer cms-token\r\n"
        "Content-Length: 1\r\nConnection: close\r\n\r\nx".encode()
    )
    head = await reader.read()
    writer.close()
    await writer.wait_closed()
    return int(head.split(b" ", 2)[1])


async def test_digest_mismatch_places_nothing(make_client: ClientFactory, photos: Path) -> None:
    client = await make_client(upload_token=("cms-token",))
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    headers = {**AUTH, "Content-Digest": f"sha-256=:{wrong}:"}
    resp = await client.put("/archive/d/x.jpg", data=b"data", headers=headers)
    assert resp.status == 400
    assert not (photos / "d" / "x.jpg").exists()
    assert list((photos / ".satchel-tmp").iterdir()) == []


async def test_delete_member(make_client: ClientFactory, photos: Path) -> None:
    client = await make_client(upload_token=("cms-token",))
    await client.put("/archive/e/x.jpg", data=b"x", headers=AUTH)
    assert (await client.delete("/archive/e/x.jpg")).status == 401
    assert (await client.delete("/archive/e/x.jpg", headers=AUTH)).status == 204
    assert not (photos / "e" / "x.jpg").exists()
    assert (await client.delete("/archive/e/x.jpg", headers=AUTH)).status == 404
    single = await client.get("/archive/e/x.jpg")
    assert single.status == 404 and "Архив" in await single.text()
