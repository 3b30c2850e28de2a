"""What the access log costs, text and JSON: in-process µs a line (the logger alone,
writing to /dev/null, against the text logger of before issue 20 when git has it), and
/check under wrk with the log off, text and JSON, rotated A B C, C B A, ...

    python bench/logs_bench.py [--rounds 4] [--seconds 10]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

sys.path.insert(0, str(Path(__file__).resolve().parent))

from metrics_bench import alternated  # noqa: E402
from satchel.http.accesslog import STARTED, access_log_class  # noqa: E402
from satchel.http.requestid import KEY  # noqa: E402

BEFORE = "2642b5b"  # the commit before request ids and JSON lines
COUNT = 100_000


def _before() -> Any | None:
    """The access log module as it was at BEFORE, or None outside a git checkout."""
    path = "src/satchel/http/accesslog.py"
    shown = subprocess.run(["git", "show", f"{BEFORE}:{path}"], capture_output=True, text=True)
    if shown.returncode != 0:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as out:
        out.write(shown.stdout)
    spec = importlib.util.spec_from_file_location("accesslog_before", out.name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    os.unlink(out.name)
    return module


def per_line(make: Any) -> float:
    """µs a line of the access logger class ``make`` builds, written to /dev/null."""
    cls = make()
    null = os.open(os.devnull, os.O_WRONLY)
    cls._fd = null
    logger = cls(__import__("logging").getLogger("satchel.access"), "")
    headers = {"User-Agent": "curl/7.88.1", "Referer": "https://example.com/page"}
    request = make_mocked_request("GET", "/check/SyX7abcdefghijklmnopqr", headers=headers)
    request[STARTED] = time.perf_counter()
    request[KEY] = "5d1f0c2a9b3e-2f"
    response = web.Response(body=b"x" * 300)
    began = time.perf_counter()
    for _ in range(COUNT):
        logger.log(request, response, 0.0001)
    took = (time.perf_counter() - began) / COUNT * 1e6
    os.close(null)
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    before = _before()
    makers: dict[str, Any] = {
        "text": lambda: access_log_class((), "x-forwarded-for"),
        "json": lambda: access_log_class((), "x-forwarded-for", json_lines=True),
    }
    if before is not None:
        makers[f"text, before ({BEFORE})"] = lambda: before.access_log_class((), "x-forwarded-for")
    lines: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(5):
        for name, make in makers.items():
            lines[name].append(per_line(make))
    print("\nAccess log, in-process, µs a line (median of 5 runs of 100,000)")
    print("| logger | µs a line |")
    print("|---|---|")
    for name, runs in lines.items():
        print(f"| {name} | {statistics.median(runs):.2f} ({min(runs):.2f}–{max(runs):.2f}) |")

    flags = ("--workers", "2", "--event-loop", "uvloop")
    configs = {
        "no access log": (*flags, "--no-access-log"),
        "text": flags,
        "json": (*flags, "--log-format", "json"),
    }
    runs = alternated(configs, args.rounds, args.seconds)
    print(f"\n/check, {' '.join(flags)}, `wrk -t8 -c200 -d{args.seconds}s`, rotated")
    print("| access log | runs | req/s, median (range) | server CPU µs a request |")
    print("|---|---|---|---|")
    for name, results in runs.items():
        rates, cpus = [r for r, _ in results], [c for _, c in results]
        print(
            f"| {name} | {len(results)} | {statistics.median(rates):,.0f} "
            f"({min(rates):,.0f}–{max(rates):,.0f}) | {statistics.median(cpus):.1f} "
            f"({min(cpus):.1f}–{max(cpus):.1f}) |"
        )


if __name__ == "__main__":
    main()
