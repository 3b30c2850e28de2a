"""The access log of a real server: one line per request, with what really went out."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

from tests.conftest import READY, LiveServer, serving
from tests.helpers import raw_get

LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO satchel\.access: (?P<client>\S+) "
    r'"(?P<request>(?:[^"\\]|\\.)*)" (?P<status>\d{3}) (?P<bytes>\d+) '
    r'"(?P<referer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)" (?P<took>\d+\.\d{6})s '
    r"\[(?P<id>[0-9a-f]{12}-[0-9a-f]+)\]$"
)


def access_lines(server: LiveServer, count: int) -> list[re.Match[str]]:
    """The log's access lines, once there are ``count`` (each is written just after its
    response); every one of them must parse. The readiness probe's are left out."""
    deadline = time.monotonic() + 10
    while True:
        lines = [
            ln
            for ln in server.log.read_text().splitlines()
            if "satchel.access" in ln and READY["User-Agent"] not in ln
        ]
        if len(lines) >= count or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    matches = [LINE.match(ln) for ln in lines]
    assert all(matches), lines
    return [m for m in matches if m is not None]


async def get(server: LiveServer, target: str, *headers: str) -> tuple[int, int, bytes]:
    """(status, bytes of the whole response as they came off the socket, body)."""
    status, head, body = await raw_get(
        "127.0.0.1", int(server.url.rsplit(":", 1)[1]), target, *headers
    )
    return status, len(head) + len(b"\r\n\r\n") + len(body), body


def upload(server: LiveServer, body: bytes) -> str:
    request = urllib.request.Request(f"{server.url}/files/", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.load(answer)["id"])


async def test_a_line_counts_every_byte_sent_and_the_real_time_taken(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: sent by sendfile, past aiohttp's count
    with serving(photos, data_dir, tmp_path) as server:
        file_id = upload(server, body)
        whole = await get(server, f"/files/{file_id}/")
        part = await get(server, f"/files/{file_id}/", "Range: bytes=10-1009")
        check = await get(server, f"/check/{file_id}?x=1")
        await get(server, f"/check/{file_id}")  # from the cache: within one turn of the loop
        _, download, ranged, checked, cached = access_lines(server, 5)

    assert (whole[0], whole[2], part[0]) == (200, body, 206)
    assert (download["request"], download["status"]) == (f"GET /files/{file_id}/ HTTP/1.1", "200")
    assert int(download["bytes"]) == whole[1]  # the headers and all of the body
    assert (ranged["status"], int(ranged["bytes"])) == ("206", part[1])
    assert checked["request"] == f"GET /check/{file_id}?x=1 HTTP/1.1"
    assert int(checked["bytes"]) == check[1]
    # aiohttp's logger timed with uvloop's clock, which moves once per turn of the loop,
    # and wrote 0.000000s for a request answered within one
    assert all(0 < float(m["took"]) < 5 for m in (download, ranged, checked, cached))


async def test_quotes_and_control_characters_cannot_forge_fields(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    agent = 'curl" 200 999 "-" "x\tthe end'
    with serving(photos, data_dir, tmp_path) as server:
        await get(server, "/healthz", f"User-Agent: {agent}", 'Referer: http://a/"b\\c')
        (line,) = access_lines(server, 1)
    assert line["agent"] == 'curl\\" 200 999 \\"-\\" \\"x\\tthe end'
    assert line["referer"] == 'http://a/\\"b\\\\c'
    assert (line["status"], line["client"]) == ("200", "127.0.0.1")


async def test_behind_a_trusted_proxy_the_forwarded_client_is_logged(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    with serving(photos, data_dir, tmp_path, "--trusted-proxy", "127.0.0.1") as server:
        await get(server, "/healthz", "X-Forwarded-For: 198.51.100.9, 203.0.113.7")
    with serving(photos, data_dir, tmp_path) as untrusting:
        await get(untrusting, "/healthz", "X-Forwarded-For: 203.0.113.7")
        lines = access_lines(untrusting, 2)
    # the log file is shared: the first server's line, then the second's
    assert [m["client"] for m in lines] == ["203.0.113.7", "127.0.0.1"]


async def test_no_access_log_writes_no_lines(photos: Path, data_dir: Path, tmp_path: Path) -> None:
    with serving(photos, data_dir, tmp_path, "--no-access-log") as server:
        await get(server, "/healthz")
        await get(server, "/nope")
    assert "satchel.access" not in server.log.read_text()


async def test_tokens_in_urls_never_reach_the_log_and_the_server_names_no_versions(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    with serving(photos, data_dir, tmp_path) as server:
        file_id = upload(server, b"x" * 100)
        secret = "s3cr3t-Value_0"
        port = int(server.url.rsplit(":", 1)[1])
        targets = [
            f"/files/{file_id}/?token={secret}",
            f"/files/{file_id}/?a=1&Delete_Token={secret}&b=2",
            f"/check/{file_id}?access_token={secret};x=1",
        ]
        for target in targets:
            await get(server, target, f"Referer: http://site/?token={secret}")
        status, head, _ = await raw_get("127.0.0.1", port, "/healthz")
        assert status == 200 and b"\r\nServer: satchel\r\n" in head
        lines = access_lines(server, 1 + len(targets))
        assert secret not in server.log.read_text()
        requests = [m["request"] for m in lines[1:4]]
        assert requests[0] == f"GET /files/{file_id}/?token=[redacted] HTTP/1.1"
        assert "a=1&Delete_Token=[redacted]&b=2" in requests[1]
        assert all(m["referer"] == "http://site/?token=[redacted]" for m in lines[1:4])
    # aiohttp's own answer to a malformed request names no versions either
    with serving(photos, data_dir, tmp_path) as server:
        status, head, _ = await raw_get("127.0.0.1", int(server.url.rsplit(":", 1)[1]), "/ x y")
        assert status == 400 and b"Python" not in head and b"aiohttp" not in head
