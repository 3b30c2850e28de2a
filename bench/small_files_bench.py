"""Archives of many small files (issue 19): Satchel against `zip -0 -r -q - folder >
/dev/null` of the same folder, in the same run, alternated (zip, Satchel, zip, Satchel).

- 10,000 files of 10 KiB: each round starts a fresh server on an empty database, takes
  one cold archive (no CRC known: every file read for its CRC on the way), then two
  warm ones (the CRC snapshot and the plan of the last archive at hand); then the same
  on a server started with --no-watch-folders, whose warm archives scan the folder. The page cache
  is warm for every subject: the folder is re-read before each run.
- 100,000 files of 1 KiB: a cold and a warm archive on a fresh server; the length it
  declared against what came, a resume from the middle against the whole, the server's
  peak RSS (its process tree, sampled every 20 ms, until it is idle again: a cold
  archive's CRCs are saved after its last byte), the time to the first byte.

Speed ratio = zip's time / Satchel's time (above 1: Satchel is faster). Prints
Markdown; see bench/RESULTS.md.

    python bench/small_files_bench.py [--rounds 3] [--skip-100k]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_bench import PHOTOS, WORK, Server, cpu_seconds, start_satchel, usage  # noqa: E402


def make_folder(name: str, count: int, size: int, per_dir: int) -> Path:
    """``count`` files of ``size`` random bytes, ``per_dir`` a sub-folder; reused."""
    folder = PHOTOS / name
    marker = folder / f".complete-{count}-{size}"
    if not marker.exists():
        for i in range(count):
            sub = folder / f"d{i // per_dir:03}"
            if i % per_dir == 0:
                sub.mkdir(parents=True, exist_ok=True)
            (sub / f"IMG_{i:06}.jpg").write_bytes(os.urandom(size))
        marker.write_text("")
    return folder


def warm(folder: Path) -> None:
    for path in folder.rglob("*.jpg"):
        path.read_bytes()


def run_zip(folder: Path) -> float:
    warm(folder)
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        subprocess.run(["zip", "-0", "-r", "-q", "-", folder.name], cwd=PHOTOS, stdout=null,
                       check=True)  # fmt: skip
    return time.perf_counter() - started


def run_satchel(
    server: Server, folder: Path, out: str = os.devnull
) -> tuple[float, float, int, int]:
    """(seconds, seconds to the first byte, bytes, declared length) of one archive."""
    warm(folder)
    url = f"http://127.0.0.1:{server.port}/archive/{folder.name}/"
    fields = subprocess.run(
        ["curl", "-sS", "-o", out, "--max-time", "600", "-w",
         "%{time_total} %{time_starttransfer} %{size_download} %header{content-length}", url],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return float(fields[0]), float(fields[1]), int(fields[2]), int(fields[3])


def settle(server: Server, quiet: float = 0.2, limit: float = 10.0) -> None:
    """Wait (at most ``limit`` s) until the server has used no CPU for ``quiet`` s: what it
    does once the response is out (a cold archive's CRCs saved) counts for that archive."""
    deadline = time.monotonic() + limit
    before = cpu_seconds(server.proc.pid)
    while time.monotonic() < deadline:
        time.sleep(quiet)
        now = cpu_seconds(server.proc.pid)
        if now - before < 0.01:
            return
        before = now


def fresh_server(data: str, name: str, *options: str) -> Server:
    subprocess.run(
        [sys.executable, "-m", "satchel", "admin", "migrate", "--data", data], check=True
    )
    return start_satchel(name, "uvloop", Path(data), *options)


def spread(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    """Median (lowest–highest)."""
    low, mid, high = (
        f"{v * scale:.{digits}f}" for v in (min(values), statistics.median(values), max(values))
    )
    return f"{mid} ({low}–{high})"


# A warm archive of a watched folder (the default) is planned without a scan; with
# --no-watch-folders every archive scans its folder, as a root on NFS does.
MODES = {"": (), ", scanned (`--no-watch-folders`)": ("--no-watch-folders",)}


def ten_thousand(rounds: int) -> None:
    folder = make_folder("many10k", 10_000, 10 * 1024, 1000)
    zips: list[float] = []
    cold: dict[str, list[float]] = {mode: [] for mode in MODES}
    warm_runs: dict[str, list[tuple[float, float]]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode, options in MODES.items():  # alternated, each on a fresh server
            with tempfile.TemporaryDirectory(dir=WORK) as data:
                server = fresh_server(data, "satchel-small", *options)
                try:
                    zips.append(run_zip(folder))
                    cold[mode].append(run_satchel(server, folder)[0])
                    for _ in range(2):
                        zips.append(run_zip(folder))
                        seconds, ttfb, _, _ = run_satchel(server, folder)
                        warm_runs[mode].append((seconds, ttfb))
                finally:
                    server.stop()
    z = statistics.median(zips)
    print("\n### 10,000 files of 10 KiB\n")
    print("| subject | runs | seconds, median (range) | speed against zip | first byte, ms |")
    print("|---|---|---|---|---|")
    print(f"| `zip -0 -r` | {len(zips)} | {spread(zips)} | 1.00 | – |")
    for mode in MODES:
        warm_s = [s for s, _ in warm_runs[mode]]
        ttfb = spread([t for _, t in warm_runs[mode]], 1000, 0)
        print(f"| Satchel warm{mode} | {len(warm_s)} | {spread(warm_s)} | "
              f"{z / statistics.median(warm_s):.2f} | {ttfb} |")  # fmt: skip
    for mode in MODES:
        print(f"| Satchel cold{mode} | {len(cold[mode])} | {spread(cold[mode])} | "
              f"{z / statistics.median(cold[mode]):.2f} | – |")  # fmt: skip


def hundred_thousand() -> None:
    folder = make_folder("many100k", 100_000, 1024, 1000)
    zip_s = run_zip(folder)
    with tempfile.TemporaryDirectory(dir=WORK) as data:
        server = fresh_server(data, "satchel-100k")
        whole = Path(data) / "whole.zip"
        try:
            with usage(server) as cold_use:
                cold = run_satchel(server, folder, str(whole))
                settle(server)
            with usage(server) as warm_use:
                warm_run = run_satchel(server, folder)
                settle(server)
            middle = cold[2] // 2
            tail = subprocess.run(
                ["curl", "-sS", "-r", f"{middle}-",
                 f"http://127.0.0.1:{server.port}/archive/{folder.name}/"],
                capture_output=True, check=True,
            ).stdout  # fmt: skip
            resumed = tail == whole.read_bytes()[middle:]
        finally:
            server.stop()
    print("\n### 100,000 files of 1 KiB\n")
    print(f"`zip -0 -r`: {zip_s:.2f} s. Declared {cold[3]:,} bytes, received {cold[2]:,}; "
          f"a resume from byte {middle:,} {'equals' if resumed else 'DIFFERS FROM'} the "
          "whole's tail.\n")  # fmt: skip
    print("| run | seconds | speed against zip | first byte, ms | server peak RSS, MB |")
    print("|---|---|---|---|---|")
    for name, run, use in (("cold", cold, cold_use), ("warm", warm_run, warm_use)):
        print(f"| {name} | {run[0]:.2f} | {zip_s / run[0]:.2f} | {run[1] * 1000:.0f} | "
              f"{use.peak_rss / 1e6:.0f} |")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-100k", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    ten_thousand(args.rounds)
    if not args.skip_100k:
        hundred_thousand()


if __name__ == "__main__":
    main()
