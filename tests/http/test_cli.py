"""`satchel` as a process: start-up checks, workers, logs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port
from tests.helpers import make_folder


def satchel(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "satchel", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def test_missing_photos_folder_exits_2_before_binding(tmp_path: Path) -> None:
    port = free_port()
    result = satchel("serve", "--port", str(port), "--photos", "nope", cwd=tmp_path)
    assert result.returncode == 2
    assert "--photos: 'nope' does not exist" in result.stderr
    assert result.stderr.count("\n") == 1  # one clear line, no traceback


def test_bad_value_exits_2(tmp_path: Path) -> None:
    result = satchel("serve", "--delay", "-3", cwd=tmp_path)
    assert result.returncode == 2
    assert "delay" in result.stderr


def test_setting_errors_name_the_flag_or_the_variable(tmp_path: Path) -> None:
    result = satchel("serve", "--download-rate", "5x", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("satchel: --download-rate: ")
    (tmp_path / ".env").write_text("SATCHEL_UPLOAD_RATE=abc\n")
    result = satchel("serve", cwd=tmp_path)
    assert result.returncode == 2
    assert "SATCHEL_UPLOAD_RATE (in ./.env; the flag --upload-rate)" in result.stderr
    assert "_rate:" not in result.stderr


def test_a_port_in_use_is_one_line_and_exit_2_before_the_database(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for workers in ("1", "2"):
            result = satchel("serve", "--port", str(port), "--workers", workers, cwd=tmp_path)
            assert result.returncode == 2, result.stderr
            assert result.stderr.count("\n") == 1 and f"--port {port}" in result.stderr
    assert not (tmp_path / "data" / "satchel.sqlite3").exists()  # never opened


def test_demo_folder_is_created_only_when_empty(tmp_path: Path) -> None:
    assert satchel("admin", "demo", "--dir", "photos", cwd=tmp_path).returncode == 0
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["7kna", "rur2"]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep").mkdir()
    assert satchel("admin", "demo", "--photos", "mine", cwd=tmp_path).returncode == 0
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep"]


def _wait_for(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
    raise AssertionError(f"no answer from {url}: {log.read_text()}")


def test_workers_share_the_port_and_logs_show_chunks(tmp_path: Path) -> None:
    make_folder(tmp_path / "photos", "w", {"a.jpg": b"a" * 1000, "b.jpg": b"b" * 2000})
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "satchel", "serve", "--port", str(port), "--workers", "2",
             "--logs", "1"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/archive/w/"
        _wait_for(url, process, log)
        for _ in range(10):
            assert len(urllib.request.urlopen(url, timeout=5).read()) > 3000
        workers = children(process.pid)
        assert len(workers) >= 2  # two serving children (plus spawn's resource tracker)
    finally:
        process.terminate()
        process.wait(20)
    assert_gone(workers)
    text = log.read_text()
    assert "Sending archive w chunk" in text
    assert '"GET /archive/w/ HTTP/1.1" 200' in text


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; PID 1 may simply not reap it here


def assert_gone(pids: list[int], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids):
        assert time.monotonic() < deadline, f"workers still running: {pids}"
        time.sleep(0.1)


def test_workers_exit_when_the_parent_is_killed(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "satchel", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait_for(f"http://127.0.0.1:{port}/healthz", process, tmp_path / "none.log")
        workers = children(process.pid)
        assert len(workers) >= 2
    finally:
        process.kill()  # SIGKILL: the parent cannot clean up; the kernel tells the workers
        process.wait()
    assert_gone(workers)


def test_ids_and_tokens_beginning_with_a_dash_are_values_not_options() -> None:
    """1 id (and 1 token) in 64 begins with "-"; the client commands must still take it."""
    from satchel.cli.main import _dashes_kept, _parser

    dashed = "-FqQwWRGzngQ6aJB_Jb0mw"
    args = _parser().parse_args(_dashes_kept(["download", dashed, "-o", "x", "--json"]))
    assert (args.target, args.output, args.json) == (dashed, Path("x"), True)
    args = _parser().parse_args(_dashes_kept(["delete", dashed, "--token", dashed]))
    assert (args.id, args.delete_token) == (dashed, dashed)
    args = _parser().parse_args(_dashes_kept(["check", "--json", "--", dashed]))
    assert args.id == dashed
    args = _parser().parse_args(_dashes_kept(["upload", "--token", "-secret", "a.jpg", "b.jpg"]))
    assert (args.files, args.token) == ([Path("a.jpg"), Path("b.jpg")], "-secret")
    args = _parser().parse_args(_dashes_kept(["archive", "abc", "-o", "-abc.zip"]))
    assert (args.hash, args.output) == ("abc", Path("-abc.zip"))
