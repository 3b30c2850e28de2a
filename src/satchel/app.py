"""create_app(settings) -> the aiohttp application; cleanup_ctx owns resources."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources

from aiohttp import web

from satchel.archive import Archives, blocking
from satchel.config import Settings
from satchel.http.errors import error_middleware
from satchel.http.keys import ARCHIVES, ENGINE, INDEX_HTML, OPENAPI_JSON, SETTINGS
from satchel.http.routes import setup_routes
from satchel.metadata.crc import SqlCrcStore
from satchel.metadata.db import create_engine, migrate
from satchel.zipstream import Limits


def create_app(settings: Settings, *, limits: Limits = Limits()) -> web.Application:
    """The whole service. ``limits`` shrinks ZIP64 thresholds (tests only)."""
    app = web.Application(middlewares=[error_middleware])
    app[SETTINGS] = settings

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        await blocking(settings.data.mkdir, parents=True, exist_ok=True)
        engine = create_engine(settings.db_url)
        try:
            await migrate(engine)
            app[ENGINE] = engine
            app[ARCHIVES] = Archives(settings.photos, SqlCrcStore(engine), limits)
            app[INDEX_HTML] = await blocking(_read_page, "index.html")
            app[OPENAPI_JSON] = await blocking(_read_page, "openapi.json")
            yield
        finally:
            await engine.dispose()

    app.cleanup_ctx.append(resources_ctx)
    setup_routes(app)
    return app


def _read_page(name: str) -> bytes:
    return resources.files("satchel.web").joinpath(name).read_bytes()
