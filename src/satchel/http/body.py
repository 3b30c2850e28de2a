"""Upload bodies: large ones straight off the socket, the rest through aiohttp's stream.

aiohttp hands a body over as a new ``bytes`` object per read, after two copies
(the loop's buffer, then the parser). For a large plain body Satchel reads the
socket itself, into the blocks it hashes and writes with O_DIRECT: one copy, out
of the kernel. That connection closes after its response, because aiohttp's
parser never saw the body and cannot find where the next request starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import sys
import termios
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

from aiohttp import web

from satchel import metrics
from satchel.errors import BadRequest, MalformedBody, PayloadTooLarge, UnsupportedMediaType
from satchel.files.intake import Body, ChunkBody
from satchel.http.keys import SETTINGS
from satchel.http.streaming import fd_ready, plain_socket
from satchel.throttle import Shaper

DIRECT_FROM = 1024 * 1024  # smaller bodies keep their connection alive
_WAKE_AT = 512 * 1024
_TAKEN = web.RequestKey("body_taken", bool)
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_DECODED_MAX = 256 * 1024
# What the server runs with, in production and in tests: see body_chunks.
SERVER_OPTIONS: dict[str, Any] = {"auto_decompress": False}


@contextlib.contextmanager
def request_body(request: web.Request, shaper: Shaper | None, kind: str) -> Iterator[Body]:
    """The request's body as a :class:`Body`, read off the socket where that is safe;
    what it brought is counted as received bytes of ``kind`` (upload, tus, member).

    Not for speed-limited uploads (a ``shaper``): they pay for each read before the
    next, and a read here can be a whole block.
    """
    stall = request.app[SETTINGS].read_timeout
    direct = None if shaper is not None else SocketBody.take(request, stall / 4)
    body: ChunkBody | SocketBody
    if direct is None:
        declared = request.content_length if _coding(request) == "identity" else None
        body = ChunkBody(body_chunks(request), declared)
    else:
        body = direct
    try:
        yield body
    finally:
        metrics.RECEIVED.labels(kind).inc(body.received)
        if direct is not None:
            direct.close()


async def body_chunks(request: web.Request) -> AsyncIterator[bytes]:
    """The body, decoded from its Content-Encoding.

    Satchel decodes bodies itself (aiohttp's ``auto_decompress`` is off, see
    SERVER_OPTIONS): aiohttp does not notice a gzip body cut short, and would store it.
    """
    coding = _coding(request)
    if coding == "identity":
        while chunk := await request.content.readany():
            yield chunk
        return
    if coding not in _WBITS:
        raise UnsupportedMediaType(
            f"Content-Encoding {coding!r} is not supported; send identity, gzip or deflate.",
            headers={"Accept-Encoding": "gzip, deflate"},
        )
    decoder: zlib._Decompress | None = None
    try:
        while chunk := await request.content.readany():
            if decoder is None:  # RFC 9110's deflate is zlib's format; some send it raw
                raw = coding == "deflate" and chunk[0] & 0x0F != 8
                decoder = zlib.decompressobj(-zlib.MAX_WBITS if raw else _WBITS[coding])
            while chunk:  # a block at a time, however well the body compresses
                yield decoder.decompress(chunk, _DECODED_MAX)
                chunk = decoder.unconsumed_tail
    except zlib.error as exc:
        raise MalformedBody(f"The body is not valid {coding}: {exc}.") from exc
    if decoder is None or not decoder.eof or decoder.unused_data:
        raise MalformedBody(f"The {coding} body is empty, cut short, or has bytes after its end.")


async def json_body(request: web.Request, limit: int) -> object:
    """A small JSON body, decoded (gzip and deflate too), whatever type it is labelled
    with (``curl -d`` says form-urlencoded), but a form of parts: that is 415. 413 past
    ``limit`` bytes, 400 for what does not parse."""
    if request.content_type.startswith("multipart/"):
        raise UnsupportedMediaType("Send the body as application/json, not as a form.")
    if (request.content_length or 0) > limit:
        raise PayloadTooLarge(f"The JSON body may be at most {limit} bytes.")
    data = bytearray()
    async for chunk in body_chunks(request):
        data += chunk
        if len(data) > limit:
            raise PayloadTooLarge(f"The JSON body may be at most {limit} bytes.")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError too; deep nesting
        raise BadRequest(f"The body is not JSON: {exc}.") from exc


def _coding(request: web.Request) -> str:
    return request.headers.get("Content-Encoding", "").strip().lower() or "identity"


def close_if_taken(request: web.Request, response: web.Response) -> web.Response:
    """Say ``Connection: close`` where the body was taken: aiohttp closes the connection
    after this response anyway, and a client must not send another request on it."""
    if request.get(_TAKEN):
        response.force_close()
    return response


class SocketBody:
    """A ``Content-Length`` body read from a duplicate of the connection's socket."""

    def __init__(
        self, sock: socket.socket, pending: list[bytes], left: int, progress_every: float
    ) -> None:
        self._sock = sock
        self._pending = memoryview(b"".join(pending))  # what aiohttp had read already
        self._left = left  # what is still in the socket
        self.received = 0
        self.declared: int | None = len(self._pending) + left
        self._progress_every = progress_every

    @classmethod
    def take(cls, request: web.Request, progress_every: float) -> SocketBody | None:
        """Take the body from aiohttp, or None where it must stay there: small,
        chunked, compressed (aiohttp decodes it), or not a plain socket (TLS)."""
        length = request.content_length
        transport = request.transport
        if (
            length is None
            or length < DIRECT_FROM
            or transport is None
            or transport.is_closing()
            or "Transfer-Encoding" in request.headers
            or _coding(request) != "identity"
            or (sock := plain_socket(transport)) is None
        ):
            return None
        # Drain what aiohttp holds. Reads and the end of the stream may resume the
        # transport (and parse bytes the parser held back), so stop the transport last;
        # no callback runs in between.
        stream = request.content
        pending: list[bytes] = []
        while data := stream.read_nowait():
            pending.append(data)
        request.protocol.close()  # ignore the socket from now on, close after the response
        stream.feed_eof()  # nothing more will come through aiohttp: do not wait for it
        transport.pause_reading()
        request[_TAKEN] = True
        left = length - sum(map(len, pending))
        sock = socket.socket(fileno=os.dup(sock.fileno()))
        return cls(sock, pending, left, progress_every)

    async def ready(self) -> None:
        if not self._pending and self._left:
            await self._readable(self._left)

    async def read_into(self, view: memoryview) -> int:
        if self._pending:
            n = min(len(view), len(self._pending))
            view[:n] = self._pending[:n]
            self._pending = self._pending[n:]
            self.received += n
            return n
        if not self._left:
            return 0
        want = view[: min(len(view), self._left)]
        while True:
            try:
                n = self._sock.recv_into(want)
            except BlockingIOError:
                await self._readable(len(want))
                continue
            except OSError as exc:
                raise ConnectionResetError(f"reading the body: {exc.strerror}") from exc
            if n == 0:
                raise ConnectionResetError("the client closed the connection mid-body")
            self._left -= n
            self.received += n
            return n

    async def _readable(self, wanted: int) -> None:
        """Wait until ``wanted`` bytes are there, or _WAKE_AT, whichever is fewer: waking
        for every 64 KiB costs more CPU than the rest of the upload path.

        A slow sender may take longer than the stall timeout to fill that much, so every
        ``progress_every`` s it returns anyway if any byte is waiting: the caller reads
        it, and the stall timer sees the progress.
        """
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, min(wanted, _WAKE_AT))
        while True:
            try:
                async with asyncio.timeout(self._progress_every):
                    return await fd_ready(self._sock)
            except TimeoutError:
                if self._waiting() > 0:
                    return

    def _waiting(self) -> int:
        """Bytes the kernel holds for us (SIOCINQ)."""
        queued = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return int.from_bytes(queued, sys.byteorder)

    def close(self) -> None:
        self._sock.close()
