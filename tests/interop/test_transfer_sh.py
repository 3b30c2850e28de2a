"""transfer.sh's habits with real curl: `curl --upload-file f http://satchel/` answers
the download link as text and the delete link in X-Url-Delete; Max-Downloads and
Max-Days work there; `Accept: text/plain` gets the links alone on every upload route;
JSON answers end with a newline."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import LiveServer, require_tool

pytestmark = pytest.mark.interop


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("curl"), "-sS", *args], capture_output=True, text=True, check=True
    )


def headers_of(dump: Path) -> dict[str, str]:
    lines = dump.read_text().splitlines()[1:]
    return {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines) if v
    }


def test_curl_upload_file_to_the_root_is_answered_as_transfer_sh_does(
    live_server: LiveServer, tmp_path: Path
) -> None:
    photo = tmp_path / "holiday photo.jpg"
    photo.write_bytes(os.urandom(300_000))
    dump = tmp_path / "headers"
    answer = curl(
        "--upload-file", str(photo), "-H", "Max-Downloads: 1", "-H", "Max-Days: 2",
        "-D", str(dump), f"{live_server.url}/",
    ).stdout  # fmt: skip
    url = answer.strip()
    assert answer == url + "\n" and url.startswith(f"{live_server.url}/files/")
    headers = headers_of(dump)
    assert headers["content-type"].startswith("text/plain")
    assert headers["location"] == url
    check = json.loads(curl(url.replace("/files/", "/check/").rstrip("/")).stdout)
    assert check["name"] == "holiday photo.jpg" and check["downloads_left"] == 1
    days = (check["expires_at"][:10], check["created_at"][:10])
    assert days[0] > days[1]  # Max-Days: 2 reached the record
    assert curl("-o", str(tmp_path / "back"), "-w", "%{http_code}", url).stdout == "200"
    assert (tmp_path / "back").read_bytes() == photo.read_bytes()
    gone = curl("-o", "/dev/null", "-w", "%{http_code}", url).stdout  # Max-Downloads: 1
    assert gone == "404"


def test_the_delete_link_deletes(live_server: LiveServer, tmp_path: Path) -> None:
    note = tmp_path / "note.txt"
    note.write_bytes(b"remove me")
    dump = tmp_path / "headers"
    url = curl("-T", str(note), "-D", str(dump), f"{live_server.url}/").stdout.strip()
    delete = headers_of(dump)["x-url-delete"]
    assert curl("-X", "DELETE", "-o", "/dev/null", "-w", "%{http_code}", delete).stdout == "204"
    assert curl("-o", "/dev/null", "-w", "%{http_code}", url).stdout == "404"


def test_accept_decides_between_text_and_json_on_every_upload_route(
    live_server: LiveServer, tmp_path: Path
) -> None:
    data = tmp_path / "a.bin"
    data.write_bytes(b"x" * 1000)
    base = live_server.url
    for route in ("/files/", "/upload/"):
        url = curl("--data-binary", f"@{data}", "-H", "Accept: text/plain", f"{base}{route}").stdout
        assert url.startswith(f"{base}/files/") and url.endswith("/\n") and url.count("\n") == 1
    url = curl("-H", "Accept: text/plain", "-T", str(data), f"{base}/files/").stdout
    assert url.startswith(f"{base}/files/") and url.count("\n") == 1
    two = curl("-H", "Accept: text/plain", "-F", f"file=@{data}", "-F", f"file=@{data}",
               f"{base}/files/").stdout  # fmt: skip
    assert len(two.splitlines()) == 2 and all(u.startswith(base) for u in two.splitlines())
    answer = curl("-H", "Accept: application/json", "-T", str(data), f"{base}/").stdout
    assert answer.endswith("}\n") and json.loads(answer)["size"] == 1000
    plain_json = curl("-T", str(data), f"{base}/files/").stdout  # curl's */*: JSON there
    assert plain_json.endswith("}\n") and json.loads(plain_json)["name"] == "a.bin"
    error = curl("-o", "-", f"{base}/check/nope").stdout
    assert error.endswith("}\n") and json.loads(error)["error"] == "file_not_found"
