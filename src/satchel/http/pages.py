"""The index page, favicon and health check."""

from __future__ import annotations

from aiohttp import web
from sqlalchemy import text

from satchel.http.keys import ENGINE, INDEX_HTML, OPENAPI_JSON, PAGE_JS


async def index(request: web.Request) -> web.Response:
    return web.Response(body=request.app[INDEX_HTML], content_type="text/html", charset="utf-8")


async def script(request: web.Request) -> web.Response:
    return web.Response(
        body=request.app[PAGE_JS],
        content_type="text/javascript",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def favicon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    async with request.app[ENGINE].connect() as conn:
        await conn.execute(text("SELECT 1"))
    return web.json_response({"status": "ok"})


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_JSON], content_type="application/json")
