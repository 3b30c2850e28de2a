"""What counting every request for /metrics costs: /check with metrics on and with
--no-metrics, the same server otherwise (2 workers, uvloop, no access log), under
`wrk -t8 -c200`, alternated A B B A. Prints req/s and the server's CPU time per
request (its processes' utime + stime over the requests wrk completed), which moves
much less from run to run than req/s on this shared VM.

    python bench/metrics_bench.py [--rounds 5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from satchel.app import create_app
from satchel.config import load_settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

from archive_bench import cpu_seconds  # noqa: E402
from files_bench import small, start_satchel  # noqa: E402

SERVER_FLAGS = ("--workers", "2", "--event-loop", "uvloop", "--no-access-log")


def load(url: str, seconds: int, pid: int) -> tuple[float, float]:
    """(req/s, server CPU µs a request) of one wrk run."""
    cpu = cpu_seconds(pid)
    out = subprocess.run(
        ["wrk", "-t8", "-c200", f"-d{seconds}s", "--timeout", "2s", url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    cpu = cpu_seconds(pid) - cpu
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return rate, cpu / done * 1e6


def alternated(
    configs: dict[str, tuple[str, ...]], rounds: int, seconds: int
) -> dict[str, list[tuple[float, float]]]:
    """One server per configuration, each loaded in turn on /check, the order reversed
    every round (A B B A …) so that none goes first every time: (req/s, CPU µs) runs."""
    with tempfile.TemporaryDirectory() as work:
        servers = {
            name: start_satchel(Path(work, str(n)), *flags)
            for n, (name, flags) in enumerate(configs.items())
        }
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
        try:
            urls = {n: f"http://127.0.0.1:{s.port}/check/{small(s)}" for n, s in servers.items()}
            for name, server in servers.items():  # warm-up, not counted
                load(urls[name], 2, server.proc.pid)
            order = list(servers)
            for _ in range(rounds):
                for name in order:
                    runs[name].append(load(urls[name], seconds, servers[name].proc.pid))
                order.reverse()
        finally:
            for server in servers.values():
                server.stop()
    return runs


async def in_process(rounds: int, count: int = 50_000) -> tuple[list[float], list[float]]:
    """µs a request of the application alone (routing and the handler chain, no HTTP
    parsing, no sockets) for GET /, the cheapest route: with metrics, without."""

    async def started(data: str, metrics: bool) -> tuple[web.AppRunner, web.Application]:
        app = create_app(load_settings(data=Path(data), photos=Path(data), metrics=metrics))
        runner = web.AppRunner(app)
        await runner.setup()  # startup and cleanup_ctx, no site
        return runner, app

    async def per_request(app: web.Application) -> float:
        request = make_mocked_request("GET", "/", app=app)
        began = time.perf_counter()
        for _ in range(count):
            match = await app.router.resolve(request)
            await match.handler(request)
        return (time.perf_counter() - began) / count * 1e6

    with tempfile.TemporaryDirectory() as on, tempfile.TemporaryDirectory() as off:
        (runner_on, app_on), (runner_off, app_off) = (
            await started(on, True),
            await started(off, False),
        )
        try:
            times: tuple[list[float], list[float]] = ([], [])
            for _ in range(rounds):
                times[0].append(await per_request(app_on))
                times[1].append(await per_request(app_off))
            return times
        finally:
            await runner_on.cleanup()
            await runner_off.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    configs = {"metrics on": SERVER_FLAGS, "--no-metrics": (*SERVER_FLAGS, "--no-metrics")}
    runs = alternated(configs, args.rounds, args.seconds)
    print(f"\n/check, {' '.join(SERVER_FLAGS)}; `wrk -t8 -c200 -d{args.seconds}s`, alternated")
    print("| subject | runs | req/s, median (range) | server CPU µs a request, median (range) |")
    print("|---|---|---|---|")
    medians = {}
    for name, results in runs.items():
        rates, cpus = [r for r, _ in results], [c for _, c in results]
        medians[name] = statistics.median(rates), statistics.median(cpus)
        print(
            f"| {name} | {len(results)} | {medians[name][0]:,.0f} ({min(rates):,.0f}–"
            f"{max(rates):,.0f}) | {medians[name][1]:.1f} ({min(cpus):.1f}–{max(cpus):.1f}) |"
        )
    (rate_on, cpu_on), (rate_off, cpu_off) = medians["metrics on"], medians["--no-metrics"]
    print(
        f"\nUnder wrk, metrics cost {1 - rate_on / rate_off:+.1%} of the rate and "
        f"{cpu_on / cpu_off - 1:+.1%} CPU a request (target: at most 3%)."
    )
    with_metrics, without = asyncio.run(in_process(args.rounds))
    added = statistics.median(a - b for a, b in zip(with_metrics, without, strict=True))
    print(
        f"In-process, GET / (app only, {args.rounds} alternated rounds of 50,000): "
        f"{statistics.median(with_metrics):.2f} µs with metrics, "
        f"{statistics.median(without):.2f} µs without; counting adds {added:.2f} µs, "
        f"{added / cpu_off:.1%} of a /check's {cpu_off:.1f} µs of server CPU."
    )


if __name__ == "__main__":
    main()
