"""Speed limits and admission in the HTTP layer: who the client is, 429, shapers."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from aiohttp import web
from aiohttp.typedefs import Handler

from satchel import metrics
from satchel.http.keys import CLIENT, SETTINGS, THROTTLE, TRUSTED_PROXIES
from satchel.numbers import parse_int
from satchel.peers import client_address
from satchel.throttle import Shaper

UNCOUNTED = frozenset({"/healthz", "/readyz", "/metrics", "/favicon.ico"})


def limited(handler: Handler) -> Handler:
    """The handler, after naming its client (the peer, or what a trusted proxy says) and
    counting the client's requests. Only with per-client limits: it costs every request."""

    @functools.wraps(handler)
    async def counted(request: web.Request) -> web.StreamResponse:
        settings = request.app[SETTINGS]
        client = client_address(
            request.remote, request.headers, request.app[TRUSTED_PROXIES], settings.proxy_header
        )
        request[CLIENT] = client
        if request.path in UNCOUNTED:
            return await handler(request)
        with request.app[THROTTLE].request(client):
            return await handler(request)

    return counted


def client_of(request: web.Request) -> str:
    """The client as the middleware named it; without per-client limits nobody asks."""
    return str(request.get(CLIENT, ""))


def download_shaper(request: web.Request) -> Shaper | None:
    """The limits of one response body: the server's, and the client's own ?kbps=."""
    kbps = request.query.get("kbps")
    own = None
    if kbps is not None:
        own = parse_int("kbps", kbps, low=1, high=10**9) * 1024
    return request.app[THROTTLE].shaper("download", client_of(request), own)


@contextlib.contextmanager
def upload_shaping(request: web.Request) -> Iterator[Shaper | None]:
    """The limits of one request body, accounted for when it ends."""
    shaper = request.app[THROTTLE].shaper("upload", client_of(request))
    try:
        yield shaper
    finally:
        finished(request, "upload", shaper)


def finished(request: web.Request, direction: str, shaper: Shaper | None) -> None:
    request.app[THROTTLE].finished(direction, client_of(request), shaper)
    if shaper is not None and shaper.waited:
        metrics.LIMIT_WAIT.labels(direction).inc(shaper.waited)
