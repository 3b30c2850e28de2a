"""What the HTTP layer tells the metrics and the drain: each request counted and
timed by its route, each transfer tracked while it runs, and GET /metrics."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator

from aiohttp import web
from aiohttp.typedefs import Handler

from satchel import metrics
from satchel.blocking import blocking
from satchel.http.keys import DRAIN, FILESTORE, SETTINGS, TALLIES
from satchel.storage.base import UNLIMITED


def measured(route: str, handler: Handler, tallies: metrics.Tallies) -> Handler:
    """The handler, its requests counted and timed under ``route``, the pattern."""
    tally = tallies.route(route)

    @functools.wraps(handler)
    async def timed(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        status = 0  # cut: the handler ended by an error after it began to answer
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:  # a redirect aiohttp raised
            status = exc.status
            raise
        finally:
            tally.observe(request.method, status, time.perf_counter() - started)

    return timed


@contextlib.contextmanager
def transfer(request: web.Request, kind: str) -> Iterator[None]:
    """Around one transfer of ``kind`` (archive, file, upload, tus, member): shown as
    in progress, and waited for by the drain."""
    gauge = metrics.TRANSFERS.labels(kind)
    gauge.inc()
    try:
        with request.app[DRAIN].running():
            yield
    finally:
        gauge.dec()


async def scrape(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus's text format."""
    app = request.app
    app[TALLIES].flush()
    settings, storage = app[SETTINGS], app[FILESTORE].storage
    free = await blocking(storage.free_bytes)
    snapshot = metrics.Snapshot(
        free_bytes=None if free >= UNLIMITED else free,
        reserve_bytes=settings.disk_reserve,
        draining=app[DRAIN].draining,
    )
    body = await blocking(metrics.exposition, snapshot, multiprocess=settings.workers > 1)
    return web.Response(
        body=body,
        headers={"Content-Type": metrics.CONTENT_TYPE, "Cache-Control": "no-store"},
    )
