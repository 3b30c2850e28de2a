"""Speed-limit benchmark: accuracy, fairness, and scale of Satchel's limits.

- Accuracy: one download and one upload, each of rate × 10 s of bytes, at 100 KiB/s,
  1 MiB/s and 50 MiB/s per connection; achieved rate vs the target (goal ±5%).
- Fairness: 10 downloads by one client under --client-download-rate; each within
  ±20% of an even share, the sum within ±5% of the limit.
- Instances: 4 downloads, 2 through each of two instances (separate data folders)
  sharing --total-download-rate, then --client-download-rate, through Redis
  (--limits-redis); the sum vs the limit (goal ±5% with 2 instances), beside one
  instance with the same 4 downloads, alternated.
- Scale: 1,000 concurrent downloads at 100 KiB/s each from one process: all
  complete, aggregate within ±5%, server peak RSS ≤ 300 MB, CPU ≤ 50% of a core.

The clients are curl (`--parallel` for many transfers in one process). Prints
Markdown; see bench/RESULTS.md.

    python bench/throttle_bench.py [--seconds 10] [--connections 1000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_bench import WORK, Server, usage  # noqa: E402
from files_bench import start_satchel  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
# status, bytes, total seconds, seconds to the first response byte
WRITE_OUT = "%{http_code} %{size_download} %{time_total} %{time_starttransfer}\n"
WRITE_OUT_UP = "%{http_code} %{size_upload} %{time_total} %{time_pretransfer}\n"


def blob(size: int) -> Path:
    path = WORK / "throttle" / f"{size}.bin"
    if not path.exists() or path.stat().st_size != size:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return path


def curl(*args: str) -> str:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "600", *args], capture_output=True, text=True, check=True
    ).stdout


def store(server: Server, path: Path) -> str:
    url = f"http://127.0.0.1:{server.port}/files/"
    file_id: str = json.loads(curl("-T", str(path), url))["id"]
    return file_id


@dataclass
class Transfer:
    status: int
    size: int
    seconds: float  # from the first byte to the last
    first_byte: float  # from the start of curl's transfer

    @property
    def rate(self) -> float:
        return self.size / self.seconds


def transfers(out: str) -> list[Transfer]:
    """One per line of curl's `-w WRITE_OUT`."""
    rows = []
    for line in out.split("\n"):
        if line.strip():
            code, size, total, first_byte = line.split()
            seconds = float(total) - float(first_byte)
            rows.append(Transfer(int(code), int(float(size)), seconds, float(first_byte)))
    return rows


def row(*cells: object) -> None:
    print("| " + " | ".join(str(c) for c in cells) + " |")


def accuracy(data: Path, seconds: float) -> None:
    print("\n### Accuracy: one connection, rate × 10 s of bytes\n")
    row("direction", "target B/s", "achieved B/s", "error", "seconds")
    row(*["---"] * 5)
    for rate in (100 * KiB, MiB, 50 * MiB):
        path = blob(int(rate * seconds))
        free = start_satchel(data)  # unlimited, to store the download's file
        try:
            file_id = store(free, path)
        finally:
            free.stop()
        limited = start_satchel(data, "--download-rate", str(rate), "--upload-rate", str(rate))
        try:
            base = f"http://127.0.0.1:{limited.port}"
            [down] = transfers(curl("-o", "/dev/null", "-w", WRITE_OUT, f"{base}/files/{file_id}/"))
            [up] = transfers(
                curl("-o", "/dev/null", "-T", str(path), "-w", WRITE_OUT_UP, f"{base}/files/")
            )
        finally:
            limited.stop()
        for direction, t, ok in (("download", down, 200), ("upload", up, 201)):
            assert t.status == ok and t.size == path.stat().st_size, (direction, t)
            row(direction, rate, f"{t.rate:.0f}", f"{t.rate / rate - 1:+.1%}", f"{t.seconds:.2f}")


CURL_PARALLEL_MAX = 300  # curl caps --parallel-max here; more transfers need more curls


def parallel(urls: list[str]) -> tuple[list[Transfer], float]:
    """All URLs at once (a few curl processes); the transfers and the wall time."""
    step = CURL_PARALLEL_MAX - 50
    with contextlib.ExitStack() as stack:
        configs = []
        for i in range(0, len(urls), step):
            config = stack.enter_context(tempfile.NamedTemporaryFile("w", dir=WORK))
            config.writelines(
                f'url = "{url}"\noutput = "/dev/null"\n' for url in urls[i : i + step]
            )
            config.flush()
            configs.append(config.name)
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [
                    "curl",
                    "-sS",
                    "--no-progress-meter",
                    "--max-time",
                    "600",
                    "--parallel",
                    "--parallel-immediate",
                    "--parallel-max",
                    str(CURL_PARALLEL_MAX),
                    "-w",
                    WRITE_OUT,
                    "-K",
                    config,
                ],
                stdout=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for config in configs
        ]
        outputs = [proc.communicate()[0] for proc in procs]
        wall = time.monotonic() - started
    return [t for out in outputs for t in transfers(out)], wall


def fairness(data: Path, seconds: float) -> None:
    limit, count = 10 * MiB, 10
    path = blob(int(limit * seconds / count))
    server = start_satchel(data, "--client-download-rate", str(limit))
    try:
        file_id = store(server, path)
        rows, wall = parallel([f"http://127.0.0.1:{server.port}/files/{file_id}/"] * count)
    finally:
        server.stop()
    share = limit / count
    rates = [t.rate for t in rows]
    total = sum(t.size for t in rows) / wall
    print(f"\n### Fairness: {count} downloads of one client, --client-download-rate {limit}\n")
    row("even share B/s", "min", "max", "worst error", "sum B/s", "sum error", "all 200")
    row(*["---"] * 7)
    worst = max(abs(r / share - 1) for r in rates)
    row(f"{share:.0f}", f"{min(rates):.0f}", f"{max(rates):.0f}", f"{worst:.1%}", f"{total:.0f}",
        f"{total / limit - 1:+.1%}", all(t.status == 200 for t in rows))  # fmt: skip


REDIS = os.environ.get("SATCHEL_BENCH_REDIS", "redis://127.0.0.1:6379/0")


def instances(data: Path, seconds: float, rounds: int = 2) -> None:
    limit, count = 10 * MiB, 4
    path = blob(int(limit * seconds / count))
    print("\n### Instances: 4 downloads under one limit, shared through Redis\n")
    row("limit", "instances", "sum B/s", "error", "all 200")
    row(*["---"] * 5)
    for _ in range(rounds):
        for flag in ("--total-download-rate", "--client-download-rate"):
            for n in (1, 2):
                servers = [
                    start_satchel(data / f"i{i}", flag, str(limit), "--limits-redis", REDIS)
                    for i in range(n)
                ]
                try:
                    urls = [
                        f"http://127.0.0.1:{server.port}/files/{store(server, path)}/"
                        for server in servers
                    ]
                    rows, wall = parallel([urls[i % n] for i in range(count)])
                finally:
                    for server in servers:
                        server.stop()
                total = sum(t.size for t in rows) / wall
                ok = all(t.status == 200 and t.size == path.stat().st_size for t in rows)
                row(f"{flag} {limit}", n, f"{total:.0f}", f"{total / limit - 1:+.1%}", ok)


def scale(data: Path, seconds: float, count: int) -> None:
    rate = 100 * KiB
    path = blob(int(rate * seconds))
    server = start_satchel(data, "--download-rate", str(rate), "--no-access-log")
    try:
        file_id = store(server, path)
        with usage(server) as used:
            rows, wall = parallel([f"http://127.0.0.1:{server.port}/files/{file_id}/"] * count)
    finally:
        server.stop()
    complete = sum(1 for t in rows if t.status == 200 and t.size == path.stat().st_size)
    rates = [t.rate for t in rows]
    target = rate * count
    aggregate = sum(rates)  # all run at once: the rate the server sustains for all of them
    print(f"\n### Scale: {count} downloads at once, --download-rate {rate}, one process\n")
    row("complete", "aggregate B/s", "error", "per connection B/s: median (min–max)",
        "first byte s: median (max)", "wall s", "server CPU, % of a core",
        "peak RSS MiB")  # fmt: skip
    row(*["---"] * 8)
    first = [t.first_byte for t in rows]
    row(
        f"{complete}/{count}", f"{aggregate:.0f}", f"{aggregate / target - 1:+.1%}",
        f"{statistics.median(rates):.0f} ({min(rates):.0f}–{max(rates):.0f})",
        f"{statistics.median(first):.2f} ({max(first):.2f})", f"{wall:.1f}",
        f"{used.cpu / wall:.0%}", f"{used.peak_rss / MiB:.0f}",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=1000)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=WORK) as data:
        accuracy(Path(data), args.seconds)
        fairness(Path(data), args.seconds)
        instances(Path(data), args.seconds)
        scale(Path(data), args.seconds, args.connections)


if __name__ == "__main__":
    main()
