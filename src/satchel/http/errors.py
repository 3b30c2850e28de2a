"""Render every error a client can see from the one catalogue, as JSON or HTML."""

from __future__ import annotations

import functools
import html
import logging
import time
from collections.abc import Mapping

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestPayloadError

from satchel import metrics
from satchel.errors import (
    ArchiveNotFound,
    ConnectionLost,
    InsufficientStorage,
    MalformedBody,
    SatchelError,
    for_status,
)
from satchel.http import requestid
from satchel.http.accesslog import STARTED
from satchel.http.answers import dumps
from satchel.http.body import close_if_taken
from satchel.http.keys import TRUSTED_PROXIES
from satchel.metadata.db import database_full
from satchel.storage.base import disk_full

log = logging.getLogger("satchel.http")

_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} — Satchel</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;
padding:0 1rem}}
h1{{font-size:1.4rem}}p.code{{color:#777}}</style></head>
<body><h1>{headline}</h1>{extra}<p class="code">{status} · {code}</p>
<p><a href="/">Satchel</a></p></body></html>
"""


_REASONS = {460: "Checksum Mismatch"}  # tus's own status, unknown to http.HTTPStatus


def _wants_html(request: web.Request, error: SatchelError | None) -> bool:
    if isinstance(error, ArchiveNotFound):  # people follow these links in browsers
        return True
    accept = request.headers.get("Accept", "")
    return "text/html" in accept and "application/json" not in accept


def render_error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    *,
    error: SatchelError | None = None,
    headers: Mapping[str, str] | None = None,
) -> web.Response:
    if _wants_html(request, error):
        extra = ""
        lang = "en"
        if isinstance(error, ArchiveNotFound):
            lang = "ru"
            extra = f'<p lang="en">{html.escape(message)}</p>'
            message = ArchiveNotFound.message_ru
        body = _PAGE.format(
            lang=lang, status=status, code=code, headline=html.escape(message), extra=extra
        )
        return close_if_taken(
            request,
            web.Response(
                status=status,
                reason=_REASONS.get(status),
                text=body,
                content_type="text/html",
                charset="utf-8",
                headers=headers,
            ),
        )
    payload: dict[str, object] = {"error": code, "message": message, "status": status}
    if error is not None:  # what else it names for a program: which entry, which path
        payload.update((k, v) for k, v in error.details.items() if isinstance(v, str | int))
    return close_if_taken(
        request,
        web.Response(
            status=status,
            reason=_REASONS.get(status),
            text=dumps(payload),
            content_type="application/json",
            headers=headers,
        ),
    )


def catalogued(handler: Handler) -> Handler:
    """The handler, with every error it raises answered from the catalogue; it also
    notes when the handler began, for the access log, and gives the request its id.

    A wrapper per route (see routes.py) rather than a middleware: once an application
    has any middleware, aiohttp runs two more layers on every request, and /check spent
    2 µs of its 30 there (bench/RESULTS.md).
    """

    @functools.wraps(handler)
    async def answer(request: web.Request) -> web.StreamResponse:
        request[STARTED] = time.perf_counter()
        request_id = requestid.take(request, request.app[TRUSTED_PROXIES])
        try:
            response = await handler(request)
        except SatchelError as exc:
            error = exc
        except (HttpProcessingError, RequestPayloadError) as exc:  # broken coding or framing
            error = MalformedBody(f"The request body is malformed: {_cause(exc)}")
        except ConnectionResetError as exc:  # the client left mid-body: nobody to answer
            log.info("%s %s: the client went away (%s)", request.method, request.path, exc)
            error = ConnectionLost()
        except web.HTTPException as exc:  # raised inside aiohttp, e.g. by request.post()
            if exc.status < 400:
                exc.headers[requestid.HEADER] = request_id
                raise
            error = for_status(exc.status)(f"{exc.reason}.")
        except Exception as exc:
            if request.writer.output_size:  # the answer has begun: aiohttp closes the connection
                raise
            if disk_full(exc) or database_full(exc):  # with no reserve left, or none set
                log.warning("%s %s: the disk is full (%s)", request.method, request.path, exc)
                error = InsufficientStorage()
            else:
                log.exception("%s %s failed", request.method, request.path)
                error = SatchelError("The server failed; the cause is in its log.")
        else:
            if not response.prepared:  # a streamed answer's headers have it: see plan_body
                response.headers[requestid.HEADER] = request_id
            return response
        if error.status in metrics.REFUSALS:
            metrics.REFUSED.labels(str(error.status), error.code).inc()
        headers = _headers(error)
        headers[requestid.HEADER] = request_id
        return render_error(
            request, error.status, error.code, error.message, error=error, headers=headers
        )

    return answer


def _headers(error: SatchelError) -> dict[str, str]:
    """The headers an error asks for: what its typed fields say, and what the HTTP layer
    put in ``details["headers"]`` itself."""
    extra = error.details.get("headers")
    headers = dict(extra) if isinstance(extra, Mapping) else {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if error.upload_offset is not None:
        headers["Upload-Offset"] = str(error.upload_offset)
    return headers


def _cause(exc: BaseException) -> str:
    """What aiohttp said was wrong: a payload error carries the parser's error."""
    inner: BaseException | None = exc
    while inner is not None and not isinstance(inner, HttpProcessingError):
        inner = inner.__cause__ or inner.__context__
    return (inner.message if inner is not None else "") or str(exc) or "cannot parse it"
