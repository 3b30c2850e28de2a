"""Files benchmark: download vs nginx, upload throughput, /check req/s vs nginx.

Same method as archive_bench.py: baselines in the same run, subjects
alternated, input re-read before each measured run. Prints Markdown.

    python bench/files_bench.py [--rounds 3] [--size-mb 1024] [--wrk-seconds 30]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_bench import (  # noqa: E402
    PHOTOS,
    WORK,
    Run,
    Server,
    free_port,
    measure,
    report,
    start_nginx,
    usage,
    warm_cache,
)


def make_file(size_mb: int) -> Path:
    path = WORK / "nginx-files" / "file.bin"
    if not path.exists() or path.stat().st_size != size_mb * 2**20:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for _ in range(size_mb):
                out.write(os.urandom(2**20))
    return path


def start_satchel(data: Path, *extra: str) -> Server:
    port = free_port()
    PHOTOS.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "satchel", "serve", "--port", str(port), "--photos",
            str(PHOTOS), "--data", str(data), "--max-upload-size", "64G", *extra]  # fmt: skip
    return Server("satchel-files", argv, port, WORK, ready="/healthz")


def upload(server: Server, path: Path) -> tuple[Run, str]:
    """Upload with curl -T (streamed, not read into curl's memory)."""
    warm_cache([path])
    with usage(server) as used:
        out = subprocess.run(
            ["curl", "-sS", "-T", str(path), "-H", "Content-Type: application/octet-stream",
             "-w", "\n%{size_upload} %{time_total} %{time_starttransfer}",
             f"http://127.0.0.1:{server.port}/files/"],  # PUTs /files/file.bin
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    body, stats = out.rsplit("\n", 1)
    size, total, ttfb = stats.split()
    stored = json.loads(body)
    run = Run("satchel upload, curl -T", int(float(size)), float(total),
              float(ttfb), used.cpu, used.peak_rss)  # fmt: skip
    return run, stored["id"]


def upload_tus(server: Server, path: Path) -> tuple[Run, str]:
    """The same upload as one tus PATCH (curl -T), after a POST /tus/ that creates it;
    timed from the PATCH's start to its 204, which is sent once the file is stored."""
    size = path.stat().st_size
    tus = ["-H", "Tus-Resumable: 1.0.0"]
    created = subprocess.run(
        ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST", *tus,
         "-H", f"Upload-Length: {size}", f"http://127.0.0.1:{server.port}/tus/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    warm_cache([path])
    with usage(server) as used:
        out = subprocess.run(
            ["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "PATCH", "-T", str(path), *tus,
             "-H", "Content-Type: application/offset+octet-stream", "-H", "Upload-Offset: 0",
             "-w", "\n%{http_code} %{size_upload} %{time_total} %{time_starttransfer}",
             header(created, "Location")],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    headers, stats = out.rsplit("\n", 1)
    status, sent, total, ttfb = stats.split()
    if status != "204":
        raise RuntimeError(f"tus PATCH failed: HTTP {status}")
    file_id = header(headers, "Satchel-File-Id")
    run = Run("satchel upload, tus PATCH, curl -T", int(sent), float(total), float(ttfb),
              used.cpu, used.peak_rss)  # fmt: skip
    return run, file_id


def header(head: str, name: str) -> str:
    found = re.search(rf"^{name}: *(\S+)", head, re.MULTILINE | re.IGNORECASE)
    if found is None:
        raise RuntimeError(f"no {name} header in {head!r}")
    return found.group(1)


def upload_sendfile(server: Server, path: Path) -> tuple[Run, str]:
    """The same upload from a client that costs almost no CPU: the kernel sends the file
    (sendfile). curl reads and sends every byte itself, about 0.5 CPU-s a GiB, on the
    same two cores as the server; a client on another machine takes none of them."""
    warm_cache([path])
    size = path.stat().st_size
    head = (f"POST /files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()  # fmt: skip
    with usage(server) as used, path.open("rb") as source:
        sock = socket.create_connection(("127.0.0.1", server.port))
        start = time.perf_counter()
        sock.sendall(head)
        sock.sendfile(source)
        answer = [sock.recv(65536)]
        ttfb = time.perf_counter() - start
        while chunk := sock.recv(65536):  # the server closes after a body it read itself
            answer.append(chunk)
        seconds = time.perf_counter() - start
        sock.close()
    status, _, body = b"".join(answer).partition(b"\r\n\r\n")
    if not status.startswith(b"HTTP/1.1 201"):
        raise RuntimeError(f"upload failed: {status!r}")
    run = Run("satchel upload, sendfile client", size, seconds, ttfb, used.cpu, used.peak_rss)
    return run, json.loads(body)["id"]


def hash_stage(rounds: int) -> None:
    """The upload's hash stage on its own: ``Digests.update`` (SHA-256 and CRC-32) per
    2 MiB block over 1 GiB, in a fresh thread as in the ring, against SHA-256 alone.
    A CRC-32 that leaves the vector registers dirty shows here as a gap of about 35%."""
    from satchel.storage.base import Digests

    block = memoryview(os.urandom(2 * 2**20))

    def cpu_seconds(update: Callable[[memoryview], object]) -> float:
        spent: list[float] = []

        def run() -> None:
            start = time.thread_time()
            for _ in range(512):
                update(block)
            spent.append(time.thread_time() - start)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return spent[0]

    both, alone = [], []
    for _ in range(rounds):
        both.append(cpu_seconds(Digests().update))
        alone.append(cpu_seconds(hashlib.sha256().update))
    b, a = statistics.median(both), statistics.median(alone)
    print(f"hash stage, CPU-s a GiB (median of {rounds}): SHA-256 + CRC-32 {b:.2f}, "
          f"SHA-256 alone {a:.2f}; the CRC-32 adds {b / a - 1:.0%}\n")  # fmt: skip


def wrk(url: str, seconds: int) -> tuple[float, int, int]:
    """Seed 004's command: wrk -t8 -c200 -d30s --timeout 2s. (req/s, socket errors, non-2xx)."""
    out = subprocess.run(
        ["wrk", "-t8", "-c200", f"-d{seconds}s", "--timeout", "2s", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    socket_errors = sum(int(x) for x in errors.groups()) if errors else 0
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return rate, socket_errors, int(bad.group(1)) if bad else 0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--wrk-seconds", type=int, default=30)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "nginx-tmp").mkdir(exist_ok=True)
    blob = make_file(args.size_mb)
    (blob.parent / "small.json").write_bytes(b"x" * 1024)
    print(f"file: {args.size_mb} MiB of random bytes; page cache re-warmed before each run")

    runs: list[Run] = []
    nginx = start_nginx(blob.parent)
    try:
        with tempfile.TemporaryDirectory(dir=WORK) as data:
            satchel = start_satchel(Path(data))
            try:
                for _ in range(args.rounds):
                    run, file_id = upload_sendfile(satchel, blob)
                    runs.append(run)
                    (Path(data) / "files" / file_id[:2] / file_id).unlink()
                    run, file_id = upload_tus(satchel, blob)
                    runs.append(run)
                    (Path(data) / "files" / file_id[:2] / file_id).unlink()
                    run, file_id = upload(satchel, blob)
                    runs.append(run)
                    runs.append(measure("nginx sendfile", nginx, "/file.bin", [blob]))
                    stored = Path(data) / "files" / file_id[:2] / file_id
                    runs.append(
                        measure("satchel download", satchel, f"/files/{file_id}/", [stored])
                    )
            finally:
                satchel.stop()
            # The same upload with --data on tmpfs: Satchel's own receive + hash pipeline,
            # without the disk (this VM throttles page-cache writes to ~0.4 GB/s).
            with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
                satchel = start_satchel(Path(shm))
                try:
                    for _ in range(args.rounds):
                        run, file_id = upload(satchel, blob)
                        run.subject = "satchel upload, --data on tmpfs"
                        runs.append(run)
                        (Path(shm) / "files" / file_id[:2] / file_id).unlink()
                finally:
                    satchel.stop()
            report(runs)
            hash_stage(args.rounds)
            check_bench(nginx, Path(data), args.rounds, args.wrk_seconds)
    finally:
        nginx.stop()


def check_bench(nginx: Server, data: Path, rounds: int, seconds: int) -> None:
    """/check on 2 processes (the VM has 2 cores), uvloop, no access log, against nginx
    serving a 1 KB file and a trivial aiohttp handler, alternated for ``rounds`` rounds;
    then asyncio, with and without the access log, once each."""
    port = free_port()
    trivial_argv = [sys.executable, str(Path(__file__).parent / "aiohttp_trivial.py"), str(port)]
    subjects = {
        "nginx, 1 KB static file": (nginx, "/small.json"),
        "trivial aiohttp JSON handler, 2 processes, uvloop": (
            Server("aiohttp-trivial", trivial_argv, port, WORK),
            "/check/x",
        ),
    }
    main = start_satchel(data, "--workers", "2", "--event-loop", "uvloop", "--no-access-log")
    subjects["satchel /check, 2 workers, uvloop, no access log"] = (main, f"/check/{small(main)}")
    rates: dict[str, list[tuple[float, int, int]]] = {name: [] for name in subjects}
    try:
        for _ in range(rounds):
            for name, (server, path) in subjects.items():
                rates[name].append(wrk(f"http://127.0.0.1:{server.port}{path}", seconds))
    finally:
        main.stop()
        subjects["trivial aiohttp JSON handler, 2 processes, uvloop"][0].stop()
    for log in (False, True):
        flags = ["--workers", "2", "--event-loop", "asyncio"] + ([] if log else ["--no-access-log"])
        server = start_satchel(data, *flags)
        try:
            name = f"satchel /check, 2 workers, asyncio, access log {'on' if log else 'off'}"
            rates[name] = [wrk(f"http://127.0.0.1:{server.port}/check/{small(server)}", seconds)]
        finally:
            server.stop()
    nginx_rate = statistics.median(r[0] for r in rates["nginx, 1 KB static file"])
    print(f"\n/check: `wrk -t8 -c200 -d{seconds}s --timeout 2s`; median of the runs shown")
    print("| subject | runs | req/s | × nginx | socket errors | non-2xx |")
    print("|---|---|---|---|---|---|")
    for name, runs in rates.items():
        rate = statistics.median(r[0] for r in runs)
        spread = f" ({min(r[0] for r in runs):,.0f}–{max(r[0] for r in runs):,.0f})"
        print(
            f"| {name} | {len(runs)} | {rate:,.0f}{spread if len(runs) > 1 else ''} | "
            f"{rate / nginx_rate:.2f} | {sum(r[1] for r in runs)} | {sum(r[2] for r in runs)} |"
        )
    ours, trivial = (
        statistics.median(r[0] for r in rates[name])
        for name in (
            "satchel /check, 2 workers, uvloop, no access log",
            "trivial aiohttp JSON handler, 2 processes, uvloop",
        )
    )
    print(f"\n/check answers at {ours / trivial:.0%} of the trivial aiohttp handler's rate.")


def small(server: Server) -> str:
    """The id of a fresh 5-byte upload."""
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", "--data-binary", "hello",
         f"http://127.0.0.1:{server.port}/files/"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return str(json.loads(out)["id"])


if __name__ == "__main__":
    main()
