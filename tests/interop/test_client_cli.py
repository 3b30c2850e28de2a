"""`satchel upload | download | check | delete | archive` against a running server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.conftest import LiveServer, free_port
from tests.helpers import make_folder


def satchel(server: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "satchel", *args, "--server", server],
        capture_output=True, text=True, cwd=cwd, timeout=60,
    )  # fmt: skip


def test_upload_download_check_delete(live_server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "отчёт 2026.pdf"
    source.write_bytes(os.urandom(3_000_000))
    up = satchel(
        live_server.url, "upload", str(source), "--max-downloads", "5", "--json", cwd=tmp_path
    )
    assert up.returncode == 0, up.stderr
    stored = json.loads(up.stdout)
    assert stored["name"] == "отчёт 2026.pdf" and stored["downloads_left"] == 5

    out = tmp_path / "copy.pdf"
    down = satchel(
        live_server.url, "download", stored["id"], "-o", str(out), "--json", cwd=tmp_path
    )
    assert down.returncode == 0, down.stderr
    assert json.loads(down.stdout)["verified"] is True
    assert out.read_bytes() == source.read_bytes()

    named = satchel(live_server.url, "download", stored["links"]["download"], cwd=tmp_path)
    assert named.returncode == 0 and (tmp_path / "отчёт 2026.pdf").exists()

    check = satchel(live_server.url, "check", stored["id"], "--json", cwd=tmp_path)
    assert check.returncode == 0 and json.loads(check.stdout)["downloads_left"] == 3

    wrong = satchel(live_server.url, "delete", stored["id"], "--token", "nope", cwd=tmp_path)
    assert wrong.returncode == 1 and "403" in wrong.stderr
    gone = satchel(
        live_server.url, "delete", stored["id"], "--token", stored["delete_token"], cwd=tmp_path
    )
    assert gone.returncode == 0
    after = satchel(live_server.url, "check", stored["id"], cwd=tmp_path)
    assert after.returncode == 1 and "404" in after.stderr


def test_download_resumes_a_partial_file_and_catches_corruption(
    live_server: LiveServer, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(4_000_000))
    stored = json.loads(
        satchel(live_server.url, "upload", str(source), "--json", cwd=tmp_path).stdout
    )
    partial = tmp_path / "partial.bin"
    partial.write_bytes(source.read_bytes()[:1_500_000])
    resumed = satchel(live_server.url, "download", stored["id"], "-o", str(partial), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert partial.read_bytes() == source.read_bytes()
    corrupt = tmp_path / "corrupt.bin"
    corrupt.write_bytes(b"\0" * 1_500_000)  # a prefix that is not the file's
    bad = satchel(live_server.url, "download", stored["id"], "-o", str(corrupt), cwd=tmp_path)
    assert bad.returncode == 3 and "Repr-Digest" in bad.stderr


def test_archive_resumes_and_checks_crcs(
    live_server: LiveServer, photos: Path, tmp_path: Path
) -> None:
    files = {f"{i}.jpg": os.urandom(700_000) for i in range(5)}
    make_folder(photos, "album", files)
    whole = tmp_path / "whole.zip"
    assert (
        satchel(live_server.url, "archive", "album", "-o", str(whole), cwd=tmp_path).returncode == 0
    )
    partial = tmp_path / "album.zip"
    partial.write_bytes(whole.read_bytes()[:1_000_000])
    resumed = satchel(live_server.url, "archive", "album", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert partial.read_bytes() == whole.read_bytes()
    with zipfile.ZipFile(partial) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == files


def test_unreachable_server_is_exit_4(tmp_path: Path) -> None:
    result = satchel(f"http://127.0.0.1:{free_port()}", "check", "x" * 22, cwd=tmp_path)
    assert result.returncode == 4 and "network" in result.stderr


def test_curl_upload_file_idiom(live_server: LiveServer, tmp_path: Path) -> None:
    source = tmp_path / "photo 1.jpg"
    source.write_bytes(os.urandom(200_000))
    out = subprocess.run(
        ["curl", "-sSf", "-T", str(source), f"{live_server.url}/files/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    stored = json.loads(out)
    assert stored["name"] == "photo 1.jpg" and stored["size"] == 200_000
