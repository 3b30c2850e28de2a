"""Interrupted archive downloads finished by real download tools are byte-identical."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import LiveServer, require_tool, start_server, stop_server
from tests.helpers import call, make_folder, selection_url

pytestmark = pytest.mark.interop


@pytest.fixture(params=["folder", "selection"])
def archive_url(live_server: LiveServer, photos: Path, request: pytest.FixtureRequest) -> str:
    """A folder's archive, or a selection of its files and a stored file."""
    # 60 MB: more than loopback socket buffers hold, so the server is still sending
    # when the client is cut (with less, the whole archive can sit in kernel buffers).
    files = {f"photo-{i:02}.jpg": os.urandom(1_500_000 + i) for i in range(40)}
    make_folder(photos, "resume", {**files, "фото/море.jpg": os.urandom(1000)})
    if request.param == "folder":
        return f"{live_server.url}/archive/resume/"
    status, _, answer = call(
        "POST", f"{live_server.url}/files/?name=video.bin", os.urandom(3_000_000)
    )
    assert status == 201, answer
    entries = [{"file": json.loads(answer)["id"], "name": "video/video.bin"}]
    entries += [{"path": f"resume/{name}"} for name in files]
    return selection_url(live_server.url, entries)


def full_download(curl: str, url: str, dest: Path) -> bytes:
    subprocess.run([curl, "-sSf", "-o", str(dest), url], check=True)
    return dest.read_bytes()


def test_curl_cut_midway_then_continued_is_identical(
    archive_url: str, tmp_path: Path, live_server: LiveServer
) -> None:
    curl = require_tool("curl")
    whole = full_download(curl, archive_url, tmp_path / "whole.zip")
    part = tmp_path / "part.zip"
    cut = subprocess.run(
        [curl, "-sS", "--limit-rate", "1M", "--max-time", "1.5", "-o", str(part), archive_url]
    )
    assert cut.returncode == 28  # timed out: the download really was cut
    assert 0 < part.stat().st_size < len(whole)
    subprocess.run([curl, "-sSf", "-C", "-", "-o", str(part), archive_url], check=True)
    assert part.read_bytes() == whole
    # The server notices the cut when its next write fails; give its log a moment.
    deadline = time.monotonic() + 10
    label = "resume" if archive_url.endswith("/resume/") else archive_url.split("/archive/")[1][:-1]
    while f"Download was interrupted: archive {label}" not in live_server.log.read_text():
        assert time.monotonic() < deadline, live_server.log.read_text()
        time.sleep(0.05)


def test_aria2c_four_connections_is_identical(archive_url: str, tmp_path: Path) -> None:
    curl, aria2c = require_tool("curl"), require_tool("aria2c")
    whole = full_download(curl, archive_url, tmp_path / "whole.zip")
    subprocess.run(
        [aria2c, "-q", "-x4", "-s4", "-k1M", "--file-allocation=none", "--allow-overwrite=true",
         "-d", str(tmp_path), "-o", "aria.zip", archive_url],
        check=True,
    )  # fmt: skip
    assert (tmp_path / "aria.zip").read_bytes() == whole


def test_uvloop_and_asyncio_serve_the_same_bytes(
    photos: Path, data_dir: Path, tmp_path: Path
) -> None:
    curl = require_tool("curl")
    make_folder(photos, "uv", {f"{i}.jpg": os.urandom(2_000_000) for i in range(3)})
    reference = start_server(photos, data_dir, tmp_path, None, "--event-loop", "asyncio")
    try:
        whole = full_download(curl, f"{reference.url}/archive/uv/", tmp_path / "a.zip")
    finally:
        stop_server(reference)
    uv = start_server(photos, data_dir, tmp_path, None, "--event-loop", "uvloop")
    try:
        assert full_download(curl, f"{uv.url}/archive/uv/", tmp_path / "b.zip") == whole
        part = subprocess.run(
            [curl, "-sSf", "-r", "1000-2999999", f"{uv.url}/archive/uv/"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        assert part == whole[1000:3000000]
        assert "loop uvloop" in uv.log.read_text()
        assert "loop asyncio" in reference.log.read_text()
    finally:
        stop_server(uv)
