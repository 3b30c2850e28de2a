"""Max-Downloads is exact: racing clients on two worker processes, SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import os
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.conftest import serving

SIZE = 8 * 1024 * 1024
RACERS = 20
pytestmark = pytest.mark.slow


def _get(url: str, path: str, headers: dict[str, str], read: int | None = None) -> tuple[int, int]:
    """(status, body bytes read); with ``read``, the client leaves after that many."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read(read) if read is not None else resp.read()
        return resp.status, len(body)
    finally:
        conn.close()


def _upload(url: str, data: bytes, max_downloads: int) -> str:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)
    conn.request("POST", "/files/", body=data, headers={"Max-Downloads": str(max_downloads)})
    resp = conn.getresponse()
    assert resp.status == 201
    file_id = resp.read().split(b'"id": "', 1)[1].split(b'"', 1)[0].decode()
    conn.close()
    return file_id


def _settled_get(url: str, path: str) -> tuple[int, int]:
    """A GET once the downloads before it have ended: a client has every byte a moment
    before the server records the download's end, and meanwhile the claim it held is
    still running (409)."""
    deadline = time.monotonic() + 10
    while (answer := _get(url, path, {}))[0] == 409 and time.monotonic() < deadline:
        time.sleep(0.05)
    return answer


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_racers_get_at_most_max_downloads_whole_bodies(
    photos: Path, data_dir: Path, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    db = ["--db", request.getfixturevalue("pg_url")] if database == "postgresql" else []
    with serving(photos, data_dir, tmp_path, "--workers", "2", *db) as server:
        file_id = _upload(server.url, os.urandom(SIZE), 3)
        path = f"/files/{file_id}/"
        # A download cut short gives its claim back, and its resumption counts once.
        assert _get(server.url, path, {}, read=1024)[0] == 200
        assert _get(server.url, path, {"Range": "bytes=0-1023"}) == (206, 1024)
        gate = threading.Barrier(RACERS)
        results: list[tuple[int, int]] = []

        def race() -> None:
            gate.wait()
            results.append(_get(server.url, path, {}))

        threads = [threading.Thread(target=race) for _ in range(RACERS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        whole = [r for r in results if r == (200, SIZE)]
        refused = [r for r in results if r[0] in (404, 409)]
        assert len(results) == RACERS and len(whole) + len(refused) == RACERS, results
        assert 1 <= len(whole) <= 3
        while len(whole) < 3:  # racers refused while others ran: the rest are still there
            status, size = _settled_get(server.url, path)
            assert (status, size) == (200, SIZE)
            whole.append((status, size))
        assert _settled_get(server.url, path)[0] == 404
