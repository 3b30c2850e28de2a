"""The routes, each handler wrapped; what no route matches gets a catalogued 404 or 405."""

from aiohttp import web, web_response
from aiohttp.typedefs import Handler

from satchel.errors import ArchiveNotFound, MethodNotAllowed, NotFound
from satchel.http import archive, files, pages, tus
from satchel.http.errors import catalogued
from satchel.http.limits import limited


def setup_routes(app: web.Application, *, per_client: bool) -> None:
    """Every route's handler is wrapped: errors answered from the catalogue and, with
    per-client limits, the client counted. Wrappers, not middlewares, because aiohttp
    adds two layers to every request once any middleware is set (bench/RESULTS.md)."""

    # aiohttp names itself and Python, with versions, in every answer's Server header,
    # its own 400s included: an attacker's shopping list. One global, set here, rather
    # than a response-prepare signal that would run on every request.
    web_response.SERVER_SOFTWARE = "satchel"  # type: ignore[attr-defined]

    def h(handler: Handler) -> Handler:
        return catalogued(limited(handler) if per_client else handler)

    app.router.add_get("/", h(pages.index))
    app.router.add_get("/satchel.js", h(pages.script))
    app.router.add_get("/favicon.ico", h(pages.favicon))
    app.router.add_get("/healthz", h(pages.healthz))
    app.router.add_get("/readyz", h(pages.readyz))
    app.router.add_get("/openapi.json", h(pages.openapi))
    app.router.add_get("/archive/{folder}/", h(archive.archive))
    app.router.add_get("/archive/{folder}", h(archive.archive))
    member = app.router.add_resource("/archive/{folder}/{path:.+}")
    member.add_route("PUT", h(archive.put_member), expect_handler=files.defer_expect)
    member.add_route("DELETE", h(archive.delete_member))
    member.add_route("GET", h(archive.no_member_reads))
    member.add_route("HEAD", h(archive.no_member_reads))
    for path in ("/files/", "/upload/"):  # seed 003 and seed 004 spellings
        app.router.add_post(path, h(files.upload), expect_handler=files.defer_expect)
    # transfer.sh style: `curl -T photo.jpg http://satchel/files/` PUTs /files/photo.jpg
    app.router.add_put("/files/{name}", h(files.upload), expect_handler=files.defer_expect)
    app.router.add_get("/check/{id}", h(files.check))
    app.router.add_get("/files/{id}/", h(files.download))
    app.router.add_get("/files/{id}", h(files.download))  # the link without its slash
    app.router.add_get("/download/{id}", h(files.download))
    app.router.add_delete("/files/{id}/", h(files.delete))
    # tus 1.0 resumable uploads
    app.router.add_route("OPTIONS", "/tus/", h(tus.options))
    app.router.add_post("/tus/", h(tus.create), expect_handler=files.defer_expect)
    upload = app.router.add_resource("/tus/{id}")
    upload.add_route("HEAD", h(tus.head))
    upload.add_route("PATCH", h(tus.patch), expect_handler=files.defer_expect)
    upload.add_route("DELETE", h(tus.terminate))
    upload.add_route("OPTIONS", h(tus.options))
    # Last, so every route above is tried first.
    app.router.add_route("*", r"/{path:[\s\S]*}", h(unrouted))  # any path, newlines too


async def unrouted(request: web.Request) -> web.StreamResponse:
    """405 with Allow where the path exists for other methods, else 404."""
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        match, methods = await resource.resolve(request)
        if match is None:
            allowed |= methods
    if allowed:
        listed = ", ".join(sorted(allowed))
        raise MethodNotAllowed(
            f"{request.method} is not allowed here; use {listed}.", headers={"Allow": listed}
        )
    if request.path.startswith("/archive/"):
        raise ArchiveNotFound()
    raise NotFound()
