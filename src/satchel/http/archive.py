"""GET and HEAD /archive/<folder>/: a resumable ZIP of a photo folder, built on the fly;
the same of a selection (POST /archives/); writing into folders."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from satchel import metrics
from satchel.archive.manifest import Manifest, member_path
from satchel.archive.selection import MAX_BODY, parse_request
from satchel.archive.sender import ArchiveSender, Sources
from satchel.archive.sources import MixedSources
from satchel.blocking import blocking
from satchel.digests import parse_digests
from satchel.errors import ArchiveNotFound, DigestMismatch, NotFound
from satchel.files.rules import clean_filename
from satchel.http.answers import json_answer
from satchel.http.body import close_if_taken, json_body, request_body
from satchel.http.files import Count, authorize_upload, base_url, send_continue
from satchel.http.headers import content_disposition
from satchel.http.keys import ARCHIVES, FILESTORE, SELECTIONS, SETTINGS, THROTTLE
from satchel.http.limits import upload_shaping
from satchel.http.observe import transfer
from satchel.http.signed import check_link
from satchel.http.streaming import Plan, ResponseSink, plan_body, send_planned
from satchel.ranges import Validators

log = logging.getLogger("satchel.archive")

ZIP = "application/zip"


async def archive(request: web.Request) -> web.StreamResponse:
    """GET and HEAD /archive/<folder>/."""
    folder = request.match_info["folder"]
    required = request.app[SETTINGS].require_signed_archives
    check_link(request, f"/archive/{folder}/", required=required)
    archives = request.app[ARCHIVES]
    return await serve(request, lambda: archives.manifest(folder), archives.folders, folder)


async def selection_archive(request: web.Request) -> web.StreamResponse:
    """GET and HEAD /archive/m/<id>/: the archive of a selection, as a folder's is."""
    selection_id = request.match_info["id"]
    check_link(request, f"/archive/m/{selection_id}/", required=False)
    selections = request.app[SELECTIONS]
    selection = await selections.get(selection_id)
    sources = MixedSources(selections.archives.folders, selections.storage)
    name = selection.name or "archive"
    return await serve(request, lambda: selections.manifest(selection), sources, name)


async def serve(
    request: web.Request,
    plan: Callable[[], Awaitable[Manifest]],
    sources: Sources,
    name: str,
    count: Count | None = None,
) -> web.StreamResponse:
    """An archive, or the part of it asked for; a whole body counted on ``count``."""
    if request.method == "HEAD":
        return await _archive(request, await plan(), sources, name, count)
    with request.app[THROTTLE].archive_stream():  # 503 before any work when all are busy
        return await _archive(request, await plan(), sources, name, count)


async def _archive(
    request: web.Request, manifest: Manifest, sources: Sources, name: str, count: Count | None
) -> web.StreamResponse:
    body_headers = {
        "Content-Disposition": content_disposition(_download_name(request, name)),
        "X-Accel-Buffering": "no",
    }
    validators = Validators(manifest.etag, manifest.last_modified, manifest.layout.size)
    plan = plan_body(request, validators, ZIP, body_headers=body_headers)
    if not plan.parts:
        return await plan.headers_only(request)
    if count is None or not plan.reaches(manifest.layout.size):
        await _stream(request, plan, manifest, sources)
        return plan.response
    await count.start()
    completed = False
    try:
        completed = await _stream(request, plan, manifest, sources)
    finally:
        await count.end(completed=completed)
    return plan.response


def _download_name(request: web.Request, fallback: str) -> str:
    """``?name=``, cleaned, else ``fallback``; ending in .zip."""
    name = clean_filename(request.query.get("name", "")) or fallback
    return name if name.lower().endswith(".zip") else f"{name[:251]}.zip"


async def _stream(request: web.Request, plan: Plan, manifest: Manifest, sources: Sources) -> bool:
    """Send the planned parts; True if every byte went out. After the headers, an error
    can only cut the connection."""
    archives, settings = request.app[ARCHIVES], request.app[SETTINGS]
    sink = ResponseSink.for_request(request, plan.response)
    known = await archives.known_crcs(manifest)
    sender = ArchiveSender(
        manifest,
        known.crcs,
        sink,
        sources,
        chunk_size=settings.chunk_size,
        delay=settings.delay,
    )
    try:
        return await send_planned(request, plan, sink, sender.send, "archive", manifest.label)
    finally:
        await sender.close()
        metrics.CRC_HITS.inc(sender.cache_hits)
        metrics.CRC_MISSES.inc(len(sender.computed))
        try:
            await archives.save_crcs(manifest, known, sender.crcs, sender.computed)
        except Exception:
            log.exception(
                "Could not save %d CRCs of archive %s", len(sender.computed), manifest.label
            )


# -- archives of a selection -----------------------------------------------------------


async def create_selection(request: web.Request) -> web.Response:
    """POST /archives/: keep a selection of folder members and stored files; its link."""
    settings = request.app[SETTINGS]
    # Where folder links must be signed, a selection made by anyone would get round it.
    signed = settings.require_signed_archives
    authorize_upload(
        request, required="With --require-signed-archives, a selection" if signed else None
    )
    body = await json_body(request, MAX_BODY)
    day = 24 * 3600
    wanted = parse_request(
        body, default_ttl=settings.default_max_days * day, max_ttl=settings.max_days * day
    )
    selection, manifest = await request.app[SELECTIONS].create(wanted)
    url = f"{base_url(request)}/archive/m/{selection.id}/"
    log.info("Selection %s of %d files kept", selection.id[:8], len(selection.entries))
    answer = {
        "id": selection.id,
        "url": url,
        "size": manifest.layout.size,
        "files": len(selection.entries),
        "expires_at": selection.expires_at.isoformat(),
    }
    return json_answer(answer, status=201, headers={"Location": url})


async def delete_selection(request: web.Request) -> web.Response:
    """DELETE /archives/<id>: the link stops working at once."""
    authorize_upload(request, required="Deleting a selection")
    if not await request.app[SELECTIONS].delete(request.match_info["id"]):
        raise ArchiveNotFound()
    return web.Response(status=204)


# -- writing into folders ---------------------------------------------------------------


async def put_member(request: web.Request) -> web.Response:
    """PUT /archive/<folder>/<path>: a file lands atomically in the folder, CRC cached."""
    authorize_upload(request, required="Writing into archive folders")
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
    return close_if_taken(request, json_answer(body, status=200 if existed else 201))


async def delete_member(request: web.Request) -> web.Response:
    """DELETE /archive/<folder>/<path>."""
    authorize_upload(request, required="Writing into archive folders")
    segments = member_path(request.match_info["folder"], request.match_info["path"])
    if not await blocking(request.app[ARCHIVES].folders.remove, segments):
        raise NotFound("No such file in that folder.")
    return web.Response(status=204)


async def no_member_reads(_request: web.Request) -> web.Response:
    """Single files of a folder are not served; the folder's archive is."""
    raise ArchiveNotFound()
