"""Baseline for /check: a trivial aiohttp JSON handler, N processes on one port, uvloop.

What the issue gives for orientation ("a trivial aiohttp JSON handler with 2 processes +
uvloop"), measured on the same machine in the same run, so that /check can be read as
a share of what aiohttp itself does here. The body is as long as a /check answer.

    python bench/aiohttp_trivial.py PORT [PROCESSES]
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import sys

import uvloop
from aiohttp import web

BODY = json.dumps({"id": "x" * 22, "padding": "x" * 440}).encode()


async def answer(_request: web.Request) -> web.Response:
    return web.Response(body=BODY, content_type="application/json", charset="utf-8")


def serve(port: int) -> None:
    app = web.Application()
    app.router.add_get("/check/{id}", answer)
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        reuse_port=True,
        access_log=None,
        print=None,
        loop=uvloop.new_event_loop(),
    )


def main() -> None:
    port = int(sys.argv[1])
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=serve, args=(port,)) for _ in range(count)]
    for w in workers:
        w.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the finally below stops them
    try:
        for w in workers:
            w.join()
    finally:
        for w in workers:
            w.terminate()


if __name__ == "__main__":
    main()
