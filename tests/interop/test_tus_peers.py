"""Real tus clients against a real server process: tuspy and tus-js-client, each cut
off midway and resumed from the server's offset; and the upload lock across processes."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import (
    IN_CI,
    LiveServer,
    require_tool,
    serving,
    start_server,
    stop_server,
)

pytestmark = pytest.mark.interop

HERE = Path(__file__).parent
TUS = {"Tus-Resumable": "1.0.0"}
MiB = 1024 * 1024


@pytest.fixture
def slow_server(photos: Path, data_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    """Uploads at 2 MiB/s, so a 6 MiB upload can be caught in the middle."""
    with serving(photos, data_dir, tmp_path, "--upload-rate", "2M") as server:
        yield server


def head(url: str) -> dict[str, str]:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD", headers=TUS)) as resp:
        return dict(resp.headers)


def fetch(url: str) -> bytes:
    with urllib.request.urlopen(url) as resp:
        body: bytes = resp.read()
        return body


def stored_url(store: Path) -> str | None:
    """The upload URL tuspy keeps in its TinyDB file, once it is there."""
    try:
        rows = json.loads(store.read_text())["_default"].values()
    except (OSError, ValueError, KeyError):
        return None
    return next((row["url"] for row in rows), None)


def test_tuspy_killed_midway_resumes_from_the_servers_offset(
    slow_server: LiveServer, tmp_path: Path
) -> None:
    data = os.urandom(6 * MiB)
    source, store = tmp_path / "source.bin", tmp_path / "urls.json"
    source.write_bytes(data)
    command = [sys.executable, str(HERE / "tus_upload.py"), f"{slow_server.url}/tus/",
               str(source), str(store)]  # fmt: skip
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:  # kill -9 once the server has acknowledged a megabyte
        assert time.monotonic() < deadline, "the upload never got going"
        url = stored_url(store)
        if url and int(head(url)["Upload-Offset"]) >= MiB:
            break
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    time.sleep(0.3)
    offset = int(head(url)["Upload-Offset"])
    assert MiB <= offset < len(data)

    second = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip() == url  # the same upload, resumed
    finished = head(url)
    assert finished["Upload-Offset"] == str(len(data))
    assert hashlib.sha256(fetch(finished["Satchel-Download"])).digest() == (
        hashlib.sha256(data).digest()
    )


@pytest.fixture
def node() -> str:
    """Node, with tus-js-client installed next to the script that uses it."""
    path = require_tool("node")
    if not (HERE / "js" / "node_modules" / "tus-js-client").is_dir():
        message = "tus-js-client is not installed: npm ci --prefix tests/interop/js"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


def test_tus_js_client_cut_off_midway_resumes(
    slow_server: LiveServer, tmp_path: Path, node: str
) -> None:
    data = os.urandom(6 * MiB)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    result = subprocess.run(
        [node, str(HERE / "js" / "upload.mjs"), f"{slow_server.url}/tus/", str(source)],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert 0 < report["offsetAfterCut"] < len(data)
    assert fetch(report["download"]) == data


def test_tus_js_client_parallel_uploads_are_concatenated(
    slow_server: LiveServer, tmp_path: Path, node: str
) -> None:
    data = os.urandom(3 * MiB + 12345)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    result = subprocess.run(
        [node, str(HERE / "js" / "upload.mjs"), f"{slow_server.url}/tus/", str(source),
         "parallel"],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert fetch(json.loads(result.stdout)["download"]) == data


def test_the_upload_lock_holds_across_processes(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    """Two server processes on one data folder and database: while one writes an
    upload, the other answers 423, and the bytes never interleave."""
    a = start_server(photos, data_dir, tmp_path)
    b = start_server(photos, data_dir, tmp_path)
    try:
        creation = urllib.request.Request(
            f"{a.url}/tus/", method="POST", headers={**TUS, "Upload-Length": "100"}
        )
        with urllib.request.urlopen(creation) as created:
            path = "/tus/" + created.headers["Location"].rsplit("/", 1)[1]
        port_a = int(a.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port_a)) as held:
            held.sendall(
                f"PATCH {path} HTTP/1.1\r\nHost: a\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
                "Content-Length: 100\r\n\r\n".encode()
                + b"a" * 40
            )
            time.sleep(0.5)  # process A now holds the upload
            request = urllib.request.Request(
                f"{b.url}{path}", method="PATCH", data=b"b" * 100,
                headers={**TUS, "Content-Type": "application/offset+octet-stream",
                         "Upload-Offset": "0"},
            )  # fmt: skip
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(request)
            assert refused.value.code == 423
            refused.value.close()
            held.sendall(b"a" * 60)
            assert held.recv(100).startswith(b"HTTP/1.1 204")
        done = head(f"{b.url}{path}")
        assert fetch(done["Satchel-Download"]) == b"a" * 100
    finally:
        stop_server(a)
        stop_server(b)


def test_acknowledged_offsets_survive_kill_9_of_the_server(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    """Two chunks acknowledged, the server killed during the third: after a restart the
    offset is the acknowledged one, and the upload finishes with the right bytes."""
    data = os.urandom(6 * MiB)
    chunk = 2 * MiB
    server = start_server(photos, data_dir, tmp_path, None, "--upload-rate", "4M")
    try:
        creation = urllib.request.Request(
            f"{server.url}/tus/", method="POST", headers={**TUS, "Upload-Length": str(len(data))}
        )
        with urllib.request.urlopen(creation) as created:
            path = "/tus/" + created.headers["Location"].rsplit("/", 1)[1]

        def send(base: str, offset: int, body: bytes) -> int:
            request = urllib.request.Request(
                f"{base}{path}", method="PATCH", data=body,
                headers={**TUS, "Content-Type": "application/offset+octet-stream",
                         "Upload-Offset": str(offset)},
            )  # fmt: skip
            with urllib.request.urlopen(request) as resp:
                return int(resp.headers["Upload-Offset"])

        assert send(server.url, 0, data[:chunk]) == chunk
        assert send(server.url, chunk, data[chunk : 2 * chunk]) == 2 * chunk
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as third:
            third.sendall(
                f"PATCH {path} HTTP/1.1\r\nHost: a\r\nTus-Resumable: 1.0.0\r\n"
                "Content-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: {2 * chunk}\r\nContent-Length: {chunk}\r\n\r\n".encode()
                + data[2 * chunk : 2 * chunk + MiB]
            )
            time.sleep(0.5)
            server.process.send_signal(signal.SIGKILL)
            server.process.wait()
    finally:
        stop_server(server)
    again = start_server(photos, data_dir, tmp_path)
    try:
        assert head(f"{again.url}{path}")["Upload-Offset"] == str(2 * chunk)
        assert send(again.url, 2 * chunk, data[2 * chunk :]) == len(data)
        assert fetch(head(f"{again.url}{path}")["Satchel-Download"]) == data
    finally:
        stop_server(again)
