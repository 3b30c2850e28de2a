"""Files behind links through a real socket: upload, check, download, delete."""

from __future__ import annotations

import asyncio
import base64
import email.parser
import errno
import hashlib
import io
import os
import time
from datetime import datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from satchel.storage.local import TempFile
from satchel.storage.ring import BLOCK_SIZE, BLOCKS

from .conftest import ClientFactory


def stored_files(data_dir: Path) -> list[Path]:
    return sorted(p for p in (data_dir / "files").rglob("*") if p.is_file())


def temp_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "tmp").glob("*"))


async def upload(client: TestClient[Any, Any], data: bytes, **headers: str) -> dict[str, Any]:
    resp = await client.post("/files/", data=data, headers=headers)
    assert resp.status == 201, await resp.text()
    body: dict[str, Any] = await resp.json()
    assert resp.headers["Location"] == body["links"]["download"]
    return body


async def test_upload_stores_bytes_and_answers_with_links(
    make_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_client()
    data = os.urandom(300_000)
    disposition = "attachment; filename*=UTF-8''%D1%84%D0%BE%D1%82%D0%BE.jpg"
    body = await upload(
        client, data, **{"Content-Disposition": disposition, "Content-Type": "image/jpeg"}
    )
    assert body["name"] == "фото.jpg"
    assert body["size"] == len(data)
    assert body["sha256"] == hashlib.sha256(data).hexdigest()
    assert body["content_type"] == "image/jpeg"
    assert len(body["id"]) == 22 and body["downloads_left"] is None
    assert set(body["links"]) == {"check", "download", "delete"}
    [path] = stored_files(data_dir)
    assert path.name == body["id"] and path.read_bytes() == data  # stored by id, not by name
    assert temp_files(data_dir) == []


async def test_client_filename_is_only_metadata(make_client: ClientFactory, data_dir: Path) -> None:
    client = await make_client()
    body = await upload(
        client, b"x", **{"Content-Disposition": 'attachment; filename="../../etc/passwd"'}
    )
    assert body["name"] == "passwd"
    assert not (data_dir.parent / "etc").exists()
    nameless = await upload(client, b"y", **{"Content-Type": "image/png"})
    assert nameless["name"] == f"{nameless['id']}.png"
    by_query = await client.post("/upload/?name=report.pdf", data=b"%PDF")
    assert (await by_query.json())["name"] == "report.pdf"


async def test_multipart_form_with_several_files(make_client: ClientFactory) -> None:
    client = await make_client()
    form = aiohttp.FormData()
    form.add_field("file", b"first", filename="a.txt", content_type="text/plain")
    form.add_field("note", "not a file")
    form.add_field("file", b"second!", filename="b.bin")
    resp = await client.post("/upload/", data=form)
    assert resp.status == 201
    files = (await resp.json())["files"]
    assert [(f["name"], f["size"], f["content_type"]) for f in files] == [
        ("a.txt", 5, "text/plain"),
        ("b.bin", 7, "application/octet-stream"),
    ]
    for f in files:
        got = await client.get(f"/files/{f['id']}/")
        assert await got.read() == (b"first" if f["name"] == "a.txt" else b"second!")


async def test_download_headers_ranges_and_conditionals(make_client: ClientFactory) -> None:
    client = await make_client()
    data = os.urandom(100_000)
    body = await upload(
        client,
        data,
        **{"Content-Type": "text/html", "Content-Disposition": 'attachment; filename="x.html"'},
    )
    for path in (f"/files/{body['id']}/", f"/download/{body['id']}"):
        resp = await client.get(path)
        assert await resp.read() == data
        assert resp.headers["Content-Type"].startswith("text/html")
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Disposition"].startswith('attachment; filename="x.html"')
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert resp.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    path = f"/files/{body['id']}/"
    etag = (await client.head(path)).headers["ETag"]
    part = await client.get(path, headers={"Range": "bytes=10-19"})
    assert part.status == 206 and await part.read() == data[10:20]
    assert part.headers["Repr-Digest"] == resp.headers["Repr-Digest"]  # the whole file's
    multi = await client.get(path, headers={"Range": "bytes=0-1,-2"})
    assert multi.status == 206 and multi.headers["Content-Type"].startswith("multipart/byteranges")
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: "
        + multi.headers["Content-Type"].encode()
        + b"\r\n\r\n"
        + await multi.read()
    )
    parts = cast(list[Message], message.get_payload())
    assert [p.get_payload(decode=True) for p in parts] == [data[:2], data[-2:]]
    assert (await client.get(path, headers={"If-None-Match": etag})).status == 304
    assert (await client.get(path, headers={"Range": "bytes=999999-"})).status == 416
    stale = await client.get(path, headers={"Range": "bytes=0-0", "If-Range": '"old"'})
    assert stale.status == 200


async def test_max_downloads_counts_only_complete_downloads(make_client: ClientFactory) -> None:
    client = await make_client()
    data = os.urandom(10_000)
    body = await upload(client, data, **{"Max-Downloads": "2"})
    path = f"/files/{body['id']}/"
    assert await (await client.get(path, headers={"Range": "bytes=0-4999"})).read() == data[:5000]
    assert (await (await client.get(f"/check/{body['id']}")).json())["downloads_left"] == 2
    # resuming the rest completes one download
    assert await (await client.get(path, headers={"Range": "bytes=5000-"})).read() == data[5000:]
    assert (await (await client.get(f"/check/{body['id']}")).json())["downloads_left"] == 1
    assert await (await client.get(path)).read() == data
    gone = await client.get(path)
    assert gone.status == 404 and (await gone.json())["error"] == "file_not_found"
    assert (await client.get(f"/check/{body['id']}")).status == 404


async def test_limits_are_bounded_by_the_server(make_client: ClientFactory) -> None:
    client = await make_client(max_days=3, max_downloads=10)
    body = await upload(client, b"x", **{"Max-Days": "365", "Max-Downloads": "1000"})
    assert body["downloads_left"] == 10
    kept = datetime.fromisoformat(body["expires_at"]) - datetime.fromisoformat(body["created_at"])
    assert kept == timedelta(days=3)
    bad = await client.post("/files/", data=b"x", headers={"Max-Days": "soon"})
    assert bad.status == 400 and "Max-Days" in (await bad.json())["message"]


async def test_digest_mismatch_is_400_and_nothing_is_kept(
    make_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_client()
    data = b"hello world"
    wrong = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    resp = await client.post("/files/", data=data, headers={"Content-Digest": f"sha-256=:{wrong}:"})
    assert resp.status == 400 and (await resp.json())["error"] == "digest_mismatch"
    assert stored_files(data_dir) == [] and temp_files(data_dir) == []
    right = base64.b64encode(hashlib.sha256(data).digest()).decode()
    ok = await client.post("/files/", data=data, headers={"Repr-Digest": f"sha-256=:{right}:"})
    assert ok.status == 201


async def raw_exchange(client: TestClient[Any, Any], head: bytes, body: bytes = b"") -> bytes:
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(head + body)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(65536), 10)
    finally:
        writer.close()


async def test_declared_too_large_is_413_before_reading(
    make_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_client(max_upload_size=1000)
    answer = await raw_exchange(
        client,
        b"POST /files/ HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413")  # no 100 Continue came first
    assert stored_files(data_dir) == []


async def test_chunked_body_crossing_the_limit_is_cut_with_413(
    make_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_client(max_upload_size=100_000)

    async def chunks() -> Any:
        for _ in range(10):
            yield os.urandom(50_000)

    resp = await client.post("/files/", data=chunks())
    assert resp.status == 413
    assert stored_files(data_dir) == [] and temp_files(data_dir) == []


async def test_not_enough_space_is_507(make_client: ClientFactory, data_dir: Path) -> None:
    client = await make_client(disk_reserve=2**62)
    resp = await client.post("/files/", data=b"x" * 10)
    assert resp.status == 507 and (await resp.json())["error"] == "insufficient_storage"
    assert stored_files(data_dir) == []


async def test_a_disk_that_fills_up_mid_upload_is_507(
    make_client: ClientFactory, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_store = TempFile.store

    def full_after_one_block(temp: TempFile, block: memoryview) -> None:
        if temp.size:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_store(temp, block)

    monkeypatch.setattr(TempFile, "store", full_after_one_block)
    client = await make_client()
    resp = await client.post("/files/", data=io.BytesIO(os.urandom(BLOCK_SIZE + 1000)))
    assert resp.status == 507 and (await resp.json())["error"] == "insufficient_storage"
    assert stored_files(data_dir) == [] and temp_files(data_dir) == []


async def test_a_stalled_body_is_dropped(make_client: ClientFactory, data_dir: Path) -> None:
    client = await make_client(read_timeout=0.5)
    answer = await raw_exchange(
        client, b"POST /files/ HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n", b"x" * 10
    )
    assert answer.startswith(b"HTTP/1.1 408")
    assert stored_files(data_dir) == [] and temp_files(data_dir) == []


async def test_a_timeout_during_a_slow_write_waits_for_the_write(
    make_client: ClientFactory, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The read timeout strikes while a block is still being written: the temp file is
    closed and removed only after the writing thread is done with it."""
    events: list[str] = []
    real_store, real_discard = TempFile.store, TempFile.discard

    def slow_store(temp: TempFile, block: memoryview) -> None:
        time.sleep(0.6)  # a disk that stalls for longer than the read timeout
        real_store(temp, block)
        events.append("stored")

    def discard(temp: TempFile) -> None:
        events.append("discarded")
        real_discard(temp)

    monkeypatch.setattr(TempFile, "store", slow_store)
    monkeypatch.setattr(TempFile, "discard", discard)
    client = await make_client(read_timeout=0.2)
    more_than_the_ring = (BLOCKS + 2) * BLOCK_SIZE  # the reading waits for a free block
    resp = await client.post("/files/", data=io.BytesIO(os.urandom(more_than_the_ring)))
    assert resp.status == 408
    assert events == ["stored", "discarded"]
    assert stored_files(data_dir) == [] and temp_files(data_dir) == []


async def test_upload_tokens_guard_uploads_and_deletes(make_client: ClientFactory) -> None:
    client = await make_client(upload_token=("s3cret",))
    denied = await client.post("/files/", data=b"x")
    assert denied.status == 401 and denied.headers["WWW-Authenticate"].startswith("Bearer")
    auth = {"Authorization": "Bearer s3cret"}
    body = await upload(client, b"x", **auth)
    assert (await client.get(f"/files/{body['id']}/")).status == 200  # downloads need only the id
    path = f"/files/{body['id']}/?token={body['delete_token']}"
    assert (await client.delete(path)).status == 401
    assert (await client.delete(path, headers=auth)).status == 204


async def test_delete_flow(make_client: ClientFactory, data_dir: Path) -> None:
    client = await make_client()
    body = await upload(client, b"bye")
    path = f"/files/{body['id']}/"
    assert (await client.delete(path)).status == 403
    assert (await client.delete(path, headers={"X-Delete-Token": "wrong"})).status == 403
    assert (await client.delete(f"{path}?token={body['delete_token']}")).status == 204
    assert stored_files(data_dir) == []
    for probe in (client.get(path), client.get(f"/check/{body['id']}"), client.delete(path)):
        assert (await probe).status == 404


@pytest.mark.parametrize(
    "path", ["/check/short", "/files/..%2F..%2Fetc%2Fpasswd/", "/download/" + "a" * 22]
)
async def test_unknown_ids_are_json_404(make_client: ClientFactory, path: str) -> None:
    client = await make_client()
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["error"] in ("file_not_found", "not_found")


async def test_malformed_multipart_is_400_not_500(
    make_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_client()
    body = b'--B\r\nContent-Disposition: form-data; name="\xc3\x1f"\r\n\r\nx\r\n--B--\r\n'
    resp = await client.post(
        "/files/", data=body, headers={"Content-Type": "multipart/form-data; boundary=B"}
    )
    assert resp.status == 400 and (await resp.json())["error"] == "malformed_body"
    assert stored_files(data_dir) == []


async def test_the_delete_link_in_a_browser_asks_first(make_app_client: ClientFactory) -> None:
    client = await make_app_client(upload_token=("t",))
    resp = await client.post("/files/", data=b"<keep>", headers={"Authorization": "Bearer t",
                             "Content-Disposition": 'attachment; filename="a<b>.txt"'})  # fmt: skip
    stored = await resp.json()
    link = stored["links"]["delete"].split("//", 1)[1].split("/", 1)[1]
    page = await client.get(f"/{link}")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    text = await page.text()
    assert "a&lt;b&gt;.txt" in text and stored["delete_token"] in text and "<keep>" not in text
    assert 'id="upload-token"' in text  # this server needs the upload token to delete
    check = await (await client.get(f"/check/{stored['id']}")).json()
    assert check["downloads_left"] is None  # nothing was downloaded, nothing deleted
    assert await (await client.get(f"/files/{stored['id']}")).read() == b"<keep>"  # no slash


async def test_a_put_name_may_hold_any_character_but_a_slash(
    make_app_client: ClientFactory,
) -> None:
    """aiohttp's plain {name} stops at braces; transfer.sh-style names may hold them."""
    client = await make_app_client()
    for name in ("a{b}.txt", "}", "ý}[^±.bin"):
        resp = await client.put(f"/files/{quote(name)}", data=b"braces")
        assert resp.status == 201, await resp.text()
        assert (await resp.json())["name"] == name
