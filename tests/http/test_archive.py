"""GET/HEAD /archive/<hash>/ through a real socket, with sendfile and with reads."""

from __future__ import annotations

import email.parser
import io
import os
import time
import zipfile
import zlib
from email.message import Message
from pathlib import Path
from typing import cast
from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from satchel.ranges import http_date
from tests.helpers import NASTY_NAMES, make_folder, random_files, raw_get

from .conftest import ClientFactory


def unzip(blob: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        return {name: zf.read(name) for name in zf.namelist()}


async def crc_rows(data_dir: Path) -> list[tuple[str, str, int]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT folder, name, crc32 FROM crc_cache"))).all()
    await engine.dispose()
    return sorted((r[0], r[1], r[2]) for r in rows)


async def test_full_archive_has_every_file_and_decided_headers(
    make_client: ClientFactory, photos: Path
) -> None:
    files = random_files(NASTY_NAMES)
    make_folder(photos, "abc123", files)
    client = await make_client()
    resp = await client.get("/archive/abc123/")
    body = await resp.read()
    assert resp.status == 200
    assert unzip(body) == files
    assert resp.headers["Content-Length"] == str(len(body))
    assert resp.headers["Content-Type"] == "application/zip"
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["ETag"].startswith('"') and not resp.headers["ETag"].startswith("W/")
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=\"abc123.zip\"; filename*=UTF-8''abc123.zip"
    )
    newest = max(int(os.stat(photos / "abc123" / n).st_mtime) for n in files)
    assert resp.headers["Last-Modified"] == http_date(newest)
    assert "Transfer-Encoding" not in resp.headers


async def test_same_folder_gives_same_bytes_and_etag(
    make_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "f", random_files(["a", "b/c"]))
    client = await make_client()
    first, second = await client.get("/archive/f/"), await client.get("/archive/f")
    assert await first.read() == await second.read()
    assert first.headers["ETag"] == second.headers["ETag"]


async def test_touching_a_file_changes_the_etag(make_client: ClientFactory, photos: Path) -> None:
    folder = make_folder(photos, "f", {"a": b"1"})
    client = await make_client()
    before = (await client.head("/archive/f/")).headers["ETag"]
    os.utime(folder / "a", ns=(1, 1_000_000_123))
    assert (await client.head("/archive/f/")).headers["ETag"] != before


@pytest.mark.parametrize("watch", [True, False], ids=["watched", "scanned"])
async def test_each_archive_is_the_folder_as_it_is_now(
    make_app_client: ClientFactory, photos: Path, watch: bool
) -> None:
    """Whether inotify spares the scan of an unchanged folder or not, files written,
    replaced and removed behind Satchel's back are in the next archive as they are."""
    folder = make_folder(photos, "f", {"a": b"1", "sub/b": b"22"})
    client = await make_app_client(watch_folders=watch)
    first = await client.get("/archive/f/")
    assert unzip(await first.read()) == {"a": b"1", "sub/b": b"22"}
    again = await client.get("/archive/f/")
    assert again.headers["ETag"] == first.headers["ETag"]
    assert unzip(await again.read()) == {"a": b"1", "sub/b": b"22"}
    (folder / "sub" / "c").write_bytes(b"333")
    (folder / "a").unlink()
    (folder / "sub" / "new").mkdir()
    (folder / "sub" / "new" / "d").write_bytes(b"4444")
    changed = await client.get("/archive/f/")
    assert unzip(await changed.read()) == {"sub/b": b"22", "sub/c": b"333", "sub/new/d": b"4444"}
    (folder / "sub" / "b").write_bytes(b"xy")  # the same size, another version
    assert unzip(await (await client.get("/archive/f/")).read())["sub/b"] == b"xy"


async def test_head_matches_get_without_reading_files(
    make_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    make_folder(photos, "h", random_files(["x.jpg", "y/z.jpg"]))
    client = await make_client()
    head = await client.head("/archive/h/")
    assert head.status == 200
    assert await head.read() == b""
    assert await crc_rows(data_dir) == []  # nothing was read, so nothing was computed
    get = await client.get("/archive/h/")
    await get.read()
    for name in ("Content-Length", "ETag", "Last-Modified", "Content-Type", "Accept-Ranges"):
        assert head.headers[name] == get.headers[name]


async def test_crcs_are_cached_once_per_file_version(
    make_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    files = {"a.jpg": b"a" * 5000, "b.jpg": b"b" * 7000}
    folder = make_folder(photos, "c", files)
    client = await make_client()
    assert unzip(await (await client.get("/archive/c/")).read()) == files
    # Same size and mtime but other bytes: only a CRC kept can be the old one, so the
    # served header proves the file was not read again for its CRC.
    st = os.stat(folder / "a.jpg")
    (folder / "a.jpg").write_bytes(b"z" * 5000)
    os.utime(folder / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
    deadline = time.monotonic() + 10  # kept once the last byte is out: maybe just after
    while True:
        with zipfile.ZipFile(io.BytesIO(await (await client.get("/archive/c/")).read())) as zf:
            if zlib.crc32(files["a.jpg"]) == zf.getinfo("a.jpg").CRC:
                break
        assert time.monotonic() < deadline


async def test_single_range_and_suffix_range(make_client: ClientFactory, photos: Path) -> None:
    make_folder(photos, "r", random_files(NASTY_NAMES, seed=3))
    client = await make_client()
    whole = await (await client.get("/archive/r/")).read()
    size = len(whole)
    for header, (start, stop) in [
        ("bytes=0-99", (0, 100)),
        (f"bytes={size // 2}-", (size // 2, size)),
        ("bytes=-50", (size - 50, size)),
        (f"bytes={size - 30}-{size + 100}", (size - 30, size)),
    ]:
        resp = await client.get("/archive/r/", headers={"Range": header})
        assert resp.status == 206
        assert resp.headers["Content-Range"] == f"bytes {start}-{stop - 1}/{size}"
        assert await resp.read() == whole[start:stop]


async def test_multi_range_is_multipart_byteranges(
    make_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "m", random_files(["a", "b", "c"], seed=5))
    client = await make_client()
    whole = await (await client.get("/archive/m/")).read()
    size = len(whole)
    resp = await client.get("/archive/m/", headers={"Range": "bytes=0-9,100-199,-20"})
    body = await resp.read()
    assert resp.status == 206
    assert resp.headers["Content-Length"] == str(len(body))
    content_type = resp.headers["Content-Type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    message = email.parser.BytesParser().parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    members = cast(list[Message], message.get_payload())
    parts = [(p["Content-Range"], p.get_payload(decode=True)) for p in members]
    assert parts == [
        (f"bytes 0-9/{size}", whole[0:10]),
        (f"bytes 100-199/{size}", whole[100:200]),
        (f"bytes {size - 20}-{size - 1}/{size}", whole[-20:]),
    ]


async def test_conditional_requests(make_client: ClientFactory, photos: Path) -> None:
    make_folder(photos, "k", {"a": b"abc"})
    client = await make_client()
    first = await client.get("/archive/k/")
    etag, whole = first.headers["ETag"], await first.read()
    not_modified = await client.get("/archive/k/", headers={"If-None-Match": etag})
    assert not_modified.status == 304
    assert not_modified.headers["ETag"] == etag
    assert await not_modified.read() == b""
    failed = await client.get("/archive/k/", headers={"If-Match": '"nope"'})
    assert failed.status == 412
    assert (await failed.json())["error"] == "precondition_failed"
    stale = await client.get("/archive/k/", headers={"Range": "bytes=0-3", "If-Range": '"old"'})
    assert stale.status == 200 and await stale.read() == whole
    fresh = await client.get("/archive/k/", headers={"Range": "bytes=0-3", "If-Range": etag})
    assert fresh.status == 206 and await fresh.read() == whole[:4]


async def test_unsatisfiable_range_is_416_with_size(
    make_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "u", {"a": b"abc"})
    client = await make_client()
    size = int((await client.head("/archive/u/")).headers["Content-Length"])
    resp = await client.get("/archive/u/", headers={"Range": f"bytes={size}-"})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{size}"


async def test_empty_folder_gives_a_valid_empty_archive(
    make_client: ClientFactory, photos: Path
) -> None:
    (photos / "empty").mkdir()
    client = await make_client()
    resp = await client.get("/archive/empty/")
    body = await resp.read()
    assert resp.status == 200
    assert len(body) == 22 and unzip(body) == {}


@pytest.mark.parametrize(
    "path",
    [
        "/archive/missing/",
        "/archive/../",
        "/archive/../../etc/",
        "/archive/..%2F..%2Fetc/",
        "/archive/..%2F/",
        "/archive/%2E%2E/",
        "/archive/a%00b/",
        "/archive/" + "a" * 129 + "/",
        "/archive/a.b/",
        "/archive/a/b/",
        "/archive/plainfile/",
    ],
)
async def test_bad_or_missing_folders_are_a_404_page(
    make_client: ClientFactory, photos: Path, path: str
) -> None:
    (photos / "plainfile").write_bytes(b"not a folder")
    (photos.parent / "etc").mkdir(exist_ok=True)
    client = await make_client()
    status, head, body = await raw_get(client.host, client.port, path)
    assert status == 404
    assert b"Content-Type: text/html" in head
    page = body.decode()
    assert "Архив не существует или был удален" in page
    assert "The archive does not exist or has been deleted." in page


async def test_symlinks_inside_are_followed_outside_and_specials_skipped(
    make_client: ClientFactory, photos: Path, tmp_path: Path
) -> None:
    folder = make_folder(photos, "s", {"real.jpg": b"real"})
    make_folder(photos, "other", {"shared.jpg": b"shared"})
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"password")
    os.symlink(photos / "other" / "shared.jpg", folder / "link.jpg")
    os.symlink(secret, folder / "escape.txt")
    os.symlink(tmp_path, folder / "escape-dir")
    os.symlink(folder, folder / "loop")  # a cycle inside the root
    os.mkfifo(folder / "pipe")
    client = await make_client()
    resp = await client.get("/archive/s/")
    assert unzip(await resp.read()) == {"link.jpg": b"shared", "real.jpg": b"real"}


async def test_symlinked_folder_pointing_outside_is_404(
    make_client: ClientFactory, photos: Path, tmp_path: Path
) -> None:
    outside = make_folder(tmp_path, "outside", {"x": b"x"})
    os.symlink(outside, photos / "sneaky")
    client = await make_client()
    assert (await client.get("/archive/sneaky/")).status == 404


async def test_per_chunk_delay_still_gives_a_correct_archive(
    make_client: ClientFactory, photos: Path
) -> None:
    files = {"a": os.urandom(50_000), "b": os.urandom(20_000)}
    make_folder(photos, "d", files)
    client = await make_client(delay=0.001, chunk_size=8192)
    assert unzip(await (await client.get("/archive/d/")).read()) == files


async def test_index_favicon_health_and_json_404(make_client: ClientFactory) -> None:
    client = await make_client()
    index = await client.get("/")
    assert index.status == 200 and "/archive/7kna/" in await index.text()
    assert (await client.get("/favicon.ico")).status == 204
    assert await (await client.get("/healthz")).json() == {"status": "ok"}
    missing = await client.get("/nope")
    assert missing.status == 404
    assert (await missing.json())["error"] == "not_found"
    wrong_method = await client.post("/archive/x/")
    assert wrong_method.status == 405 and "GET" in wrong_method.headers["Allow"]
    wrong_method = await client.post("/check/" + "a" * 22)
    assert wrong_method.status == 405 and wrong_method.headers["Allow"] == "GET, HEAD"
    assert (await wrong_method.json())["error"] == "method_not_allowed"
    assert (await client.request("OPTIONS", "/tus/")).status == 204  # a route, not unrouted
    odd = await client.put("/archive/d/6%0A%C3%B3", data=b"x")  # a newline in the path
    assert odd.status == 404 and odd.content_type == "text/html"


async def test_name_sets_the_download_s_file_name(
    make_app_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "w3dd", random_files(["a.jpg"]))
    client = await make_app_client()
    names = {
        "": "w3dd.zip",
        "Свадьба 2026": "Свадьба 2026.zip",
        "best.ZIP": "best.ZIP",
        "../../etc/passwd": "passwd.zip",
        "a\x00b\nc\u202e.zip": "abc.zip",
        "..": "w3dd.zip",
    }
    plain = await (await client.get("/archive/w3dd/")).read()
    for given, expected in names.items():
        resp = await client.get("/archive/w3dd/", params={"name": given})
        disposition = resp.headers["Content-Disposition"]
        assert disposition.endswith("filename*=UTF-8''" + quote(expected, safe=""))
        assert "\n" not in disposition and await resp.read() == plain  # the same bytes
