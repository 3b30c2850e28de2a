"""The index page, favicon, liveness (/healthz) and readiness (/readyz)."""

from __future__ import annotations

import asyncio

from aiohttp import web
from sqlalchemy import text

from satchel.blocking import blocking
from satchel.errors import InsufficientStorage
from satchel.http.answers import json_answer
from satchel.http.keys import (
    DRAIN,
    ENGINE,
    FILESTORE,
    INDEX_HTML,
    OPENAPI_JSON,
    PAGE_JS,
    SHARE_JS,
)


async def index(request: web.Request) -> web.Response:
    return web.Response(body=request.app[INDEX_HTML], content_type="text/html", charset="utf-8")


async def script(request: web.Request) -> web.Response:
    return _script(request.app[PAGE_JS])


async def share_script(request: web.Request) -> web.Response:
    return _script(request.app[SHARE_JS])


def _script(body: bytes) -> web.Response:
    return web.Response(
        body=body,
        content_type="text/javascript",
        charset="utf-8",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


async def favicon(_request: web.Request) -> web.Response:
    return web.Response(status=204)


async def healthz(request: web.Request) -> web.Response:
    await _database_answers(request.app)
    return json_answer({"status": "ok"})


async def _database_answers(app: web.Application) -> None:
    async with app[ENGINE].connect() as conn:
        await conn.execute(text("SELECT 1"))


READY_TIMEOUT = 5.0  # seconds each readiness check may take


async def readyz(request: web.Request) -> web.Response:
    """Whether this instance should get traffic: it is not draining, the database
    answers, the storage can be written, and free space is above the reserve. 503 with
    what failed, otherwise."""
    store = request.app[FILESTORE]

    async def database() -> None:
        await _database_answers(request.app)

    async def storage() -> None:
        await blocking(store.storage.check)

    async def space() -> None:
        await store.space.admit(0)

    draining = request.app[DRAIN].draining
    checks = {"draining": "shutting down after SIGTERM" if draining else "ok"}
    for name, check in (("database", database), ("storage", storage), ("space", space)):
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await check()
            checks[name] = "ok"
        except InsufficientStorage:
            checks[name] = "free space is below --disk-reserve"
        except TimeoutError:
            checks[name] = f"no answer in {READY_TIMEOUT:g} s"
        except Exception as exc:
            checks[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    ready = all(result == "ok" for result in checks.values())
    return json_answer(
        {"ready": ready, "checks": checks},
        status=200 if ready else 503,
        headers={"Cache-Control": "no-store"},
    )


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI_JSON], content_type="application/json")
