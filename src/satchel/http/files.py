"""Files behind links: upload, check, download, delete (seeds 003 and 004)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import html
import logging
from collections.abc import AsyncIterator, Iterator
from email.policy import default as email_policy
from typing import Protocol

from aiohttp import BodyPartReader, web

from satchel import metrics
from satchel.blocking import blocking
from satchel.digests import parse_digests
from satchel.errors import (
    BadRequest,
    BodyCut,
    FileNotFound,
    Forbidden,
    MalformedBody,
    Unauthorized,
)
from satchel.files.intake import ChunkBody
from satchel.files.rules import (
    ID_RE,
    Retention,
    StoredFile,
    describe,
    links,
    media_type,
    retention,
)
from satchel.http.answers import json_answer, wants_text
from satchel.http.body import close_if_taken, request_body
from satchel.http.headers import content_disposition
from satchel.http.keys import CHECKS, DELETE_HTML, FILESTORE, SETTINGS, SHARES, UPLOAD_TOKENS
from satchel.http.limits import upload_shaping
from satchel.http.observe import transfer
from satchel.http.signed import check_link
from satchel.http.streaming import Plan, ResponseSink, plan_body, send_planned
from satchel.ranges import Validators
from satchel.storage.base import Presigning, Reader

log = logging.getLogger("satchel.files")
PLAIN_ANSWER = web.RequestKey("plain_answer", bool)  # PUT /<name>: text unless asked


# -- shared ----------------------------------------------------------------------------


def base_url(request: web.Request) -> str:
    public = request.app[SETTINGS].public_url
    return public or f"{request.scheme}://{request.host}"


def authorize_upload(request: web.Request, *, required: str | None = None) -> None:
    """With --upload-token set, uploads and deletes need 'Authorization: Bearer <token>'.

    ``required``: what is refused outright when the server has no tokens at all.
    """
    tokens = request.app[UPLOAD_TOKENS]
    if not tokens:
        if required:
            raise Forbidden(f"{required} needs the server to have --upload-token.")
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not any(
        hmac.compare_digest(given.strip().encode(), t.encode()) for t in tokens
    ):
        raise Unauthorized(headers={"WWW-Authenticate": 'Bearer realm="satchel"'})


async def defer_expect(_request: web.Request) -> None:
    """Expect: 100-continue is answered by the handler itself, after its checks."""
    return None


async def send_continue(request: web.Request) -> None:
    if request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")


def filename_from(request: web.Request) -> str | None:
    """RFC 6266 Content-Disposition (filename* per RFC 8187 preferred), else ?name=,
    else the name in the path (`curl -T photo.jpg http://satchel/files/`)."""
    header = request.headers.get("Content-Disposition")
    if header:
        parsed = email_policy.header_factory("content-disposition", header)
        name = parsed.params.get("filename")
        if name:
            return str(name)
    return request.query.get("name") or request.match_info.get("name")


def retention_for(request: web.Request) -> Retention:
    s = request.app[SETTINGS]
    return retention(
        request.headers.get("Max-Downloads", request.query.get("max_downloads")),
        request.headers.get("Max-Days", request.query.get("max_days")),
        default_days=s.default_max_days,
        days_limit=s.max_days,
        default_downloads=s.default_max_downloads,
        downloads_limit=s.max_downloads,
    )


SHARE_HEADER, SHARE_TOKEN_HEADER = "Satchel-Share", "Satchel-Share-Token"


async def kept_for(request: web.Request) -> Retention:
    """How an upload is kept: by Max-Downloads and Max-Days, or, joining a share
    (``Satchel-Share`` and ``Satchel-Share-Token``), as the share is; before any byte."""
    share_id = request.headers.get(SHARE_HEADER)
    if share_id is None:
        return retention_for(request)
    return await joining(request, share_id, request.headers.get(SHARE_TOKEN_HEADER))


async def joining(request: web.Request, share_id: str, owner_token: str | None) -> Retention:
    """403, 404 or 409 unless a file may join the share now."""
    for limit in ("Max-Downloads", "Max-Days"):
        if limit in request.headers or limit.lower().replace("-", "_") in request.query:
            raise BadRequest(f"A file in a share keeps the share's expiry and limit: no {limit}.")
    return await request.app[SHARES].joining(share_id, owner_token)


async def _part_body(part: BodyPartReader) -> AsyncIterator[bytes]:
    while True:
        with _form_errors():
            chunk = await part.read_chunk(256 * 1024)
        if not chunk:
            return
        yield chunk


@contextlib.contextmanager
def _form_errors() -> Iterator[None]:
    """aiohttp's multipart reader says a body is cut or malformed with these."""
    try:
        yield
    except (ValueError, RuntimeError, RuntimeWarning) as exc:  # warnings: when made errors
        raise MalformedBody(f"The multipart body is malformed or cut short: {exc}") from exc


# -- upload ----------------------------------------------------------------------------


async def put_plain(request: web.Request) -> web.Response:
    """PUT /<name>, transfer.sh's `curl --upload-file photo.jpg http://satchel/`: an
    upload whose answer is its download link as text, unless JSON is asked for."""
    request[PLAIN_ANSWER] = True
    return await upload(request)


async def upload(request: web.Request) -> web.Response:
    """POST /files/ and /upload/: the body is the file, or multipart/form-data `file` parts."""
    authorize_upload(request)
    store = request.app[FILESTORE]
    kept = await kept_for(request)
    await store.admit(request.content_length)
    await send_continue(request)
    if request.content_type == "multipart/form-data":
        return await _upload_form(request, kept)
    with (
        transfer(request, "upload"),
        upload_shaping(request) as shaper,
        request_body(request, shaper, "upload") as source,
    ):
        record, token = await store.store(
            source,
            name_for=filename_from(request),
            content_type=media_type(request.headers.get("Content-Type")),
            retention=kept,
            sha256=parse_digests(request.headers),
            shaper=shaper,
        )
    return close_if_taken(request, _created(request, [(record, token)], single=True))


async def _upload_form(request: web.Request, kept: Retention) -> web.Response:
    store = request.app[FILESTORE]
    with _form_errors():
        reader = await request.multipart()
    stored: list[tuple[StoredFile, str]] = []
    try:
        with transfer(request, "upload"), upload_shaping(request) as shaper:
            while True:
                with _form_errors():
                    part = await reader.next()
                if part is None:
                    break
                if not isinstance(part, BodyPartReader) or part.name != "file":
                    continue  # other form fields are not files
                body = ChunkBody(_part_body(part))
                try:
                    stored.append(
                        await store.store(
                            body,
                            name_for=part.filename,
                            content_type=media_type(part.headers.get("Content-Type")),
                            retention=kept,
                            shaper=shaper,
                        )
                    )
                finally:
                    metrics.RECEIVED.labels("upload").inc(body.received)
    except BaseException:  # the client learns no link: keep none of the form's files
        for record, token in stored:
            await asyncio.shield(store.delete(record.id, token))
        raise
    if not stored:
        raise BadRequest("The form has no 'file' part.")
    return _created(request, stored, single=False)


def _created(
    request: web.Request, stored: list[tuple[StoredFile, str]], *, single: bool
) -> web.Response:
    """201 with each file's JSON; or, to a client that asks for text/plain (and by
    default on ``PUT /<name>``, as transfer.sh does), the download links alone, a line
    each. The first file's links are in ``Location`` and ``X-Url-Delete``."""
    base = base_url(request)
    record, token = stored[0]
    first = links(base, record.id, token, record.share)
    headers = {"Location": first["download"], "X-Url-Delete": first["delete"]}
    if wants_text(request, default=request.get(PLAIN_ANSWER, False)):
        urls = "".join(f"{links(base, r.id, share=r.share)['download']}\n" for r, _ in stored)
        return web.Response(status=201, text=urls, content_type="text/plain", headers=headers)
    described = [describe(record, base, token) for record, token in stored]
    body: object = described[0] if single else {"files": described}
    return json_answer(body, status=201, headers=headers)


# -- check, download, delete -----------------------------------------------------------


def _file_id(request: web.Request) -> str:
    file_id = request.match_info["id"]
    if not ID_RE.fullmatch(file_id):
        raise FileNotFound()
    return file_id


async def check(request: web.Request) -> web.Response:
    checks = request.app[CHECKS]
    file_id = request.match_info["id"]  # the cache checks its form when it looks it up
    base = base_url(request)
    body = checks.fresh(file_id, base) or await checks.answer(file_id, base)
    return web.Response(body=body, content_type="application/json", charset="utf-8")


async def download(request: web.Request) -> web.StreamResponse:
    """GET/HEAD /files/<id>/ and /download/<id>: Range, conditionals, sendfile.

    The delete link (``?token=``) opened in a browser gets a page that asks first: a
    GET never deletes, and it does not download either. A share's file is served only
    through its share (``/s/<share>/f/<id>``)."""
    store = request.app[FILESTORE]
    file_id = _file_id(request)
    check_link(request, f"/files/{file_id}/", required=False)
    record = await store.available(file_id)
    if "token" in request.query:
        return delete_page(request, record, request.query["token"])
    if record.share is not None:
        raise FileNotFound()
    return await send_file(request, record, FileCount(request, record))


class Count(Protocol):
    """What a whole download counts against: a file's own limit, or its share's."""

    limited: bool

    async def start(self) -> None:
        """Before the first byte: claim a download (409 when all that are left run)."""
        ...

    async def end(self, *, completed: bool) -> None: ...


class FileCount:
    def __init__(self, request: web.Request, record: StoredFile) -> None:
        self.request, self.record = request, record
        self.limited = record.max_downloads is not None

    async def start(self) -> None:
        await self.request.app[FILESTORE].start_download(self.record)

    async def end(self, *, completed: bool) -> None:
        self.request.app[CHECKS].forget(self.record.id)
        ended = self.request.app[FILESTORE].end_download(self.record, completed=completed)
        # A claim must be given back even if this handler is cancelled; an unlimited
        # file's count is only a tally, not worth outliving the request for.
        await (asyncio.shield(ended) if self.limited else ended)


async def send_file(request: web.Request, record: StoredFile, count: Count) -> web.StreamResponse:
    """The file's bytes, or the part of them asked for; a whole body is counted."""
    store = request.app[FILESTORE]
    etag = f'"{record.sha256[:40]}"'
    created = int(record.created_at.timestamp())
    digest = base64.b64encode(bytes.fromhex(record.sha256)).decode()
    plan = plan_body(
        request,
        Validators(etag, created, record.size),
        record.content_type,
        headers={"Repr-Digest": f"sha-256=:{digest}:"},
        body_headers={"Content-Disposition": content_disposition(record.name)},
    )
    if not plan.parts:
        return await plan.headers_only(request)
    storage = store.storage
    redirect = request.app[SETTINGS].s3_redirect and not count.limited
    if redirect and isinstance(storage, Presigning):  # a limit: sent, counted exactly
        return await _redirect(request, storage, record, plan, count)
    file = await store.open(record)  # before the headers: a missing file is still a 404
    try:
        if not plan.reaches(record.size):
            await _send(request, plan, file)  # a part: counts for nothing
            return plan.response
        await count.start()
        completed = False
        try:
            completed = await _send(request, plan, file)
        finally:
            await count.end(completed=completed)
    finally:
        await asyncio.shield(blocking(file.close))
    return plan.response


PRESIGNED_SECONDS = 300


async def _redirect(
    request: web.Request, storage: Presigning, record: StoredFile, plan: Plan, count: Count
) -> web.StreamResponse:
    """302 to a presigned URL of the object, which serves it (and its ranges) by itself:
    counted as a download when it asks for the whole file, as a sent one is."""
    disposition = content_disposition(record.name)
    url = await blocking(
        storage.presign, record.id, disposition, record.content_type, PRESIGNED_SECONDS
    )
    if plan.reaches(record.size):
        await count.end(completed=True)
    return web.Response(status=302, headers={"Location": url, "Cache-Control": "no-store"})


async def _send(request: web.Request, plan: Plan, file: Reader) -> bool:
    """Stream the planned parts of ``file``; True if every byte went out."""
    sink = ResponseSink.for_request(request, plan.response)

    async def send_range(start: int, stop: int) -> None:
        if await sink.send(file, start, stop - start) != stop - start:
            raise BodyCut("the file is shorter than its record")

    return await send_planned(request, plan, sink, send_range, "file", request.match_info["id"])


def delete_page(request: web.Request, record: StoredFile, token: str) -> web.Response:
    page = request.app[DELETE_HTML].format(
        name=html.escape(record.name),
        size=f"{record.size:,} bytes",
        expires=record.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
        token=html.escape(token, quote=True),
        token_field="" if request.app[UPLOAD_TOKENS] else "hidden",
    )
    return web.Response(
        text=page,
        content_type="text/html",
        charset="utf-8",
        headers={
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",  # the token is in this page's URL
            "X-Content-Type-Options": "nosniff",
        },
    )


async def delete(request: web.Request) -> web.Response:
    """DELETE /files/<id>/ with its delete token (?token= or X-Delete-Token)."""
    authorize_upload(request)
    file_id = _file_id(request)
    token = request.query.get("token") or request.headers.get("X-Delete-Token")
    store = request.app[FILESTORE]
    request.app[CHECKS].forget(file_id)
    if token and await store.delete(file_id, token):
        return web.Response(status=204)
    if await store.repo.get(file_id) is None:
        raise FileNotFound()
    if not token:
        raise Forbidden("Deleting needs the delete token: ?token=… or X-Delete-Token.")
    raise Forbidden("The delete token does not match.")
