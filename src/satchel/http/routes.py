"""The routes, each handler wrapped; what no route matches gets a catalogued 404 or 405."""

import re
from typing import Any

from aiohttp import web, web_response
from aiohttp.typedefs import Handler

from satchel.errors import ArchiveNotFound, MethodNotAllowed, NotFound
from satchel.http import archive, cors, files, pages, shares, tus
from satchel.http.errors import catalogued
from satchel.http.keys import TALLIES
from satchel.http.limits import limited
from satchel.http.observe import measured, scrape

ANY_NAME = "/{name:[^/]+}"  # transfer.sh's PUT /<name>


def setup_routes(app: web.Application, *, per_client: bool, metrics: bool) -> None:
    """Every route's handler is wrapped: errors answered from the catalogue; with
    per-client limits, the client counted; with metrics, the request counted and timed
    under its route's pattern. Wrappers, not middlewares, because aiohttp adds two
    layers to every request once any middleware is set (bench/RESULTS.md)."""

    # aiohttp names itself and Python, with versions, in every answer's Server header,
    # its own 400s included: an attacker's shopping list. One global, set here, rather
    # than a response-prepare signal that would run on every request.
    web_response.SERVER_SOFTWARE = "satchel"  # type: ignore[attr-defined]

    tallies = app[TALLIES]

    def h(route: str, handler: Handler) -> Handler:
        wrapped = catalogued(limited(handler) if per_client else handler)
        return measured(route, wrapped, tallies) if metrics else wrapped

    def add(method: str, path: str, handler: Handler, **kwargs: Any) -> None:
        route = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)  # the label: no regex
        if method == "GET":  # and HEAD
            app.router.add_get(path, h(route, handler), **kwargs)
        else:
            app.router.add_route(method, path, h(route, handler), **kwargs)

    def uploads(method: str, path: str, handler: Handler) -> None:
        add(method, path, handler, expect_handler=files.defer_expect)

    add("GET", "/", pages.index)
    add("GET", "/satchel.js", pages.script)
    add("GET", "/share.js", pages.share_script)
    add("GET", "/favicon.ico", pages.favicon)
    add("GET", "/healthz", pages.healthz)
    add("GET", "/readyz", pages.readyz)
    if metrics:
        add("GET", "/metrics", scrape)
    add("GET", "/openapi.json", pages.openapi)
    uploads("POST", "/archives/", archive.create_selection)
    add("DELETE", "/archives/{id}", archive.delete_selection)
    add("GET", "/archive/m/{id}/", archive.selection_archive)  # before folder members
    add("GET", "/archive/m/{id}", archive.selection_archive)
    add("GET", "/archive/{folder}/", archive.archive)
    add("GET", "/archive/{folder}", archive.archive)
    member = "/archive/{folder}/{path:.+}"
    uploads("PUT", member, archive.put_member)
    add("DELETE", member, archive.delete_member)
    add("GET", member, archive.no_member_reads)
    for path in ("/files/", "/upload/"):  # seed 003 and seed 004 spellings
        uploads("POST", path, files.upload)
    # transfer.sh style: `curl -T photo.jpg http://satchel/files/` PUTs /files/photo.jpg
    # (any name: aiohttp's plain {name} stops at "{" and "}")
    uploads("PUT", "/files/{name:[^/]+}", files.upload)
    uploads("PUT", ANY_NAME, files.put_plain)  # curl --upload-file f http://satchel/
    # shares: several files under one link (issue 21)
    add("POST", "/shares/", shares.create)
    add("GET", "/shares/{id}", shares.show)
    add("PATCH", "/shares/{id}", shares.change)
    add("DELETE", "/shares/{id}", shares.delete)
    add("GET", "/s/{id}/", shares.page)
    add("GET", "/s/{id}", shares.to_page)
    add("POST", "/s/{id}/", shares.unlock)
    add("GET", "/s/{id}/all.zip", shares.download_all)
    add("GET", "/s/{id}/qr.svg", shares.qr)
    add("GET", "/s/{id}/f/{file}", shares.file)
    add("GET", "/check/{id}", files.check)
    add("GET", "/files/{id}/", files.download)
    add("GET", "/files/{id}", files.download)  # the link without its slash
    add("GET", "/download/{id}", files.download)
    add("DELETE", "/files/{id}/", files.delete)
    # tus 1.0 resumable uploads
    add("OPTIONS", "/tus/", tus.options)
    uploads("POST", "/tus/", tus.create)
    upload = "/tus/{id}"
    add("HEAD", upload, tus.head)
    uploads("PATCH", upload, tus.patch)
    add("DELETE", upload, tus.terminate)
    add("OPTIONS", upload, tus.options)
    # Last, so every route above is tried first; counted as one route, whatever the path.
    app.router.add_route("*", r"/{path:[\s\S]*}", h("unrouted", unrouted))  # newlines too


async def unrouted(request: web.Request) -> web.StreamResponse:
    """405 with Allow where the path exists for other methods, else 404."""
    if (answer := cors.preflight(request)) is not None:
        return answer
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource.canonical == "/{name}":  # ANY_NAME: a PUT to any name is an upload
            continue
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
