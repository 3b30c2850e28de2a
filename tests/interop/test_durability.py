"""kill -9 during concurrent uploads: what got a 201 survives intact, nothing partial shows."""

from __future__ import annotations

import hashlib
import http.client
import json
import random
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, start_server, stop_server

pytestmark = pytest.mark.slow


def slow_upload(port: int, data: bytes, results: list[tuple[str, str]]) -> None:
    """Stream ``data`` in small pieces with pauses; record (id, sha256) on a 201."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/files/")
        conn.putheader("Content-Length", str(len(data)))
        conn.endheaders()
        for at in range(0, len(data), 64 * 1024):
            conn.send(data[at : at + 64 * 1024])
            time.sleep(0.01)
        resp = conn.getresponse()
        if resp.status == 201:
            body = json.loads(resp.read())
            results.append((body["id"], body["sha256"]))
    except (OSError, http.client.HTTPException):
        return  # the server died under us: this upload has no 201
    finally:
        conn.close()


def fetch(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_uploads_survive_repeated_kill_9(photos: Path, data_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    rng = random.Random(99)
    acknowledged: list[tuple[str, str]] = []
    attempted: set[str] = set()
    for _ in range(6):
        server = start_server(photos, data_dir, tmp_path, port)
        threads = []
        for _ in range(8):
            data = rng.randbytes(rng.randint(50_000, 3_000_000))
            attempted.add(hashlib.sha256(data).hexdigest())
            thread = threading.Thread(target=slow_upload, args=(port, data, acknowledged))
            thread.start()
            threads.append(thread)
        time.sleep(rng.uniform(0.1, 0.5))
        server.process.kill()  # SIGKILL: no cleanup runs
        server.process.wait()
        for thread in threads:
            thread.join(15)
    assert acknowledged, "no upload finished before a kill; the test proved nothing"
    assert len(acknowledged) < len(attempted), "no upload was cut by a kill"

    server = start_server(photos, data_dir, tmp_path, port)
    try:
        rows = (
            sqlite3.connect(data_dir / "satchel.sqlite3")
            .execute("SELECT id, sha256, size FROM files")
            .fetchall()
        )
        visible = {row[0]: row for row in rows}
        # every acknowledged upload is there and intact
        for file_id, sha256 in acknowledged:
            assert file_id in visible
            status, body = fetch(port, f"/files/{file_id}/")
            assert status == 200 and hashlib.sha256(body).hexdigest() == sha256
        # nothing partial is visible: every record is a whole upload with its bytes present
        for file_id, sha256, size in rows:
            path = data_dir / "files" / file_id[:2] / file_id
            assert path.stat().st_size == size
            assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256
            assert sha256 in attempted
        # a file committed just before a kill but never recorded stays invisible
        stored = {p.name for p in (data_dir / "files").rglob("*") if p.is_file()}
        for orphan in stored - set(visible):
            assert fetch(port, f"/files/{orphan}/")[0] == 404
    finally:
        stop_server(server)
    print(f"{len(acknowledged)} acknowledged, {len(rows)} visible, {len(attempted)} attempted")
