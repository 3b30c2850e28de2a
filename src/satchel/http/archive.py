"""GET and HEAD /archive/<folder>/: a resumable ZIP of a photo folder, built on the fly."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from satchel import metrics
from satchel.archive.manifest import Manifest, member_path
from satchel.archive.sender import ArchiveSender
from satchel.blocking import blocking
from satchel.digests import parse_digests
from satchel.errors import (
    ArchiveNotFound,
    DigestMismatch,
    NotFound,
)
from satchel.files.rules import clean_filename
from satchel.http.body import close_if_taken, request_body
from satchel.http.files import authorize_upload, base_url, send_continue
from satchel.http.headers import content_disposition
from satchel.http.keys import ARCHIVES, FILESTORE, SETTINGS, THROTTLE
from satchel.http.limits import upload_shaping
from satchel.http.observe import transfer
from satchel.http.signed import check_link
from satchel.http.streaming import Plan, ResponseSink, plan_body, send_planned
from satchel.ranges import Validators

log = logging.getLogger("satchel.archive")

ZIP = "application/zip"


async def archive(request: web.Request) -> web.StreamResponse:
    folder = request.match_info["folder"]
    required = request.app[SETTINGS].require_signed_archives
    check_link(request, f"/archive/{folder}/", required=required)
    if request.method == "HEAD":
        return await _archive(request)
    with request.app[THROTTLE].archive_stream():  # 503 before any work when all are busy
        return await _archive(request)


async def _archive(request: web.Request) -> web.StreamResponse:
    folder = request.match_info["folder"]
    manifest = await request.app[ARCHIVES].manifest(folder)
    body_headers = {
        "Content-Disposition": content_disposition(_download_name(request, folder)),
        "X-Accel-Buffering": "no",
    }
    validators = Validators(manifest.etag, manifest.last_modified, manifest.layout.size)
    plan = plan_body(request, validators, ZIP, body_headers=body_headers)
    if not plan.parts:
        return await plan.headers_only(request)
    await _stream(request, plan, manifest)
    return plan.response


def _download_name(request: web.Request, folder: str) -> str:
    """``?name=``, cleaned, ending in .zip; else the folder's name."""
    name = clean_filename(request.query.get("name", ""))
    if not name:
        return f"{folder}.zip"
    return name if name.lower().endswith(".zip") else f"{name[:251]}.zip"


async def _stream(request: web.Request, plan: Plan, manifest: Manifest) -> None:
    """Send the planned parts; after the headers, an error can only cut the connection."""
    archives, settings = request.app[ARCHIVES], request.app[SETTINGS]
    folder = manifest.folder
    sink = ResponseSink.for_request(request, plan.response)
    sender = ArchiveSender(
        manifest,
        await archives.store.load(folder),
        sink,
        archives.folders,
        chunk_size=settings.chunk_size,
        delay=settings.delay,
    )
    try:
        await send_planned(request, plan, sink, sender.send, "archive", folder)
    finally:
        await sender.close()
        metrics.CRC_HITS.inc(sender.cache_hits)
        metrics.CRC_MISSES.inc(len(sender.computed))
        await _remember(request, folder, sender)


async def _remember(request: web.Request, folder: str, sender: ArchiveSender) -> None:
    try:
        await request.app[ARCHIVES].store.save(folder, sender.computed)
    except Exception:
        log.exception("Could not save %d CRCs of archive %s", len(sender.computed), folder)


# -- writing into folders ---------------------------------------------------------------


async def put_member(request: web.Request) -> web.Response:
    """PUT /archive/<folder>/<path>: a file lands atomically in the folder, CRC cached."""
    authorize_upload(request, required=True)
    folder, name = request.match_info["folder"], request.match_info["path"]
    segments = member_path(folder, name)
    store, archives = request.app[FILESTORE], request.app[ARCHIVES]
    room = archives.space
    await store.admit(request.content_length, room)
    await send_continue(request)
    digest = parse_digests(request.headers)
    with (
        transfer(request, "member"),
        upload_shaping(request) as shaper,
        request_body(request, shaper, "member") as source,
    ):
        temp = await store.receive(source, archives.folders.create, shaper=shaper, space=room)
    try:
        if digest is not None and temp.sha256 != digest:
            raise DigestMismatch()
        version, existed = await asyncio.shield(blocking(archives.folders.place, segments, temp))
    except BaseException:
        await asyncio.shield(blocking(temp.discard))
        raise
    await archives.remember(folder, version, temp.crc32)
    log.info("Stored %s/%s (%d bytes) into the photos root", folder, name, temp.size)
    body = {
        "folder": folder,
        "path": name,
        "size": temp.size,
        "sha256": temp.sha256.hex(),
        "crc32": temp.crc32,
        "archive": f"{base_url(request)}/archive/{folder}/",
    }
    return close_if_taken(request, web.json_response(body, status=200 if existed else 201))


async def delete_member(request: web.Request) -> web.Response:
    """DELETE /archive/<folder>/<path>."""
    authorize_upload(request, required=True)
    segments = member_path(request.match_info["folder"], request.match_info["path"])
    if not await blocking(request.app[ARCHIVES].folders.remove, segments):
        raise NotFound("No such file in that folder.")
    return web.Response(status=204)


async def no_member_reads(_request: web.Request) -> web.Response:
    """Single files of a folder are not served; the folder's archive is."""
    raise ArchiveNotFound()
