"""Archives of a selection: POST /archives/ keeps a list of folder members and stored
files, and /archive/m/<id>/ serves their ZIP as a folder's archive is served."""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from satchel.http.keys import SELECTIONS
from satchel.links import signed_query
from tests.helpers import make_folder, random_files

from .conftest import ClientFactory
from .test_metrics import moved, scrape

TOKEN = "selection-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def members(blob: bytes) -> list[tuple[str, bytes]]:
    """The archive's members in order, each checked against its CRC."""
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


async def store_file(client: TestClient[Any, Any], data: bytes, name: str, **headers: str) -> str:
    resp = await client.post(f"/files/?name={name}", data=data, headers=headers)
    assert resp.status == 201, await resp.text()
    file_id: str = (await resp.json())["id"]
    return file_id


async def select(
    client: TestClient[Any, Any],
    body: Any,
    status: int = 201,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    resp = await client.post("/archives/", data=json.dumps(body), headers=headers)
    answer: dict[str, Any] = await resp.json()
    assert resp.status == status, answer
    if status == 201:
        assert resp.headers["Location"] == answer["url"]
    return answer


async def _wedding(
    client: TestClient[Any, Any], photos: Path
) -> tuple[dict[str, Any], dict[str, bytes], bytes]:
    files = random_files(["IMG_1.jpg", "sub/IMG_2.jpg", "IMG_3.jpg"])
    make_folder(photos, "3bea29cc", files)
    speech = b"a speech " * 5000
    file_id = await store_file(client, speech, "speech.txt")
    answer = await select(
        client,
        {
            "name": "wedding",
            "ttl": 3600,
            "entries": [
                {"path": "3bea29cc/sub/IMG_2.jpg", "name": "best/2.jpg"},
                {"path": "3bea29cc/IMG_1.jpg"},
                {"file": file_id},
            ],
        },
    )
    return answer, files, speech


async def test_a_selection_is_a_zip_of_its_entries_in_their_order(
    make_client: ClientFactory, photos: Path
) -> None:
    client = await make_client()
    answer, files, speech = await _wedding(client, photos)
    assert answer["files"] == 3 and len(answer["id"]) == 22
    assert answer["url"].endswith(f"/archive/m/{answer['id']}/")
    resp = await client.get(f"/archive/m/{answer['id']}/")
    body = await resp.read()
    assert resp.status == 200
    assert members(body) == [
        ("best/2.jpg", files["sub/IMG_2.jpg"]),
        ("IMG_1.jpg", files["IMG_1.jpg"]),
        ("speech.txt", speech),
    ]
    assert int(resp.headers["Content-Length"]) == len(body) == answer["size"]
    assert resp.headers["Content-Type"] == "application/zip"
    assert resp.headers["ETag"].startswith('"')
    assert 'filename="wedding.zip"' in resp.headers["Content-Disposition"]
    renamed = await client.get(f"/archive/m/{answer['id']}?name=Our day")
    assert "filename*=UTF-8''Our%20day.zip" in renamed.headers["Content-Disposition"]
    assert await renamed.read() == body


async def test_ranges_conditions_and_head_as_for_a_folder(
    make_client: ClientFactory, photos: Path
) -> None:
    client = await make_client()
    answer, _files, _speech = await _wedding(client, photos)
    url = f"/archive/m/{answer['id']}/"
    whole = await (await client.get(url)).read()
    head = await client.head(url)
    etag = head.headers["ETag"]
    assert head.status == 200 and head.headers["Content-Length"] == str(len(whole))
    part = await client.get(url, headers={"Range": "bytes=1000-", "If-Range": etag})
    assert part.status == 206 and await part.read() == whole[1000:]
    assert part.headers["Content-Range"] == f"bytes 1000-{len(whole) - 1}/{len(whole)}"
    stale = await client.get(url, headers={"Range": "bytes=1000-", "If-Range": '"other"'})
    assert stale.status == 200 and await stale.read() == whole
    assert (await client.get(url, headers={"If-None-Match": etag})).status == 304
    assert (await client.get(url, headers={"If-Match": '"other"'})).status == 412
    beyond = await client.get(url, headers={"Range": f"bytes={len(whole)}-"})
    assert beyond.status == 416 and beyond.headers["Content-Range"] == f"bytes */{len(whole)}"


async def test_an_entry_gone_later_refuses_the_archive_naming_it(
    make_client: ClientFactory, photos: Path
) -> None:
    client = await make_client()
    answer, _files, _speech = await _wedding(client, photos)
    (photos / "3bea29cc" / "IMG_1.jpg").unlink()
    resp = await client.get(f"/archive/m/{answer['id']}/")
    error = await resp.json()
    assert resp.status == 409 and error["error"] == "member_gone"
    assert error["entry"] == 1 and error["path"] == "3bea29cc/IMG_1.jpg"
    assert "3bea29cc/IMG_1.jpg" in error["message"]
    assert (await client.head(f"/archive/m/{answer['id']}/")).status == 409


async def test_a_stored_file_deleted_later_refuses_the_archive(
    make_client: ClientFactory, photos: Path
) -> None:
    client = await make_client()
    make_folder(photos, "f", {"a.jpg": b"a"})
    upload = await client.post("/files/?name=x.bin", data=b"x" * 100)
    stored = await upload.json()
    answer = await select(client, {"entries": [{"path": "f/a.jpg"}, {"file": stored["id"]}]})
    deleted = await client.delete(f"/files/{stored['id']}/?token={stored['delete_token']}")
    assert deleted.status in (200, 204)
    resp = await client.get(f"/archive/m/{answer['id']}/")
    error = await resp.json()
    assert resp.status == 409 and error["entry"] == 1 and error["file"] == stored["id"]


async def test_a_changed_member_is_served_as_it_is_now(
    make_client: ClientFactory, photos: Path
) -> None:
    client = await make_client()
    make_folder(photos, "f", {"a.jpg": b"first"})
    answer = await select(client, {"entries": [{"path": "f/a.jpg"}]})
    url = f"/archive/m/{answer['id']}/"
    before = await client.get(url)
    (photos / "f" / "a.jpg").write_bytes(b"second, longer")
    after = await client.get(url)
    assert members(await after.read()) == [("a.jpg", b"second, longer")]
    assert after.headers["ETag"] != before.headers["ETag"]


async def test_a_selection_of_an_unchanged_watched_folder_does_not_scan_it_again(
    make_app_client: ClientFactory, photos: Path
) -> None:
    client = await make_app_client()
    make_folder(photos, "f", random_files([f"{i}.jpg" for i in range(50)]))
    answer = await select(client, {"entries": [{"path": "f/7.jpg"}, {"path": "f/3.jpg"}]})
    url = f"/archive/m/{answer['id']}/"
    first = await (await client.get(url)).read()
    before = await scrape(client)
    assert await (await client.get(url)).read() == first
    after = await scrape(client)
    plans = "satchel_archive_plans_total"
    assert moved(before, after, plans, how="unscanned") == 1
    assert (
        moved(before, after, plans, how="planned") == moved(before, after, plans, how="reused") == 0
    )
    (photos / "f" / "3.jpg").write_bytes(b"new")
    assert members(await (await client.get(url)).read())[1] == ("3.jpg", b"new")


async def test_bad_selections_are_400_and_say_what_is_wrong(
    make_app_client: ClientFactory, photos: Path
) -> None:
    client = await make_app_client()
    make_folder(photos, "f", {"a.jpg": b"a", "A.JPG": b"b", "d/x": b"x"})
    limited = await store_file(client, b"once", "once.txt", **{"Max-Downloads": "1"})
    cases: list[tuple[Any, str]] = [
        ([], "JSON object"),
        ({"entries": []}, "at least one"),
        ({"entries": [{"path": "f/a.jpg"}], "color": 1}, "'color'"),
        ({"entries": [{"path": "f/../etc/passwd"}]}, "entries[0].path"),
        ({"entries": [{"path": "f"}]}, "'<folder>/<path in it>'"),
        ({"entries": [{"path": "f/a.jpg", "file": "x"}]}, "one of"),
        ({"entries": [{"path": "f/missing.jpg"}]}, "not in the photos root"),
        ({"entries": [{"path": "nofolder/a.jpg"}]}, "not in the photos root"),
        ({"entries": [{"file": "A" * 22}]}, "gone"),
        ({"entries": [{"file": "../x"}]}, "not a stored file's id"),
        ({"entries": [{"file": limited}]}, "download limit"),
        ({"entries": [{"path": "f/a.jpg"}, {"path": "f/A.JPG"}]}, "the same file"),
        ({"entries": [{"path": "f/a.jpg", "name": "d"}, {"path": "f/d/x"}]}, "needs a folder"),
        ({"entries": [{"path": "f/a.jpg", "name": "C:/x"}]}, "drive"),
        ({"entries": [{"path": "f/a.jpg"}], "ttl": 10**9}, "'ttl'"),
        ({"entries": [{"path": "f/a.jpg"}], "ttl": True}, "'ttl'"),
        ({"entries": [{"path": "f/a.jpg"}] * 10_001}, "at most 10000"),
    ]
    for body, words in cases:
        error = await select(client, body, status=400)
        assert words in error["message"], (body, error)
    not_json = await client.post(
        "/archives/", data=b"{", headers={"Content-Type": "application/json"}
    )
    assert not_json.status == 400 and "not JSON" in (await not_json.json())["message"]
    deep = await client.post("/archives/", data=b"[" * 100_000)
    assert deep.status == 400
    form = aiohttp.FormData()
    form.add_field("entries", b"[]", filename="entries.json")
    assert (await client.post("/archives/", data=form)).status == 415
    curl_d = await client.post("/archives/", data={"entries": "x"})  # form-urlencoded
    assert curl_d.status == 400 and "not JSON" in (await curl_d.json())["message"]
    huge = await client.post("/archives/", data=io.BytesIO(b" " * (4 * 1024 * 1024 + 1)))
    assert huge.status == 413


async def test_tokens_guard_making_and_deleting_selections(
    make_app_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "f", {"a.jpg": b"a"})
    client = await make_app_client(upload_token=TOKEN)
    body = {"entries": [{"path": "f/a.jpg"}]}
    assert (await select(client, body, status=401))["error"] == "unauthorized"
    answer = await select(client, body, headers=AUTH)
    url = f"/archive/m/{answer['id']}/"
    assert (await client.get(url)).status == 200  # the link needs no token
    assert (await client.delete(f"/archives/{answer['id']}")).status == 401
    assert (await client.delete(f"/archives/{answer['id']}", headers=AUTH)).status == 204
    assert (await client.get(url)).status == 404
    assert (await client.delete(f"/archives/{answer['id']}", headers=AUTH)).status == 404


async def test_with_signed_folder_links_a_selection_needs_a_token(
    make_app_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "f", {"a.jpg": b"a"})
    client = await make_app_client(
        require_signed_archives=True, link_secret="a secret of some length"
    )
    error = await select(client, {"entries": [{"path": "f/a.jpg"}]}, status=403)
    assert "--upload-token" in error["message"]


async def test_selection_links_take_signatures(
    make_app_client: ClientFactory, photos: Path
) -> None:
    secret = "a secret of some length"
    make_folder(photos, "f", {"a.jpg": b"a"})
    client = await make_app_client(link_secret=secret)
    answer = await select(client, {"entries": [{"path": "f/a.jpg"}]})
    path = f"/archive/m/{answer['id']}/"

    def signed(ttl: int) -> str:
        return f"{path}?{signed_query(secret.encode(), path, int(time.time()) + ttl)}"

    assert (await client.get(signed(60))).status == 200
    assert (await client.get(signed(-1))).status == 410
    assert (await client.get(signed(60).replace("sig=", "sig=x"))).status == 403
    assert (await client.get(path)).status == 200  # unsigned: not required


async def test_expired_selections_say_410_then_are_forgotten(
    make_app_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    make_folder(photos, "f", {"a.jpg": b"a"})
    client = await make_app_client()
    answer = await select(client, {"entries": [{"path": "f/a.jpg"}], "ttl": 60})
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.begin() as conn:
        ids = (await conn.execute(text("SELECT id FROM selections"))).scalars().all()
        assert ids and answer["id"] not in ids  # only a hash of the id is kept
        await conn.execute(text("UPDATE selections SET expires_at = '2020-01-01 00:00:00'"))
    await engine.dispose()
    gone = await client.get(f"/archive/m/{answer['id']}/", headers={"Accept": "text/html"})
    assert gone.status == 410 and "expired" in await gone.text()
    assert await client.app[SELECTIONS].purge() == 1
    assert (await client.get(f"/archive/m/{answer['id']}/")).status == 404


async def test_folder_members_crcs_are_cached_under_their_folders(
    make_app_client: ClientFactory, photos: Path, data_dir: Path
) -> None:
    make_folder(photos, "one", {"a.jpg": b"a" * 10})
    make_folder(photos, "two", {"a.jpg": b"b" * 10})
    client = await make_app_client()
    answer = await select(
        client,
        {
            "entries": [
                {"path": "one/a.jpg", "name": "1.jpg"},
                {"path": "two/a.jpg", "name": "2.jpg"},
            ]
        },
    )
    body = await (await client.get(f"/archive/m/{answer['id']}/")).read()
    assert members(body) == [("1.jpg", b"a" * 10), ("2.jpg", b"b" * 10)]
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    deadline = time.monotonic() + 10  # saved once the last byte is out: maybe just after
    while True:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT folder, name, crc32 FROM crc_cache"))).all()
        if len(rows) == 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    await engine.dispose()
    assert sorted(tuple(r) for r in rows) == [
        ("one", "a.jpg", zlib.crc32(b"a" * 10)),
        ("two", "a.jpg", zlib.crc32(b"b" * 10)),
    ]
    folder_zip = await (await client.get("/archive/one/")).read()  # the same cache serves it
    assert members(folder_zip) == [("a.jpg", b"a" * 10)]
