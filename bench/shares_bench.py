"""Shares (issue 21): a share's "download all" against the archive of a folder holding
the same files, on one server, in the same run, alternated (folder, share, folder,
share), each after the inputs were re-read into the page cache. Both archives know
every CRC beforehand (the folder's from a first archive, the share's from the uploads),
so the two differ only in where the members come from: a folder scan, or the share's
rows and the file store.

Also what a password costs a request: `GET /shares/<id>` with `Satchel-Share-Password`
(one scrypt check) against the same request of a share without one, alternated.

    python bench/shares_bench.py [--rounds 5] [--files 320]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_bench import WORK, Run, Server, make_corpus, measure, start_satchel  # noqa: E402
from small_files_bench import spread  # noqa: E402


def call(
    server: Server, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def make_share(server: Server, **settings: object) -> dict[str, str]:
    status, body = call(server, "POST", "/shares/", json.dumps(settings).encode())
    assert status == 201, body
    share: dict[str, str] = json.loads(body)
    return share


def fill(server: Server, share: dict[str, str], inputs: list[Path]) -> None:
    joining = {"Satchel-Share": share["id"], "Satchel-Share-Token": share["owner_token"]}
    for path in inputs:
        status, body = call(server, "POST", f"/files/?name={path.name}", path.read_bytes(), joining)
        assert status == 201, body


def archives(server: Server, share: dict[str, str], stored: list[Path], inputs: list[Path],
             rounds: int) -> list[Run]:  # fmt: skip
    measure("warm-up", server, "/archive/bench/", inputs)  # the folder's CRCs, kept
    runs = []
    for _ in range(rounds):
        runs.append(measure("folder archive", server, "/archive/bench/", inputs))
        runs.append(measure("share download all", server, f"/s/{share['id']}/all.zip", stored))
    return runs


def password_cost(server: Server, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds of GET /shares/<id>: (without a password, with the password given)."""
    plain = make_share(server)
    locked = make_share(server, password="correct horse battery staple")
    header = {"Satchel-Share-Password": "correct horse battery staple"}
    without, with_password = [], []
    for _ in range(rounds):
        for share, headers, into in ((plain, {}, without), (locked, header, with_password)):
            started = time.perf_counter()
            status, _ = call(server, "GET", f"/shares/{share['id']}", headers=headers)
            into.append(time.perf_counter() - started)
            assert status == 200
    return without, with_password


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=320)  # archive_bench.py's corpus
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    inputs = make_corpus(args.files)
    if len(list(inputs[0].parent.iterdir())) != len(inputs):
        raise SystemExit(f"{inputs[0].parent} holds other files: remove it to make it again")
    total = sum(p.stat().st_size for p in inputs)
    with tempfile.TemporaryDirectory(dir=WORK) as data:
        subprocess.run(
            [sys.executable, "-m", "satchel", "admin", "migrate", "--data", data], check=True
        )
        server = start_satchel("satchel-shares", "uvloop", Path(data))
        try:
            share = make_share(server)
            fill(server, share, inputs)
            stored = [p for p in Path(data).rglob("*") if p.is_file() and p.stat().st_size > 1e6]
            runs = archives(server, share, stored, inputs, args.rounds)
            without, with_password = password_cost(server, args.rounds * 4)
        finally:
            server.stop()

    print(f"\n### Shares: {len(inputs)} files, {total / 1e6:.0f} MB\n")
    print("| subject | runs | bytes | seconds, median (range) | GB/s | × folder | TTFB ms |")
    print("|---|---|---|---|---|---|---|")
    folder = statistics.median(r.seconds for r in runs if r.subject == "folder archive")
    for subject in ("folder archive", "share download all"):
        rs = [r for r in runs if r.subject == subject]
        seconds = [r.seconds for r in rs]
        print(
            f"| {subject} | {len(rs)} | {rs[0].bytes:,} | {spread(seconds, digits=3)} | "
            f"{statistics.median(r.gbps for r in rs):.2f} | "
            f"{folder / statistics.median(seconds):.2f} | "
            f"{spread([r.ttfb for r in rs], 1000, 1)} |"
        )
    print("\n| `GET /shares/<id>` | runs | ms, median (range) |")
    print("|---|---|---|")
    print(f"| no password | {len(without)} | {spread(without, 1000, 1)} |")
    print(f"| password given (scrypt) | {len(with_password)} | {spread(with_password, 1000, 1)} |")
    print()


if __name__ == "__main__":
    main()
