"""SIGTERM drains: transfers in progress finish (or, past --drain-timeout, are cut and
a tus PATCH keeps its bytes), new connections are refused, the process exits 0."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import LiveServer, start_server

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


def _connection(server: LiveServer) -> http.client.HTTPConnection:
    parts = urlsplit(server.url)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)


def _store(server: LiveServer, data: bytes) -> str:
    conn = _connection(server)
    conn.request("POST", "/files/", body=data)
    resp = conn.getresponse()
    assert resp.status == 201
    file_id: str = json.loads(resp.read())["id"]
    conn.close()
    return file_id


class Download(threading.Thread):
    """A download read to its end (or until the server cuts it) in a thread."""

    def __init__(self, server: LiveServer, path: str) -> None:
        super().__init__(daemon=True)
        self.conn = _connection(server)
        self.path = path
        self.body = b""
        self.started = threading.Event()

    def run(self) -> None:
        self.conn.request("GET", self.path)
        resp = self.conn.getresponse()
        chunks = [resp.read(1)]
        self.started.set()
        try:
            while chunk := resp.read(64 * 1024):
                chunks.append(chunk)
        except (http.client.IncompleteRead, ConnectionError) as exc:
            chunks.append(getattr(exc, "partial", b""))
        finally:
            self.conn.close()
        self.body = b"".join(chunks)


def _refused(server: LiveServer) -> bool:
    parts = urlsplit(server.url)
    try:
        socket.create_connection((parts.hostname, parts.port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def _exit_code(server: LiveServer, within: float) -> int:
    try:
        return server.process.wait(within)
    except subprocess.TimeoutExpired:
        server.process.kill()
        pytest.fail(f"still running {within} s after SIGTERM: {server.log.read_text()}")


def test_a_download_in_progress_finishes_and_new_connections_are_refused(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    server = start_server(photos, data_dir, tmp_path)
    data = os.urandom(2 * MiB)
    file_id = _store(server, data)
    download = Download(server, f"/files/{file_id}/?kbps=1024")  # about 2 s
    download.start()
    assert download.started.wait(10)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert _refused(server)
    download.join(20)
    assert hashlib.sha256(download.body).digest() == hashlib.sha256(data).digest()
    assert _exit_code(server, 20) == 0
    log = server.log.read_text()
    assert "SIGTERM: stopping" in log and "1 transfers in progress" in log
    assert "Drained: every transfer finished" in log and log.rstrip().endswith("Stopped")


def test_past_the_drain_timeout_transfers_are_cut(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    server = start_server(photos, data_dir, tmp_path, None, "--drain-timeout", "1")
    file_id = _store(server, os.urandom(MiB))
    download = Download(server, f"/files/{file_id}/?kbps=64")  # about 16 s
    download.start()
    assert download.started.wait(10)
    began = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert _exit_code(server, 15) == 0
    assert time.monotonic() - began < 8
    download.join(10)
    assert 0 < len(download.body) < MiB
    assert "Drain timeout: cutting 1 transfers" in server.log.read_text()


def test_a_tus_patch_cut_by_the_drain_keeps_every_byte_it_received(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    """The client sends half its chunk and stalls; the drain cuts it after 1 s; a new
    instance on the same data resumes from where the bytes stopped."""
    data = os.urandom(4 * MiB)
    server = start_server(photos, data_dir, tmp_path, None, "--drain-timeout", "1")
    conn = _connection(server)
    conn.request("POST", "/tus/", headers={**TUS, "Upload-Length": str(len(data))})
    created = conn.getresponse()
    created.read()
    conn.close()
    path = "/tus/" + created.headers["Location"].rsplit("/", 1)[1]
    parts = urlsplit(server.url)
    patch = socket.create_connection((parts.hostname, parts.port))
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    patch.sendall(head.encode() + data[: 2 * MiB])
    time.sleep(0.5)  # the server has read them
    server.process.send_signal(signal.SIGTERM)
    assert _exit_code(server, 15) == 0
    patch.close()
    assert "Drain timeout: cutting 1 transfers" in server.log.read_text()

    again = start_server(photos, data_dir, tmp_path)
    try:
        conn = _connection(again)
        conn.request("HEAD", path, headers=TUS)
        state = conn.getresponse()
        state.read()
        assert state.status == 200 and state.headers["Upload-Offset"] == str(2 * MiB)
        conn.request(
            "PATCH",
            path,
            body=data[2 * MiB :],
            headers={
                **TUS,
                "Upload-Offset": str(2 * MiB),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        finished = conn.getresponse()
        finished.read()
        assert finished.status == 204
        conn.request("GET", f"/files/{finished.headers['Satchel-File-Id']}/")
        got = conn.getresponse()
        assert got.status == 200 and got.read() == data
        conn.close()
    finally:
        again.process.terminate()
        again.process.wait(20)


def test_every_worker_drains(photos: Path, data_dir: Path, tmp_path: Path) -> None:
    server = start_server(photos, data_dir, tmp_path, None, "--workers", "2")
    deadline = time.monotonic() + 20
    while server.log.read_text().count("SIGTERM drains") < 2:  # before: SIGTERM ends it
        assert time.monotonic() < deadline, server.log.read_text()
        time.sleep(0.05)
    data = os.urandom(MiB)
    file_id = _store(server, data)
    downloads = [Download(server, f"/files/{file_id}/?kbps=512") for _ in range(4)]  # 2 s
    for d in downloads:
        d.start()
    for d in downloads:
        assert d.started.wait(10)
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert _refused(server)
    for d in downloads:
        d.join(20)
        assert d.body == data
    assert _exit_code(server, 20) == 0
    assert server.log.read_text().count("Drained: every transfer finished") == 2
