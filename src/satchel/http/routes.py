from aiohttp import web

from satchel.http import archive, pages


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", pages.index)
    app.router.add_get("/favicon.ico", pages.favicon)
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/openapi.json", pages.openapi)
    app.router.add_get("/archive/{folder}/", archive.archive)
    app.router.add_get("/archive/{folder}", archive.archive)
