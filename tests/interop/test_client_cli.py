"""`satchel upload | download | check | delete | archive` against a running server."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from tests.conftest import LiveServer, free_port
from tests.helpers import make_folder


def satchel(server: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The client as a user runs it, its journal of unfinished uploads under ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", "satchel", *args, "--server", server],
        capture_output=True, text=True, cwd=cwd, timeout=60,
        env={**os.environ, "XDG_CACHE_HOME": str(cwd / "cache")},
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


def test_download_never_touches_a_file_it_did_not_begin(
    live_server: LiveServer, tmp_path: Path
) -> None:
    source, stored = uploaded(live_server, tmp_path, os.urandom(4_000_000))
    mine = tmp_path / "mine.bin"
    mine.write_bytes(source.read_bytes()[:1_500_000])  # looks like a prefix; is not ours
    kept = satchel(live_server.url, "download", stored["id"], "-o", str(mine), cwd=tmp_path)
    assert kept.returncode == 5 and "exists" in kept.stderr and "--force" in kept.stderr
    assert mine.read_bytes() == source.read_bytes()[:1_500_000]
    (tmp_path / "other.bin.part").write_bytes(b"\0" * 1000)
    other = satchel(live_server.url, "download", stored["id"], "-o", "other.bin", cwd=tmp_path)
    assert other.returncode == 5 and "did not begin" in other.stderr
    forced = satchel(
        live_server.url, "download", stored["id"], "-o", str(mine), "--force", cwd=tmp_path
    )
    assert forced.returncode == 0, forced.stderr
    assert mine.read_bytes() == source.read_bytes()
    assert not (tmp_path / "mine.bin.part").exists()


def test_a_rerun_resumes_its_own_part_and_catches_corruption(
    live_server: LiveServer, tmp_path: Path
) -> None:
    source, stored = uploaded(live_server, tmp_path, os.urandom(3_000_000))
    part = tmp_path / "copy.bin.part"
    with Proxy(live_server.url, at=1_500_000, cuts=1, down=True) as proxy:
        args = ("download", stored["id"], "-o", "copy.bin", "--chunk-size", "65536")
        cut = satchel(proxy.url, *args, "--retries", "0", cwd=tmp_path)
        assert cut.returncode == 4 and "network" in cut.stderr
        assert not (tmp_path / "copy.bin").exists() and 0 < part.stat().st_size < 3_000_000
        resumed = satchel(proxy.url, *args, cwd=tmp_path)
        asked = proxy.asked.decode("latin-1")
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes() and not part.exists()
    assert re.search(r"Range: bytes=[1-9]\d*-", asked, re.IGNORECASE), asked
    # Its own .part, spoiled meanwhile: the digest check fails, and no copy is left.
    (tmp_path / "copy.bin").unlink()
    with Proxy(live_server.url, at=1_500_000, cuts=1, down=True) as proxy:
        assert satchel(proxy.url, *args, "--retries", "0", cwd=tmp_path).returncode == 4
        with part.open("r+b") as f:
            f.write(b"\xff" * 1000)
        bad = satchel(proxy.url, *args, cwd=tmp_path)
    assert bad.returncode == 3 and "Repr-Digest" in bad.stderr
    assert not (tmp_path / "copy.bin").exists() and not part.exists()


def test_archive_resumes_and_checks_crcs(
    live_server: LiveServer, photos: Path, tmp_path: Path
) -> None:
    files = {f"{i}.jpg": os.urandom(700_000) for i in range(5)}
    make_folder(photos, "album", files)
    whole = tmp_path / "whole.zip"
    assert (
        satchel(live_server.url, "archive", "album", "-o", str(whole), cwd=tmp_path).returncode == 0
    )
    with Proxy(live_server.url, at=1_000_000, cuts=1, down=True) as proxy:
        cut = satchel(proxy.url, "archive", "album", "--retries", "0", cwd=tmp_path)
        assert cut.returncode == 4
        resumed = satchel(proxy.url, "archive", "album", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "album.zip").read_bytes() == whole.read_bytes()
    with zipfile.ZipFile(tmp_path / "album.zip") as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == files


def test_errors_name_the_cause(live_server: LiveServer, tmp_path: Path) -> None:
    """The server's own words, for a HEAD too; a local failure is not 'network'."""
    missing = satchel(live_server.url, "download", "A" * 22, cwd=tmp_path)
    assert missing.returncode == 1 and "No such file" in missing.stderr
    source, stored = uploaded(live_server, tmp_path, b"x" * 1000)
    nowhere = tmp_path / "no such folder" / "copy.bin"
    local = satchel(live_server.url, "download", stored["id"], "-o", str(nowhere), cwd=tmp_path)
    assert local.returncode == 5 and "local:" in local.stderr and "network" not in local.stderr


def test_ctrl_c_is_one_line_and_exit_130(live_server: LiveServer, tmp_path: Path) -> None:
    source, stored = uploaded(live_server, tmp_path, os.urandom(4_000_000))
    slowly = f"{stored['links']['download']}?kbps=200"  # 20 s: time to press Ctrl-C
    process = subprocess.Popen(
        [sys.executable, "-m", "satchel", "download", slowly, "-o", "copy.bin"],
        stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")},
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while not list(tmp_path.glob("*.part")) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert stderr.strip().count("\n") == 0 and "interrupted" in stderr


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


def uploaded(server: LiveServer, tmp_path: Path, data: bytes) -> tuple[Path, dict[str, Any]]:
    """``data`` as tmp_path/data.bin, uploaded by the client: the file and its answer."""
    source = tmp_path / "data.bin"
    source.write_bytes(data)
    answer = satchel(server.url, "upload", str(source), "--json", cwd=tmp_path)
    assert answer.returncode == 0, answer.stderr
    stored: dict[str, Any] = json.loads(answer.stdout)
    return source, stored


class Proxy:
    """A TCP proxy in front of the server that spoils a connection ``at`` bytes into what
    the client sends (or, ``down``, what it receives; only an upload or a download goes
    that far): ``flip`` one bit there, which the server cannot see, since it hashes what
    it receives; or ``cut`` the connection there, the first ``cuts`` times. ``sent``:
    the bytes it passed on in the spoiled direction; ``asked``: what clients sent, when
    that is not the spoiled direction."""

    def __init__(
        self, upstream: str, at: int, *, flip: bool = False, cuts: int = 0, down: bool = False
    ) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._target = urlparse(upstream)
        self._at, self._flip, self._cuts, self._down = at, flip, cuts, down
        self._sockets = [self.listener]
        self._clients: set[socket.socket] = set()
        self.sent = 0
        self.asked = bytearray()
        threading.Thread(target=self._accept, daemon=True).start()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *_: object) -> None:
        for sock in self._sockets:
            with contextlib.suppress(OSError):  # wakes a thread blocked on it
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):  # the listener is closed
            while True:
                client, _ = self.listener.accept()
                self._sockets.append(client)
                self._clients.add(client)
                server = socket.create_connection((self._target.hostname, self._target.port))
                self._sockets.append(server)
                for source, sink, spoil in ((client, server, not self._down),
                                            (server, client, self._down)):  # fmt: skip
                    args = (source, sink, spoil)
                    threading.Thread(target=self._relay, args=args, daemon=True).start()

    def _relay(self, source: socket.socket, sink: socket.socket, spoil: bool) -> None:
        seen = 0
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if spoil and seen <= self._at < seen + len(data):
                    if self._cuts:
                        self._cuts -= 1
                        sink.sendall(data[: self._at - seen])
                        self.sent += self._at - seen
                        for sock in (source, sink):  # the network drops: both ends see it
                            sock.shutdown(socket.SHUT_RDWR)
                        return
                    if self._flip:
                        spoiled = bytearray(data)
                        spoiled[self._at - seen] ^= 0x01
                        data = bytes(spoiled)
                seen += len(data)
                if spoil:
                    self.sent += len(data)
                elif source in self._clients:
                    self.asked += data
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)


def test_an_upload_the_server_did_not_get_intact_is_deleted_and_exit_3(
    live_server: LiveServer, data_dir: Path, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3_000_000))
    with Proxy(live_server.url, at=1_000_000, flip=True) as proxy:
        bad = satchel(proxy.url, "upload", str(source), cwd=tmp_path)
    assert bad.returncode == 3, bad.stderr
    said = " ".join(bad.stderr.split())  # as wrapped for the terminal
    assert "SHA-256" in said and "it was deleted" in said
    assert [p for p in (data_dir / "files").rglob("*") if p.is_file()] == []

    good = satchel(live_server.url, "upload", str(source), "--json", cwd=tmp_path)
    assert good.returncode == 0 and json.loads(good.stdout)["verified"] is True


def test_an_upload_cut_off_resumes_where_the_server_stands(
    live_server: LiveServer, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3_000_000))
    with Proxy(live_server.url, at=2_000_000, cuts=2) as proxy:
        up = satchel(proxy.url, "upload", str(source), "--json", cwd=tmp_path)
        sent = proxy.sent
    assert up.returncode == 0, up.stderr
    stored = json.loads(up.stdout)
    assert stored["verified"] is True and stored["size"] == 3_000_000
    # cut twice at 2 MB into a connection, resumed each time: 3 MB and some headers went
    # through, not the 7 MB that starting again would take
    assert 3_000_000 < sent < 3_100_000
    got = satchel(live_server.url, "download", stored["id"], "-o", "copy.bin", cwd=tmp_path)
    assert got.returncode == 0 and (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    assert json.loads((tmp_path / "cache" / "satchel" / "uploads.json").read_text()) == {}


def test_a_rerun_resumes_an_upload_the_network_gave_up_on(
    live_server: LiveServer, tmp_path: Path
) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(3_000_000))
    with Proxy(live_server.url, at=2_000_000, cuts=1) as proxy:
        first = satchel(proxy.url, "upload", str(source), "--retries", "0", cwd=tmp_path)
        assert first.returncode == 4, first.stderr  # a network failure, given up on
        journal = json.loads((tmp_path / "cache" / "satchel" / "uploads.json").read_text())
        [upload_url] = journal.values()
        head = urllib.request.Request(upload_url, method="HEAD", headers={"Tus-Resumable": "1.0.0"})
        kept = 0
        for _ in range(50):  # the server keeps what arrived once it sees the connection end
            with urllib.request.urlopen(head) as answer:
                kept = int(answer.headers["Upload-Offset"])
            if kept:
                break
            time.sleep(0.1)
        assert 1_000_000 < kept <= 2_000_000

        before = proxy.sent
        again = satchel(proxy.url, "upload", str(source), "--json", cwd=tmp_path)  # the same
        assert again.returncode == 0, again.stderr
        assert proxy.sent - before < 3_000_000 - kept + 10_000  # only the rest went
        stored = json.loads(again.stdout)
        assert stored["verified"] is True
        with urllib.request.urlopen(head) as answer:  # the upload resumed became the file
            assert answer.headers["Satchel-File-Id"] == stored["id"]


def test_a_download_cut_off_resumes_with_range(live_server: LiveServer, tmp_path: Path) -> None:
    source, stored = uploaded(live_server, tmp_path, os.urandom(3_000_000))
    with Proxy(live_server.url, at=1_500_000, cuts=2, down=True) as proxy:
        got = satchel(
            proxy.url, "download", stored["id"], "-o", "copy.bin", "--json",
            "--chunk-size", "65536", cwd=tmp_path,
        )  # fmt: skip
        asked = proxy.asked.decode("latin-1")
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout)["verified"] is True
    assert (tmp_path / "copy.bin").read_bytes() == source.read_bytes()
    # cut twice, resumed twice where the file had got to, each time only if unchanged
    starts = [int(n) for n in re.findall(r"Range: bytes=(\d+)-", asked, re.IGNORECASE)]
    assert len(starts) == 2 and 0 < starts[0] < starts[1] < 3_000_000, asked
    assert asked.lower().count("if-range: ") == 2


def test_retries_count_failures_in_a_row_without_progress(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A line that drops every 1.5 MB still gets a 10 MB file through with --retries 1,
    since every attempt gets further than the last."""
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(10_000_000))
    with Proxy(live_server.url, at=1_500_000, cuts=100) as proxy:
        up = satchel(proxy.url, "upload", str(source), "--retries", "1", "--json", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["verified"] is True


def test_a_journalled_upload_whose_file_is_gone_starts_again(
    live_server: LiveServer, tmp_path: Path
) -> None:
    """A run that finished the upload but died before it forgot it, and the stored file
    deleted since: the rerun does not keep pointing at the dead upload."""
    source = tmp_path / "data.bin"
    source.write_bytes(os.urandom(50_000))
    tus = {"Tus-Resumable": "1.0.0"}
    create = urllib.request.Request(
        f"{live_server.url}/tus/", method="POST", headers={**tus, "Upload-Length": "50000"}
    )
    with urllib.request.urlopen(create) as answer:
        upload_url = answer.headers["Location"]
    send = urllib.request.Request(
        upload_url,
        method="PATCH",
        data=source.read_bytes(),
        headers={**tus, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    with urllib.request.urlopen(send) as answer:
        old_id, delete = answer.headers["Satchel-File-Id"], answer.headers["Satchel-Delete"]
    with urllib.request.urlopen(urllib.request.Request(delete, method="DELETE")) as answer:
        assert answer.status == 204
    stat = source.stat()
    journal = tmp_path / "cache" / "satchel" / "uploads.json"
    journal.parent.mkdir(parents=True)
    key = f"{live_server.url} {source.resolve()} {stat.st_size} {stat.st_mtime_ns}"
    journal.write_text(json.dumps({key: upload_url}))

    up = satchel(live_server.url, "upload", str(source), "--json", cwd=tmp_path)
    assert up.returncode == 0, up.stderr
    stored = json.loads(up.stdout)
    assert stored["id"] != old_id and stored["verified"] is True
    assert json.loads(journal.read_text()) == {}
