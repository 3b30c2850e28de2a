"""CORS at the edge (``satchel/cors.py`` decides): a response-prepare hook that adds
the headers to every answer to an allowed origin, streamed ones and errors too, and the
answer to a preflight. Installed only with ``--cors-origin``: nothing runs otherwise."""

from __future__ import annotations

from aiohttp import web

from satchel.cors import EXPOSED, MAX_AGE, METHODS, Cors
from satchel.errors import Forbidden
from satchel.http.keys import CORS


def install(app: web.Application, cors: Cors) -> None:
    app[CORS] = cors
    app.on_response_prepare.append(_add_headers)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    origin = request.headers.get("Origin")
    if origin is None or "Access-Control-Allow-Origin" in response.headers:
        return
    allowed = request.app[CORS].allow_origin(origin, request.method)
    response.headers.add("Vary", "Origin")
    if allowed is not None:
        response.headers["Access-Control-Allow-Origin"] = allowed
        response.headers["Access-Control-Expose-Headers"] = EXPOSED


def preflight(request: web.Request) -> web.Response | None:
    """The answer to a CORS preflight (OPTIONS with Origin and
    Access-Control-Request-Method), or None for any other request. A disallowed origin
    or header list is a 403 that says which."""
    cors = request.app.get(CORS)
    origin = request.headers.get("Origin")
    method = request.headers.get("Access-Control-Request-Method")
    if cors is None or request.method != "OPTIONS" or origin is None or method is None:
        return None
    allowed = cors.allow_origin(origin, method.strip().upper())
    if allowed is None:
        raise Forbidden(f"Requests from {origin} may not {method} here (--cors-origin).")
    headers = {
        "Access-Control-Allow-Origin": allowed,
        "Access-Control-Allow-Methods": METHODS,
        "Access-Control-Max-Age": MAX_AGE,
        "Vary": "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
    }
    requested = request.headers.get("Access-Control-Request-Headers", "")
    if requested:
        names = cors.allow_headers(requested)
        if names is None:
            raise Forbidden("Access-Control-Request-Headers must list header names.")
        headers["Access-Control-Allow-Headers"] = names
    return web.Response(status=204, headers=headers)
