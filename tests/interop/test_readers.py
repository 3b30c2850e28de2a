"""Archives served by Satchel, opened by the unzippers people actually use."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import pytest

from tests.conftest import LiveServer, require_tool
from tests.helpers import NASTY_NAMES, make_folder, random_files, selection_url, share_url

pytestmark = pytest.mark.interop

FILES = random_files(NASTY_NAMES, seed=11, max_size=300_000)


def fetch(url: str, dest: Path) -> Path:
    with urllib.request.urlopen(url, timeout=120) as resp, dest.open("wb") as out:
        shutil.copyfileobj(resp, out, 1 << 20)
    return dest


class Served(NamedTuple):
    zip: Path
    files: dict[str, bytes]  # what it holds, by name
    kind: str


@pytest.fixture(params=["folder", "selection", "share"])
def served(
    live_server: LiveServer, photos: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Served:
    """The folder's archive; the same files as a selection (in another order); or as
    a share's "download all" (uploaded, so named by their last segment)."""
    make_folder(photos, "interop", FILES)
    url = f"{live_server.url}/archive/interop/"
    files = FILES
    if request.param == "selection":
        url = selection_url(live_server.url, [{"path": f"interop/{n}"} for n in reversed(FILES)])
    if request.param == "share":
        url, files = share_url(live_server.url, FILES)
    return Served(fetch(url, tmp_path / "interop.zip"), files, request.param)


def test_unzip_tests_every_entry(served: Served) -> None:
    unzip = require_tool("unzip")
    result = subprocess.run([unzip, "-t", str(served.zip)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No errors detected" in result.stdout


def test_7z_tests_every_entry(served: Served) -> None:
    seven = require_tool("7z")
    result = subprocess.run([seven, "t", str(served.zip)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Everything is Ok" in result.stdout
    assert f"Files: {len(served.files)}" in result.stdout


def test_bsdtar_extracts_identical_files(served: Served, tmp_path: Path) -> None:
    bsdtar = require_tool("bsdtar")
    out = tmp_path / "bsdtar-out"
    out.mkdir()
    subprocess.run([bsdtar, "-xf", str(served.zip), "-C", str(out)], check=True)
    for name, data in served.files.items():
        assert (out / name).read_bytes() == data, name
    mtime = int((out / "1.jpg").stat().st_mtime)
    # a folder's member keeps its file's time; a stored file, when it was stored
    source = served.zip.parent / "photos" / "interop" / "1.jpg"
    expected = time.time() if served.kind == "share" else os.stat(source).st_mtime
    assert abs(mtime - int(expected)) <= (60 if served.kind == "share" else 1)


def test_unzip_extracts_utf8_names(served: Served, tmp_path: Path) -> None:
    unzip = require_tool("unzip")
    out = tmp_path / "unzip-out"
    subprocess.run([unzip, "-q", str(served.zip), "-d", str(out)], check=True)
    for name, data in served.files.items():
        assert (out / name).read_bytes() == data, name


def test_java_zipfile_and_zipinputstream_read_every_entry(served: Served, tmp_path: Path) -> None:
    javac, java = require_tool("javac"), require_tool("java")
    source = Path(__file__).parent / "java" / "ZipCheck.java"
    classes = tmp_path / "classes"
    subprocess.run([javac, "-d", str(classes), str(source)], check=True)
    result = subprocess.run(
        [java, "-cp", str(classes), "ZipCheck", str(served.zip)],
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
    )
    assert result.returncode == 0, result.stderr
    expected = {(n, len(d), zlib.crc32(d)) for n, d in served.files.items()}
    for mode in ("ZipFile", "ZipInputStream"):
        seen = {
            (name, int(size), int(crc))
            for line in result.stdout.splitlines()
            for m, name, size, crc in [line.split("\t")]
            if m == mode
        }
        assert seen == expected, mode


@pytest.mark.slow
def test_zip64_archive_over_4_gib_from_a_sparse_file(
    live_server: LiveServer, photos: Path, tmp_path: Path
) -> None:
    unzip, seven = require_tool("unzip"), require_tool("7z")
    folder = make_folder(photos, "huge", {"a-small.txt": b"small first"})
    with (folder / "b-sparse.bin").open("wb") as f:
        f.truncate(4 * 1024**3 + 12345)  # past the 32-bit limit, no disk used
    served = fetch(f"{live_server.url}/archive/huge/", tmp_path / "huge.zip")
    try:
        with zipfile.ZipFile(served) as zf:
            info = {i.filename: i for i in zf.infolist()}
            assert info["b-sparse.bin"].file_size == 4 * 1024**3 + 12345
            assert zf.infolist()[0].filename == "a-small.txt"  # no ZIP64 on the first entry
            assert zf.read("a-small.txt") == b"small first"
        for command in ([unzip, "-t", str(served)], [seven, "t", str(served)]):
            result = subprocess.run(command, capture_output=True, text=True)
            assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    finally:
        served.unlink()
