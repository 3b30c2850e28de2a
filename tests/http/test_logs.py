"""Structured logs of a real server: JSON lines, the request id on every line of a
request and in its answer, and a --log-file that logrotate can move (SIGHUP)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from satchel.logs import REQUEST_ID, JsonLines, TextLines, utc_stamp
from tests.conftest import READY, LiveServer, serving


def _request(
    server: LiveServer, path: str, data: bytes | None = None, headers: dict[str, str] | None = None
) -> Any:
    request = urllib.request.Request(server.url + path, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()
        return answer


def _lines(log: Path, count: int, *, where: str = "") -> list[str]:
    """The log's lines, once ``count`` of them hold ``where`` (or time is up)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [ln for ln in log.read_text().splitlines() if READY["User-Agent"] not in ln]
        if sum(where in ln for ln in lines) >= count or time.monotonic() > deadline:
            return lines


def test_json_lines_carry_the_request_id_the_answer_names(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    with serving(photos, data_dir, tmp_path, "--log-format", "json") as server:
        stored = _request(server, "/files/", b"hello", {"Content-Type": "text/plain"})
        request_id = stored.headers["X-Request-Id"]
        lines = _lines(server.log, 1, where='"satchel.access"')
    banner = ("======== Running on", "(Press CTRL+C")  # printed by aiohttp, not logged
    records = [json.loads(ln) for ln in lines if not ln.startswith(banner)]
    ours = [r for r in records if r.get("request_id") == request_id]
    assert {r["logger"] for r in ours} == {"satchel.files", "satchel.access"}
    [access] = [r for r in ours if r["logger"] == "satchel.access"]
    assert access["method"] == "POST" and access["path"] == "/files/" and access["status"] == 201
    assert access["client"] == "127.0.0.1" and access["bytes"] > 0 and access["duration"] > 0
    assert access["time"].endswith("Z") and access["level"] == "INFO"
    assert access["message"] == "POST /files/ 201"


def test_a_request_id_is_taken_only_from_a_trusted_proxy(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    with serving(photos, data_dir, tmp_path) as plain:
        given = _request(plain, "/healthz", headers={"X-Request-Id": "from-the-client"})
        assert given.headers["X-Request-Id"] != "from-the-client"
    with serving(photos, data_dir, tmp_path, "--trusted-proxy", "127.0.0.1") as proxied:
        given = _request(proxied, "/healthz", headers={"X-Request-Id": "edge-42"})
        assert given.headers["X-Request-Id"] == "edge-42"
        unsafe = _request(proxied, "/healthz", headers={"X-Request-Id": "two words"})
        assert unsafe.headers["X-Request-Id"] != "two words"
        lines = _lines(proxied.log, 1, where="[edge-42]")
    assert any("GET /healthz HTTP/1.1" in ln and ln.endswith("[edge-42]") for ln in lines)


def test_errors_and_downloads_name_their_request_id(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    with serving(photos, data_dir, tmp_path) as server:
        stored = json.loads(urllib.request.urlopen(
            urllib.request.Request(server.url + "/files/", data=b"x" * 100), timeout=10
        ).read())  # fmt: skip
        download = _request(server, f"/files/{stored['id']}/")
        assert download.headers["X-Request-Id"]
        try:
            _request(server, "/check/nothing")
        except urllib.error.HTTPError as exc:
            assert exc.code == 404 and exc.headers["X-Request-Id"]
            exc.close()


def test_the_log_file_is_reopened_on_sighup(photos: Path, data_dir: Path, tmp_path: Path) -> None:
    """As logrotate does it: move the file, send SIGHUP, find the new lines in a new
    file at the old path; with two workers, both write there."""
    log = tmp_path / "satchel.log"
    with serving(photos, data_dir, tmp_path, "--log-file", str(log), "--workers", "2") as server:
        _request(server, "/healthz?before")
        assert "/healthz?before" in "".join(_lines(log, 1, where="/healthz?before"))
        _lines(log, 2, where="SIGTERM drains")  # both workers' loops took the signals
        log.rename(tmp_path / "satchel.log.1")
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while not log.exists() or log.read_text().count("Reopened the log file") < 3:
            assert time.monotonic() < deadline, "the parent and both workers reopen it"
            time.sleep(0.05)
        for n in range(20):  # new connections: both workers answer some
            _request(server, f"/healthz?after={n}")
        lines = _lines(log, 20, where="/healthz?after")
    assert sum("/healthz?after" in ln for ln in lines) == 20
    rotated = (tmp_path / "satchel.log.1").read_text()
    assert "/healthz?before" in rotated and "/healthz?after" not in rotated
    assert "satchel.access" not in server.log.read_text()  # standard error went to the file


def test_json_lines_hold_tracebacks_and_text_lines_the_request_id() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("satchel", logging.ERROR, __file__, 1, "failed %s", ("x",),
                                   sys.exc_info())  # fmt: skip
    token = REQUEST_ID.set("abc-1")
    try:
        line = json.loads(JsonLines().format(record))
        text = TextLines().format(record)
    finally:
        REQUEST_ID.reset(token)
    assert line["message"] == "failed x" and line["request_id"] == "abc-1"
    assert "ValueError: boom" in line["exception"]
    assert text.splitlines()[0].endswith("ERROR satchel: failed x [abc-1]")
    assert text.endswith("ValueError: boom")
    assert utc_stamp(0.5) == "1970-01-01T00:00:00.500Z"


def test_a_sighup_without_a_log_file_stops_nothing(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    """As `systemctl kill -s HUP` sends it: to the parent and to every worker."""
    with serving(photos, data_dir, tmp_path, "--workers", "2") as server:
        _lines(server.log, 2, where="SIGTERM drains")  # both workers' loops took the signals
        children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children")
        workers = [int(pid) for pid in children.read_text().split()]
        for pid in (server.process.pid, *workers):
            os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        assert all(Path(f"/proc/{pid}").exists() for pid in workers)
        for _ in range(10):
            assert _request(server, "/healthz").status == 200
