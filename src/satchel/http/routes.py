from aiohttp import web

from satchel.http import archive, files, pages, tus


def setup_routes(app: web.Application) -> None:
    app.router.add_get("/", pages.index)
    app.router.add_get("/satchel.js", pages.script)
    app.router.add_get("/favicon.ico", pages.favicon)
    app.router.add_get("/healthz", pages.healthz)
    app.router.add_get("/openapi.json", pages.openapi)
    app.router.add_get("/archive/{folder}/", archive.archive)
    app.router.add_get("/archive/{folder}", archive.archive)
    member = app.router.add_resource("/archive/{folder}/{path:.+}")
    member.add_route("PUT", archive.put_member, expect_handler=files.defer_expect)
    member.add_route("DELETE", archive.delete_member)
    member.add_route("GET", archive.no_member_reads)
    member.add_route("HEAD", archive.no_member_reads)
    for path in ("/files/", "/upload/"):  # seed 003 and seed 004 spellings
        app.router.add_post(path, files.upload, expect_handler=files.defer_expect)
    # transfer.sh style: `curl -T photo.jpg http://satchel/files/` PUTs /files/photo.jpg
    app.router.add_put("/files/{name}", files.upload, expect_handler=files.defer_expect)
    app.router.add_get("/check/{id}", files.check)
    app.router.add_get("/files/{id}/", files.download)
    app.router.add_get("/download/{id}", files.download)
    app.router.add_delete("/files/{id}/", files.delete)
    # tus 1.0 resumable uploads
    app.router.add_route("OPTIONS", "/tus/", tus.options)
    app.router.add_post("/tus/", tus.create, expect_handler=files.defer_expect)
    upload = app.router.add_resource("/tus/{id}")
    upload.add_route("HEAD", tus.head)
    upload.add_route("PATCH", tus.patch, expect_handler=files.defer_expect)
    upload.add_route("DELETE", tus.terminate)
    upload.add_route("OPTIONS", tus.options)
