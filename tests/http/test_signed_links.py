"""Signed, expiring links on archives and files: served while valid, 410 once expired,
403 when changed; the CLI, and the README's Python and PHP snippets, make good ones."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from satchel.links import signed_query
from tests.conftest import require_tool
from tests.helpers import make_folder, random_files

from .conftest import ClientFactory

SECRET = "correct horse battery staple"
OLD = "the secret before the rotation"
README = Path(__file__).resolve().parents[2] / "README.md"


def signed(path: str, ttl: int = 60, secret: str = SECRET) -> str:
    return f"{path}?{signed_query(secret.encode(), path, int(time.time()) + ttl)}"


async def _client(make_app_client: ClientFactory, photos: Path, **settings: Any) -> Any:
    make_folder(photos, "trip", random_files(["a.jpg", "b/c.jpg"]))
    return await make_app_client(link_secret=f"{SECRET},{OLD}", **settings)


async def test_required_signatures_guard_folder_archives(
    make_app_client: ClientFactory, photos: Path
) -> None:
    client = await _client(make_app_client, photos, require_signed_archives=True)
    unsigned = await client.get("/archive/trip/")
    assert unsigned.status == 403 and (await unsigned.json())["error"] == "unsigned_link"
    good = await client.get(signed("/archive/trip/"))
    body = await good.read()
    assert good.status == 200 and zipfile.ZipFile(io.BytesIO(body)).testzip() is None
    part = await client.get(signed("/archive/trip/"), headers={"Range": "bytes=100-"})
    assert part.status == 206 and await part.read() == body[100:]
    assert (await client.head(signed("/archive/trip/"))).status == 200
    no_slash = "/archive/trip?" + signed("/archive/trip/").split("?")[1]  # one canonical path
    assert (await client.get(no_slash)).status == 200
    assert (await client.get(signed("/archive/trip/", secret=OLD))).status == 200  # rotation


async def test_an_expired_link_is_gone_and_a_changed_one_forbidden(
    make_app_client: ClientFactory, photos: Path
) -> None:
    client = await _client(make_app_client, photos)
    assert (await client.get("/archive/trip/")).status == 200  # unsigned: not required
    expired = await client.get(signed("/archive/trip/", ttl=-1), headers={"Accept": "text/html"})
    assert expired.status == 410 and "expired" in await expired.text()
    assert expired.headers["Content-Type"].startswith("text/html")
    link = signed("/archive/trip/")
    for changed in (
        link.replace("trip", "trap"),  # another folder
        re.sub(r"expires=(\d+)", lambda m: f"expires={int(m[1]) + 3600}", link),  # longer
        link[:-2] + ("AA" if not link.endswith("AA") else "BB"),  # another signature
        link.split("&")[0],  # no signature
    ):
        answer = await client.get(changed)
        assert answer.status in (403, 404), changed
        if "trap" not in changed:
            assert (await answer.json())["error"] == "bad_signature"
    stranger = signed("/archive/trip/", secret="a secret nobody was given")
    assert (await client.get(stranger)).status == 403


async def test_stored_file_links_take_the_same_signatures(
    make_app_client: ClientFactory, photos: Path
) -> None:
    client = await _client(make_app_client, photos)
    data = os.urandom(1000)
    file_id = (await (await client.post("/files/", data=data)).json())["id"]
    assert await (await client.get(signed(f"/files/{file_id}/"))).read() == data
    download = "/download/" + file_id + "?" + signed(f"/files/{file_id}/").split("?")[1]
    assert await (await client.get(download)).read() == data
    assert (await client.get(signed(f"/files/{file_id}/", ttl=-5))).status == 410
    assert (await client.get(signed(f"/files/{file_id}/", secret="x" * 20))).status == 403
    assert (await client.get(f"/files/{file_id}/")).status == 200  # the id alone still works


async def test_a_server_without_a_secret_refuses_signed_links(
    make_app_client: ClientFactory, photos: Path
) -> None:
    make_folder(photos, "trip", random_files(["a.jpg"]))
    client = await make_app_client()
    answer = await client.get(signed("/archive/trip/"))
    assert answer.status == 403 and "--link-secret" in (await answer.json())["message"]


def _snippet(language: str) -> str:
    """The README's snippet in that language (the first fenced block of it)."""
    match = re.search(rf"```{language}\n(.*?)```", README.read_text(), re.DOTALL)
    assert match is not None, f"README has no {language} block"
    return match.group(1)


async def _fetches(client: TestClient[Any, Any], link: str) -> None:
    answer = await client.get(link)
    assert answer.status == 200, (link, await answer.text())
    assert zipfile.ZipFile(io.BytesIO(await answer.read())).testzip() is None


async def test_the_readme_snippets_and_the_cli_make_links_that_work(
    make_app_client: ClientFactory, photos: Path
) -> None:
    client = await _client(make_app_client, photos, require_signed_archives=True)
    scope: dict[str, Any] = {}
    exec(_snippet("python"), scope)  # the README's own code, on purpose
    await _fetches(client, scope["satchel_link"]("/archive/trip/", SECRET))
    php = require_tool("php")
    program = f"<?php {_snippet('php')} echo satchel_link('/archive/trip/', '{SECRET}');"
    made = subprocess.run([php, "-r", program.removeprefix("<?php ")], capture_output=True)
    assert made.returncode == 0, made.stderr
    await _fetches(client, made.stdout.decode())
    cli = subprocess.run(
        [sys.executable, "-m", "satchel", "admin", "sign", "/archive/trip", "--ttl", "60"],
        capture_output=True,
        text=True,
        env={**os.environ, "SATCHEL_LINK_SECRET": SECRET},
    )
    assert cli.returncode == 0, cli.stderr
    await _fetches(client, cli.stdout.strip())


def test_admin_sign_refuses_what_it_cannot_sign(capsys: Any) -> None:
    from satchel.cli.main import main

    secret = ["--link-secret", SECRET]
    assert main(["admin", "sign", "/check/abc", *secret]) == 2
    assert "give /archive/<hash>/ or /files/<id>/" in capsys.readouterr().err
    assert main(["admin", "sign", "/archive/x/", "--ttl", "0", *secret]) == 2
    assert main(["admin", "sign", "/archive/x/", "--link-secret", "short"]) == 2
    assert "at least 16" in capsys.readouterr().err
    base = ["--public-url", "https://files.example"]
    assert main(["admin", "sign", "/download/abc", *secret, *base]) == 0
    assert capsys.readouterr().out.startswith("https://files.example/files/abc/?expires=")
