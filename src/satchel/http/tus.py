"""tus 1.0 at /tus/: resumable uploads that become ordinary stored files.

Extensions: creation, creation-with-upload, creation-defer-length, expiration,
checksum (sha1, sha256, md5), termination and concatenation (of finished partial
uploads). A completed upload answers with the stored file's links in Satchel-*
headers (on the last PATCH and on HEAD).
"""

from __future__ import annotations

import functools

from aiohttp import web
from aiohttp.typedefs import Handler

from satchel.errors import (
    BadRequest,
    Forbidden,
    PreconditionFailed,
    SatchelError,
    UnsupportedMediaType,
)
from satchel.files.rules import Retention, links
from satchel.http import cors
from satchel.http.body import close_if_taken, request_body
from satchel.http.files import (
    authorize_upload,
    base_url,
    joining,
    retention_for,
    send_continue,
)
from satchel.http.keys import SETTINGS, TUSSTORE
from satchel.http.limits import upload_shaping
from satchel.http.observe import transfer
from satchel.ranges import http_date
from satchel.tus.rules import (
    CHECKSUMS,
    EXTENSIONS,
    OFFSET_TYPE,
    VERSION,
    Checksum,
    Upload,
    encode_metadata,
    parse_checksum,
    parse_concat,
    parse_metadata,
    parse_number,
)

RESUMABLE = {"Tus-Resumable": VERSION}


def speaks_tus(handler: Handler) -> Handler:
    """Check Tus-Resumable on requests and put it on every answer, errors included."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != VERSION:
                raise PreconditionFailed(
                    f"This server speaks tus {VERSION}: send Tus-Resumable: {VERSION}.",
                    headers={"Tus-Version": VERSION},
                )
            response = await handler(request)
        except SatchelError as exc:
            extra = exc.details.get("headers")
            exc.details["headers"] = {**RESUMABLE, **(extra if isinstance(extra, dict) else {})}
            raise
        response.headers.update(RESUMABLE)
        return response

    return wrapped


async def _state(request: web.Request, upload: Upload) -> dict[str, str]:
    """Where the upload stands; once complete, the stored file's links."""
    headers = {"Upload-Offset": str(upload.offset), "Cache-Control": "no-store"}
    if not upload.completed:
        headers["Upload-Expires"] = http_date(int(upload.expires_at.timestamp()))
    record = await request.app[TUSSTORE].stored(upload)
    if record is not None:
        found = links(base_url(request), record.id, upload.delete_token, record.share)
        headers["Satchel-File-Id"] = record.id
        headers["Satchel-Download"] = found["download"]
        headers["Satchel-Check"] = found["check"]
        headers["Satchel-Delete"] = found["delete"]
    return headers


@speaks_tus
async def options(request: web.Request) -> web.StreamResponse:
    """tus's discovery; or, from a browser, a CORS preflight."""
    if (answer := cors.preflight(request)) is not None:
        return answer
    return web.Response(
        status=204,
        headers={
            "Tus-Version": VERSION,
            "Tus-Extension": ",".join(EXTENSIONS),
            "Tus-Max-Size": str(request.app[SETTINGS].max_upload_size),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUMS),
        },
    )


@speaks_tus
async def create(request: web.Request) -> web.StreamResponse:
    """POST /tus/: a new upload (creation), perhaps with its first bytes (creation-with-upload)."""
    authorize_upload(request)
    length = parse_number("Upload-Length", request.headers.get("Upload-Length"))
    concat = parse_concat(request.headers.get("Upload-Concat"))
    if concat is not None and concat[0] == "final":
        return await _final(request, length, concat[1])
    deferred = request.headers.get("Upload-Defer-Length")
    if deferred is not None and (deferred.strip() != "1" or length is not None):
        raise BadRequest("Upload-Defer-Length must be 1, and comes without Upload-Length.")
    if length is None and deferred is None:
        raise BadRequest("Send Upload-Length, or Upload-Defer-Length: 1 if it is not known yet.")
    if request.body_exists and request.content_type != OFFSET_TYPE:
        raise UnsupportedMediaType(
            f"Bytes sent with the creation need Content-Type: {OFFSET_TYPE}."
        )
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    store = request.app[TUSSTORE]
    metadata, kept = await _kept(request)
    upload = await store.create(
        length=length,
        metadata=metadata,
        retention=kept,
        concat="partial" if concat is not None else None,
    )
    if request.body_exists:
        await send_continue(request)
        upload = await _append(request, upload, 0, None, checksum)
    headers = {"Location": f"{base_url(request)}/tus/{upload.id}", **await _state(request, upload)}
    return close_if_taken(request, web.Response(status=201, headers=headers))


async def _final(
    request: web.Request, length: int | None, part_ids: list[str]
) -> web.StreamResponse:
    """POST /tus/ with Upload-Concat: final;<urls> (concatenation)."""
    if length is not None:
        raise BadRequest("A final upload's length is the sum of its parts: no Upload-Length.")
    if request.body_exists:
        raise BadRequest("A final upload takes no bytes of its own.")
    urls = request.headers["Upload-Concat"].strip().partition(";")[2].strip()
    metadata, kept = await _kept(request)
    upload = await request.app[TUSSTORE].concatenate(
        urls, part_ids, metadata=metadata, retention=kept
    )
    headers = {"Location": f"{base_url(request)}/tus/{upload.id}", **await _state(request, upload)}
    return web.Response(status=201, headers=headers)


async def _kept(request: web.Request) -> tuple[dict[str, str | None], Retention]:
    """The upload's metadata and how its file is kept: joining a share (the metadata
    keys ``share`` and ``share_token``) as the share is. The owner token is not kept."""
    metadata = parse_metadata(request.headers.get("Upload-Metadata"))
    if "share" not in metadata:
        return metadata, retention_for(request)
    share_id, token = metadata["share"], metadata.pop("share_token", None)
    if not share_id:
        raise BadRequest("The metadata key 'share' needs a value: the share's id.")
    return metadata, await joining(request, share_id, token)


@speaks_tus
async def head(request: web.Request) -> web.StreamResponse:
    store = request.app[TUSSTORE]
    upload = await store.settle(await store.get(request.match_info["id"]))
    headers = await _state(request, upload)
    if upload.length is None:
        headers["Upload-Defer-Length"] = "1"
    else:
        headers["Upload-Length"] = str(upload.length)
    if upload.metadata:
        headers["Upload-Metadata"] = encode_metadata(upload.metadata)
    if upload.concat is not None:
        headers["Upload-Concat"] = upload.concat
    return web.Response(status=200, headers=headers)


@speaks_tus
async def patch(request: web.Request) -> web.StreamResponse:
    authorize_upload(request)
    if request.content_type != OFFSET_TYPE:
        raise UnsupportedMediaType(f"A PATCH body needs Content-Type: {OFFSET_TYPE}.")
    offset = parse_number("Upload-Offset", request.headers.get("Upload-Offset"))
    if offset is None:
        raise BadRequest("A PATCH needs Upload-Offset: the offset its bytes start at.")
    length = parse_number("Upload-Length", request.headers.get("Upload-Length"))
    checksum = parse_checksum(request.headers.get("Upload-Checksum"))
    store = request.app[TUSSTORE]
    upload = await store.get(request.match_info["id"])  # 404, 409, 413 before 100
    if upload.final:
        raise Forbidden("A final upload is assembled from its parts: PATCH the partial uploads.")
    await store.admit(upload, offset, request.content_length)
    await send_continue(request)
    upload = await _append(request, upload, offset, length, checksum)
    return close_if_taken(request, web.Response(status=204, headers=await _state(request, upload)))


async def _append(
    request: web.Request,
    upload: Upload,
    offset: int,
    length: int | None,
    checksum: Checksum | None,
) -> Upload:
    with (
        transfer(request, "tus"),
        upload_shaping(request) as shaper,
        request_body(request, shaper, "tus") as body,
    ):
        return await request.app[TUSSTORE].append(
            upload, offset, body, length=length, checksum=checksum, shaper=shaper
        )


@speaks_tus
async def terminate(request: web.Request) -> web.StreamResponse:
    """DELETE /tus/<id> (termination): the upload and its bytes are gone; a stored file
    it already became stays, with its own delete link."""
    authorize_upload(request)
    await request.app[TUSSTORE].terminate(request.match_info["id"])
    return web.Response(status=204)
