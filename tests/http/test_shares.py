"""Shares: several stored files under one link, a page, "download all" as a resumable
ZIP, a password and a download limit that no file's own link gets round."""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from satchel.http.keys import SHARES
from tests.helpers import eventually

from .conftest import ClientFactory

Client = TestClient[Any, Any]


async def make_share(client: Client, **body: Any) -> dict[str, Any]:
    resp = await client.post("/shares/", json=body)
    answer: dict[str, Any] = await resp.json()
    assert resp.status == 201, answer
    assert resp.headers["Location"] == answer["url"]
    return answer


def joining(share: dict[str, Any]) -> dict[str, str]:
    return {"Satchel-Share": share["id"], "Satchel-Share-Token": share["owner_token"]}


async def put(
    client: Client, share: dict[str, Any], name: str, data: bytes, kind: str = "text/plain"
) -> dict[str, Any]:
    headers = {**joining(share), "Content-Type": kind}
    resp = await client.post(f"/files/?name={name}", data=data, headers=headers)
    answer: dict[str, Any] = await resp.json()
    assert resp.status == 201, answer
    return answer


def path_of(url: str) -> str:
    return "/" + url.split("/", 3)[3]


def members(blob: bytes) -> list[tuple[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(blob)) as zf:
        assert zf.testzip() is None
        return [(info.filename, zf.read(info)) for info in zf.infolist()]


@pytest.fixture
async def client(db_url: str, make_app_client: ClientFactory) -> Client:
    """On SQLite, then on the real PostgreSQL."""
    return await make_app_client(db=db_url)


async def test_files_join_a_share_and_are_served_only_through_it(client: Client) -> None:
    share = await make_share(client)
    assert len(share["id"]) == 22 and share["url"].endswith(f"/s/{share['id']}/")
    assert share["owner_url"] == f"{share['url']}#owner={share['owner_token']}"
    assert share["files"] == [] and share["closed"] is False and share["password"] is False

    photo = await put(client, share, "photo.jpg", b"\xff\xd8 jpeg bytes")
    notes = await put(client, share, "notes.txt", b"some notes\n" * 100)
    assert photo["share"] == share["id"]
    download = path_of(photo["links"]["download"])
    assert download == f"/s/{share['id']}/f/{photo['id']}"
    assert path_of(photo["links"]["check"]) == f"/shares/{share['id']}"

    resp = await client.get(download)
    assert resp.status == 200 and await resp.read() == b"\xff\xd8 jpeg bytes"
    assert 'filename="photo.jpg"' in resp.headers["Content-Disposition"]
    # not by the file's own links: they would get round the share's password and limit
    assert (await client.get(f"/files/{photo['id']}/")).status == 404
    assert (await client.get(f"/check/{photo['id']}")).status == 404
    assert (await client.get(f"/s/{share['id']}/f/{'A' * 22}")).status == 404

    listed = await (await client.get(f"/shares/{share['id']}")).json()
    assert [f["name"] for f in listed["files"]] == ["photo.jpg", "notes.txt"]
    assert listed["size"] == len(b"\xff\xd8 jpeg bytes") + 1100
    assert [f["id"] for f in listed["files"]] == [photo["id"], notes["id"]]

    # a file of the share may still be deleted alone, with its own delete token
    resp = await client.delete(f"/files/{notes['id']}/?token={notes['delete_token']}")
    assert resp.status == 204
    listed = await (await client.get(f"/shares/{share['id']}")).json()
    assert [f["name"] for f in listed["files"]] == ["photo.jpg"]


async def test_download_all_is_an_exact_resumable_zip(client: Client) -> None:
    share = await make_share(client)
    first, second = b"a" * 70_000, bytes(range(256)) * 300
    await put(client, share, "Report.pdf", first)
    await put(client, share, "report.pdf", second)  # the same file once extracted on Windows
    await put(client, share, "CON.txt", b"device")  # a device name there
    url = f"/s/{share['id']}/all.zip"
    head = await client.head(url)
    whole = await (await client.get(url)).read()
    assert head.status == 200 and int(head.headers["Content-Length"]) == len(whole)
    listed = await (await client.get(f"/shares/{share['id']}")).json()
    assert listed["archive"]["size"] == len(whole)
    assert members(whole) == [
        ("Report.pdf", first),
        ("report (2).pdf", second),
        ("_CON.txt", b"device"),
    ]
    etag = head.headers["ETag"]
    part = await client.get(url, headers={"Range": "bytes=5000-", "If-Range": etag})
    assert part.status == 206 and await part.read() == whole[5000:]
    assert f'filename="share-{share["id"][:8]}.zip"' in head.headers["Content-Disposition"]
    # a file added changes the archive: a resume of the old one gets the new one whole
    await put(client, share, "late.txt", b"late")
    again = await client.get(url, headers={"Range": "bytes=5000-", "If-Range": etag})
    assert again.status == 200 and members(await again.read())[-1] == ("late.txt", b"late")


async def test_joining_needs_the_owner_token_and_an_open_share(client: Client) -> None:
    share = await make_share(client)
    wrong = {"Satchel-Share": share["id"], "Satchel-Share-Token": "not-the-token"}
    resp = await client.post("/files/?name=a.txt", data=b"x", headers=wrong)
    assert resp.status == 403
    unknown = {"Satchel-Share": "B" * 22, "Satchel-Share-Token": share["owner_token"]}
    resp = await client.post("/files/?name=a.txt", data=b"x", headers=unknown)
    assert resp.status == 404 and (await resp.json())["error"] == "share_not_found"
    resp = await client.post(
        "/files/?name=a.txt", data=b"x", headers={**joining(share), "Max-Days": "2"}
    )
    assert resp.status == 400 and "share's expiry" in (await resp.json())["message"]

    owner = {"Authorization": f"Bearer {share['owner_token']}"}
    resp = await client.patch(f"/shares/{share['id']}", json={"closed": True}, headers=owner)
    assert resp.status == 200 and (await resp.json())["closed"] is True
    resp = await client.post("/files/?name=a.txt", data=b"x", headers=joining(share))
    assert resp.status == 409 and (await resp.json())["error"] == "share_closed"
    resp = await client.post(
        "/tus/",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": "1",
            "Upload-Metadata": _metadata(share=share["id"], share_token=share["owner_token"]),
        },
    )
    assert resp.status == 409
    listed = await (await client.get(f"/shares/{share['id']}")).json()
    assert listed["files"] == []


def _metadata(**pairs: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in pairs.items())


async def test_a_tus_upload_joins_and_its_token_is_not_kept(client: Client) -> None:
    share = await make_share(client)
    data = b"resumable bytes " * 1000
    tus = {"Tus-Resumable": "1.0.0"}
    resp = await client.post(
        "/tus/",
        headers={
            **tus,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": _metadata(
                filename="big.bin", share=share["id"], share_token=share["owner_token"]
            ),
        },
    )
    assert resp.status == 201, await resp.text()
    location = path_of(resp.headers["Location"])
    head = await client.head(location, headers=tus)
    assert "share_token" not in head.headers["Upload-Metadata"]
    resp = await client.patch(
        location,
        data=data,
        headers={
            **tus,
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert resp.status == 204
    download = path_of(resp.headers["Satchel-Download"])
    assert download.startswith(f"/s/{share['id']}/f/")
    assert await (await client.get(download)).read() == data
    resp = await client.post(
        "/tus/",
        headers={
            **tus,
            "Upload-Length": "1",
            "Upload-Metadata": _metadata(share=share["id"], share_token="wrong"),
        },
    )
    assert resp.status == 403


async def test_a_password_guards_the_api_the_page_and_the_downloads(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client()
    share = await make_share(client, password="correct horse")
    assert share["password"] is True
    file = await put(client, share, "secret.txt", b"secret")
    sid = share["id"]
    api = f"/shares/{sid}"
    answer = await client.get(api)
    assert answer.status == 403 and (await answer.json())["error"] == "password_required"
    answer = await client.get(api, headers={"Satchel-Share-Password": "wrong"})
    assert answer.status == 403 and (await answer.json())["error"] == "wrong_password"
    answer = await client.get(api, headers={"Satchel-Share-Password": "correct horse"})
    assert answer.status == 200
    owner = {"Authorization": f"Bearer {share['owner_token']}"}
    assert (await client.get(api, headers=owner)).status == 200
    for path in (f"/s/{sid}/all.zip", f"/s/{sid}/f/{file['id']}"):
        assert (await client.get(path)).status == 403

    # the page asks, and remembers the answer in a cookie for this share's pages
    page = await client.get(f"/s/{sid}/")
    assert page.status == 200 and 'type="password"' in await page.text()
    assert "secret.txt" not in await page.text()
    wrong = await client.post(f"/s/{sid}/", data={"password": "nope"}, allow_redirects=False)
    assert wrong.status == 403 and "That is not this share" in await wrong.text()
    right = await client.post(
        f"/s/{sid}/", data={"password": "correct horse"}, allow_redirects=False
    )
    assert right.status == 303 and right.headers["Location"].endswith(f"/s/{sid}/")
    cookie = right.cookies["satchel_share"]
    assert cookie["httponly"] and cookie["path"] == f"/s/{sid}/"
    assert cookie["samesite"] == "Lax"
    page = await client.get(f"/s/{sid}/")
    assert "secret.txt" in await page.text()
    assert await (await client.get(f"/s/{sid}/f/{file['id']}")).read() == b"secret"
    assert members(await (await client.get(f"/s/{sid}/all.zip")).read()) == [
        ("secret.txt", b"secret")
    ]

    # the owner link's script opens the page with the owner token instead
    client.session.cookie_jar.clear()
    by_owner = f"/s/{sid}/"
    bad = await client.post(by_owner, data={"owner": "not-it"}, allow_redirects=False)
    assert bad.status == 403 and "owner token" in await bad.text()
    opened = await client.post(
        by_owner, data={"owner": share["owner_token"]}, allow_redirects=False
    )
    assert opened.status == 303 and "satchel_share" in opened.cookies
    assert "secret.txt" in await (await client.get(f"/s/{sid}/")).text()

    # a new password ends every session
    resp = await client.patch(api, json={"password": "another"}, headers=owner)
    assert resp.status == 200
    assert (await client.get(f"/s/{sid}/all.zip")).status == 403
    resp = await client.patch(api, json={"password": None}, headers=owner)
    assert (await resp.json())["password"] is False
    assert (await client.get(f"/s/{sid}/all.zip")).status == 200


async def test_wrong_passwords_are_slowed_per_client(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    share = await make_share(client, password="pw")
    api = f"/shares/{share['id']}"
    for _ in range(5):
        resp = await client.get(api, headers={"Satchel-Share-Password": "guess"})
        assert resp.status == 403
    resp = await client.get(api, headers={"Satchel-Share-Password": "pw"})
    assert resp.status == 429 and 800 < int(resp.headers["Retry-After"]) <= 901
    page = await client.post(f"/s/{share['id']}/", data={"password": "pw"})
    assert page.status == 429 and "Too many wrong passwords" in await page.text()
    # another share is another count
    other = await make_share(client, password="pw")
    resp = await client.get(f"/shares/{other['id']}", headers={"Satchel-Share-Password": "pw"})
    assert resp.status == 200


async def test_the_download_limit_counts_whole_downloads_of_any_kind(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client()
    share = await make_share(client, max_downloads=2)
    photo = await put(client, share, "a.png", b"\x89PNG " * 1000, "image/png")
    sid = share["id"]
    page = await (await client.get(f"/s/{sid}/")).text()
    assert "<img" not in page  # with a limit, a preview would be a download
    assert "2 downloads left" in page

    async def left() -> int | None:
        resp = await client.get(f"/shares/{sid}")
        return (await resp.json())["downloads_left"] if resp.status == 200 else None

    part = await client.get(f"/s/{sid}/all.zip", headers={"Range": "bytes=0-99"})
    assert part.status == 206 and len(await part.read()) == 100  # counts for nothing
    assert members(await (await client.get(f"/s/{sid}/all.zip")).read())[0][0] == "a.png"
    # counted once the last byte is out: perhaps just after the client has it
    await eventually(lambda: _equal(left(), 1), what="the archive counted")
    assert len(await (await client.get(f"/s/{sid}/f/{photo['id']}")).read()) == 5000
    await eventually(lambda: _equal(left(), None), what="the file counted")
    for path in (f"/s/{sid}/", f"/s/{sid}/all.zip", f"/s/{sid}/f/{photo['id']}"):
        assert (await client.get(path)).status == 404
    await client.app[SHARES].purge()  # used up: gone, with its files
    assert await client.app[SHARES].repo.get(sid) is None


async def _equal(value: Awaitable[object], expected: object) -> bool:
    return await value == expected


async def test_previews_of_images_without_a_limit(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    share = await make_share(client)
    await put(client, share, "cat.jpg", b"\xff\xd8" + b"c" * 100, "image/jpeg")
    await put(client, share, "<i>odd.svg", b"<svg/>", "image/svg+xml")
    page = await client.get(f"/s/{share['id']}/")
    text_ = await page.text()
    assert page.status == 200 and text_.count("<img") == 1  # JPEG yes, SVG never
    assert "&lt;i&gt;odd.svg" in text_ and "<i>odd" not in text_
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["Cache-Control"] == "no-store"
    redirect = await client.get(f"/s/{share['id']}", allow_redirects=False)
    assert redirect.status == 308 and redirect.headers["Location"] == f"/s/{share['id']}/"


async def test_changes_need_the_owner_and_move_the_files_expiry(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    share = await make_share(client, max_days=3)
    file = await put(client, share, "a.txt", b"a")
    api = f"/shares/{share['id']}"
    assert (await client.patch(api, json={"max_days": 1})).status == 403
    bad = {"Authorization": "Bearer nope"}
    assert (await client.patch(api, json={"max_days": 1}, headers=bad)).status == 403
    owner = {"Authorization": f"Bearer {share['owner_token']}"}
    for body, why in (
        ({}, "Say what to change"),
        ({"max_days": 0}, "'max_days'"),
        ({"max_days": 99}, "'max_days'"),
        ({"max_downloads": "3"}, "'max_downloads'"),
        ({"password": ""}, "'password'"),
        ({"closed": False}, "not opened again"),
        ({"colour": "red"}, "Unknown key"),
        ([1], "JSON object"),
    ):
        resp = await client.patch(api, json=body, headers=owner)
        assert resp.status == 400 and why in (await resp.json())["message"], body
    resp = await client.patch(api, json={"max_days": 1, "max_downloads": 4}, headers=owner)
    changed = await resp.json()
    assert changed["max_downloads"] == 4
    expires = datetime.fromisoformat(changed["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(days=1))) < timedelta(minutes=1)
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT expires_at FROM files WHERE id = :id"), {"id": file["id"]}
            )
        ).one()
    await engine.dispose()
    assert str(row[0]).startswith(expires.strftime("%Y-%m-%d %H:%M"))


async def test_deleting_a_share_removes_its_files(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    share = await make_share(client)
    file = await put(client, share, "a.txt", b"gone soon")
    stored = data_dir / "files" / file["id"][:2] / file["id"]
    assert stored.read_bytes() == b"gone soon"
    api = f"/shares/{share['id']}"
    assert (await client.delete(api)).status == 403
    resp = await client.delete(api, headers={"Authorization": f"Bearer {share['owner_token']}"})
    assert resp.status == 204
    assert not stored.exists()
    assert (await client.get(api)).status == 404
    assert (await client.get(f"/s/{share['id']}/")).status == 404


async def test_an_expired_share_is_purged_with_its_files(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    share = await make_share(client)
    file = await put(client, share, "a.txt", b"old")
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    past = datetime.now(UTC) - timedelta(minutes=1)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE shares SET expires_at = :t WHERE id = :id"), {"t": past, "id": share["id"]}
        )
    await engine.dispose()
    assert (await client.get(f"/s/{share['id']}/all.zip")).status == 404
    assert await client.app[SHARES].purge() == 1
    assert not (data_dir / "files" / file["id"][:2] / file["id"]).exists()


async def test_bad_share_requests_are_clear_errors(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    for body, status in (
        ("[]", 400),
        ('{"max_days": 31}', 400),
        ('{"max_downloads": 0}', 400),
        ('{"password": 5}', 400),
        ('{"max_days": true}', 400),
        ("{", 400),
        ("x" * 70_000, 413),
    ):
        resp = await client.post("/shares/", data=body)
        answer = await resp.json()
        assert resp.status == status, (body, answer)
    resp = await client.post("/shares/")  # no body: the defaults
    assert resp.status == 201
    assert (await client.get("/shares/short")).status == 404
    assert (await client.get("/s/short/all.zip")).status == 404
    assert (await client.post("/s/short/", data={"password": "x"})).status == 404
    # the form of a share without a password (it was removed meanwhile): back to the page
    share = await make_share(client)
    resp = await client.post(f"/s/{share['id']}/", data={"password": "x"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == share["url"]
    assert "Set-Cookie" not in resp.headers


async def test_ids_no_share_could_have_are_404_before_the_database(client: Client) -> None:
    """PostgreSQL refuses a NUL in text: such an id never reaches it (it was a 500)."""
    share = await make_share(client)
    for path in ("/s/%00/", "/shares/%00", "/s/%00/all.zip", f"/s/{share['id']}/f/%00"):
        resp = await client.get(path)
        assert resp.status == 404, (path, await resp.text())
    nul = base64.b64encode(b"\x00").decode()
    resp = await client.post(
        "/tus/",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1", "Upload-Metadata": f"share {nul}"},
    )
    assert resp.status == 404 and (await resp.json())["error"] == "share_not_found"


async def test_shares_need_the_upload_token_where_there_is_one(
    make_app_client: ClientFactory,
) -> None:
    client = await make_app_client(upload_token=["site-token"])
    assert (await client.post("/shares/", json={})).status == 401
    resp = await client.post("/shares/", json={}, headers={"Authorization": "Bearer site-token"})
    share = await resp.json()
    assert resp.status == 201
    headers = {**joining(share), "Authorization": "Bearer site-token"}
    resp = await client.post("/files/?name=a.txt", data=b"a", headers=headers)
    assert resp.status == 201
    # the owner token stands in for the upload token where it manages its share
    owner = {"Authorization": f"Bearer {share['owner_token']}"}
    resp = await client.patch(f"/shares/{share['id']}", json={"closed": True}, headers=owner)
    assert resp.status == 200


async def test_the_qr_code_is_an_svg_of_the_link(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    share = await make_share(client)
    resp = await client.get(f"/s/{share['id']}/qr.svg")
    body = await resp.text()
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    assert body.startswith("<svg") and "<title>Share link</title>" in body
    assert resp.headers["Content-Security-Policy"] == "default-src 'none'"


async def test_a_selection_cannot_take_a_share_file(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    share = await make_share(client)
    file = await put(client, share, "a.txt", b"a")
    resp = await client.post("/archives/", data=json.dumps({"entries": [{"file": file["id"]}]}))
    assert resp.status == 400 and "belongs to a share" in (await resp.json())["message"]
