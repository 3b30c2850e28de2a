"""Archive benchmark: Satchel vs nginx sendfile (the limit) vs the seeds' `zip -r -` pipe.

One run measures everything against baselines taken in the same run, alternating
subjects (A B A B) to cancel drift on a noisy VM. The input is re-read right
before every measured run, because this VM evicts files idle for about a minute
from page cache. Prints a Markdown table; see bench/RESULTS.md.

    python bench/archive_bench.py [--rounds 3] [--files 320] [--skip-seed] [--skip-5gb]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "bench" / ".work"
PHOTOS = WORK / "photos"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_corpus(count: int) -> list[Path]:
    """`count` files of 1–8 MB of random bytes (photos do not compress), reused across runs."""
    folder = PHOTOS / "bench"
    rng = random.Random(7)
    sizes = [rng.randint(1_000_000, 8_000_000) for _ in range(count)]
    paths = [folder / f"IMG_{i:04}.jpg" for i in range(count)]
    if not all(p.exists() and p.stat().st_size == s for p, s in zip(paths, sizes, strict=True)):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for path, size in zip(paths, sizes, strict=True):
            path.write_bytes(os.urandom(size))
    return paths


def make_sparse_5gb() -> list[Path]:
    folder = PHOTOS / "big5"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"part{i}.bin" for i in range(5)]
    for path in paths:
        if not path.exists() or path.stat().st_size != 1 << 30:
            with path.open("wb") as f:
                f.truncate(1 << 30)
    return paths


def concat(paths: list[Path], dest: Path) -> Path:
    total = sum(p.stat().st_size for p in paths)
    if not dest.exists() or dest.stat().st_size != total:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:
            for p in paths:
                with p.open("rb") as f:
                    shutil.copyfileobj(f, out, 8 << 20)
    return dest


def warm_cache(paths: list[Path]) -> None:
    for p in paths:
        with p.open("rb", buffering=0) as f:
            while f.read(8 << 20):
                pass


# -- processes --------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    kids = [int(x) for x in out.split()]
    return [pid] + [p for k in kids for p in _tree(k)]


def cpu_seconds(pid: int) -> float:
    total = 0
    for p in _tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / CLK_TCK


def rss_bytes(pid: int) -> int:
    total = 0
    for p in _tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total


class Server:
    def __init__(
        self, name: str, argv: list[str], port: int, cwd: Path, ready: str | None = None
    ) -> None:
        """Started, and answering ``ready`` with 200 where given (Satchel binds its port
        before it opens the database, so a connection alone does not mean it serves)."""
        self.name = name
        self.port = port
        self.log = open(WORK / f"{name}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(argv, cwd=cwd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if ready is None:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    return
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", ready)
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{name} exited; see {self.log.name}") from None
                time.sleep(0.05)
        raise RuntimeError(f"{name} did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@dataclass
class Run:
    subject: str
    bytes: int
    seconds: float
    ttfb: float
    cpu: float
    peak_rss: int

    @property
    def gbps(self) -> float:
        return self.bytes / self.seconds / 1e9


@dataclass
class Usage:
    cpu: float = 0.0
    peak_rss: int = 0


@contextlib.contextmanager
def usage(server: Server) -> Iterator[Usage]:
    """CPU seconds and peak RSS (sampled every 20 ms) of the server tree meanwhile."""
    result = Usage(peak_rss=rss_bytes(server.proc.pid))
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            result.peak_rss = max(result.peak_rss, rss_bytes(server.proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    cpu_before = cpu_seconds(server.proc.pid)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result.cpu = cpu_seconds(server.proc.pid) - cpu_before


def measure(subject: str, server: Server, path: str, inputs: list[Path]) -> Run:
    warm_cache(inputs)
    with usage(server) as used:
        out = subprocess.run(
            ["curl", "-sS", "-o", "/dev/null", "--max-time", "300",
             "-w", "%{size_download} %{time_total} %{time_starttransfer} %{http_code}",
             f"http://127.0.0.1:{server.port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout.split()  # fmt: skip
    if out[3] != "200":
        raise RuntimeError(f"{subject}: HTTP {out[3]}")
    return Run(subject, int(out[0]), float(out[1]), float(out[2]), used.cpu, used.peak_rss)


# -- subjects --------------------------------------------------------------------------


def start_nginx(root: Path) -> Server:
    port = free_port()
    conf = WORK / "nginx.conf"
    conf.write_text(
        f"""daemon off; worker_processes 1; pid {WORK}/nginx.pid; error_log {WORK}/nginx-error.log;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; tcp_nopush on; default_type application/octet-stream;
  client_body_temp_path {WORK}/nginx-tmp; proxy_temp_path {WORK}/nginx-tmp;
  fastcgi_temp_path {WORK}/nginx-tmp; uwsgi_temp_path {WORK}/nginx-tmp;
  scgi_temp_path {WORK}/nginx-tmp;
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return Server(
        "nginx", [nginx, "-c", str(conf), "-e", str(WORK / "nginx-error.log")], port, WORK
    )


def start_satchel(name: str, loop: str, data: Path, *options: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "satchel", "serve", "--port", str(port), "--photos", str(PHOTOS),
            "--data", str(data), "--event-loop", loop, *options]  # fmt: skip
    return Server(name, argv, port, WORK, ready="/healthz")


def start_seed() -> Server:
    port = free_port()
    argv = [sys.executable, str(ROOT / "bench" / "seed_zip_server.py"), str(port), str(PHOTOS)]
    return Server("seed", argv, port, WORK)


def satchel_pair(loop: str, folder: str, inputs: list[Path]) -> tuple[Run, Run]:
    """(cold, warm): a fresh CRC cache, then the same archive again."""
    with tempfile.TemporaryDirectory(dir=WORK) as data:
        # The schema exists already (as in production after the first start); the CRC
        # cache is empty, which is what "cold" means.
        subprocess.run(
            [sys.executable, "-m", "satchel", "admin", "migrate", "--data", data], check=True
        )
        server = start_satchel(f"satchel-{loop}", loop, Path(data))
        try:
            cold = measure(f"satchel {loop} cold", server, f"/archive/{folder}/", inputs)
            warm = measure(f"satchel {loop} warm", server, f"/archive/{folder}/", inputs)
        finally:
            server.stop()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--files", type=int, default=320)
    parser.add_argument("--skip-seed", action="store_true")
    parser.add_argument("--skip-5gb", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "nginx-tmp").mkdir(exist_ok=True)

    inputs = make_corpus(args.files)
    total = sum(p.stat().st_size for p in inputs)
    blob = concat(inputs, WORK / "nginx-root" / "all.bin")
    print(
        f"corpus: {len(inputs)} files, {total / 1e9:.2f} GB; page cache re-warmed before each run"
    )

    runs: list[Run] = []
    nginx = start_nginx(blob.parent)
    try:
        for _ in range(args.rounds):  # alternate subjects so drift hits all alike
            runs.append(measure("nginx sendfile (one file)", nginx, "/all.bin", [blob]))
            for loop in ("asyncio", "uvloop"):
                runs.extend(satchel_pair(loop, "bench", inputs))
    finally:
        nginx.stop()
    if not args.skip_seed:
        seed = start_seed()
        try:
            runs.append(
                measure("seed: aiohttp + zip -r - (deflate)", seed, "/archive/bench/", inputs)
            )
        finally:
            seed.stop()
    report(runs)
    if not args.skip_5gb:
        big = make_sparse_5gb()
        for loop in ("asyncio", "uvloop"):
            cold, warm = satchel_pair(loop, "big5", big)
            for r in (cold, warm):
                rss = r.peak_rss / 2**20
                print(f"5 GB archive, {r.subject}: {r.gbps:.2f} GB/s, peak RSS {rss:.0f} MiB")


def report(runs: list[Run]) -> None:
    subjects = list(dict.fromkeys(r.subject for r in runs))
    base = statistics.median(r.gbps for r in runs if r.subject.startswith("nginx"))
    print("\n| subject | runs | GB/s (median) | × nginx | TTFB ms | CPU s | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for s in subjects:
        rs = [r for r in runs if r.subject == s]
        gbps = statistics.median(r.gbps for r in rs)
        ratio = "–" if "upload" in s else f"{gbps / base:.2f}"  # nginx serves, not receives
        print(
            f"| {s} | {len(rs)} | {gbps:.2f} | {ratio} | "
            f"{statistics.median(r.ttfb for r in rs) * 1000:.1f} | "
            f"{statistics.median(r.cpu for r in rs):.2f} | "
            f"{max(r.peak_rss for r in rs) / 2**20:.0f} |"
        )
    print()


if __name__ == "__main__":
    main()
