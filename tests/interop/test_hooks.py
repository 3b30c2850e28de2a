"""Webhooks end to end: a real receiving server checks each event's signature with the
Standard Webhooks reference library; a receiver that is down, while Satchel is
restarted too, still gets every event once it is back."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook

from tests.conftest import LiveServer, free_port, start_server, stop_server
from tests.helpers import call

pytestmark = pytest.mark.interop

SECRET = "whsec_" + base64.b64encode(b"satchel-hooks-test-secret").decode()
TUS = {"Tus-Resumable": "1.0.0"}


class Receiver:
    """An endpoint on ``port`` that keeps every event whose signature verifies."""

    def __init__(self, port: int) -> None:
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    event = Webhook(SECRET).verify(body, dict(self.headers))
                except Exception:
                    receiver.refused += 1
                    self.send_response(400)
                else:
                    receiver.events.append(event)
                    receiver.ids.append(self.headers["webhook-id"])
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def of(self, event_type: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["type"] == event_type]

    def wait_for(self, count: int, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while len(self.events) < count:
            assert time.monotonic() < deadline, self.events
            time.sleep(0.05)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook_port() -> int:
    return free_port()


@pytest.fixture
def receiver(hook_port: int) -> Iterator[Receiver]:
    endpoint = Receiver(hook_port)
    yield endpoint
    endpoint.close()


def satchel(photos: Path, data: Path, tmp_path: Path, hook_port: int) -> LiveServer:
    return start_server(
        photos, data, tmp_path, None,
        "--hook-url", f"http://127.0.0.1:{hook_port}/hooks", "--hook-secret", SECRET,
        "--hook-retry-seconds", "0.2",
    )  # fmt: skip


def upload(server: LiveServer, data: bytes, name: str) -> dict[str, Any]:
    status, _, body = call("POST", f"{server.url}/files/?name={name}", data)
    assert status == 201, body
    answer: dict[str, Any] = json.loads(body)
    return answer


def test_events_are_signed_and_say_what_happened(
    photos: Path, data_dir: Path, tmp_path: Path, hook_port: int, receiver: Receiver
) -> None:
    server = satchel(photos, data_dir, tmp_path, hook_port)
    try:
        stored = upload(server, b"x" * 1234, "report.pdf")
        note = {**TUS, "Upload-Length": "10", "Upload-Metadata": "filename bm90ZS50eHQ="}
        created = call("POST", f"{server.url}/tus/", None, note)
        assert created[0] == 201
        assert call("DELETE", stored["links"]["delete"])[0] == 204
        receiver.wait_for(3)
    finally:
        stop_server(server)
    assert receiver.refused == 0 and len(set(receiver.ids)) == len(receiver.ids)
    [file] = receiver.of("file.stored")
    assert file["id"] == stored["id"] and file["name"] == "report.pdf" and file["size"] == 1234
    assert file["sha256"] == stored["sha256"]
    [started] = receiver.of("upload.started")
    assert started["name"] == "note.txt" and started["length"] == 10
    assert receiver.of("file.deleted") == [{"id": stored["id"]}]


def test_a_receiver_down_for_a_while_gets_every_event_afterwards(
    photos: Path, data_dir: Path, tmp_path: Path, hook_port: int
) -> None:
    server = satchel(photos, data_dir, tmp_path, hook_port)  # nothing listens there yet
    try:
        ids = {upload(server, bytes([n]) * 100, f"{n}.bin")["id"] for n in range(3)}
        time.sleep(1.5)  # several tries fail meanwhile
    finally:
        stop_server(server)  # the events wait in the database, not in this process
    assert "failed" in server.log.read_text()
    endpoint = Receiver(hook_port)
    try:
        server = satchel(photos, data_dir, tmp_path, hook_port)
        try:
            endpoint.wait_for(3)
        finally:
            stop_server(server)
        assert {data["id"] for data in endpoint.of("file.stored")} == ids
        assert endpoint.refused == 0
    finally:
        endpoint.close()
