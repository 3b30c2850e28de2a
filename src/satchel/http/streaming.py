"""Writing response bodies: bytes, and ranges of stored objects by sendfile or by reads."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import web

from satchel import metrics
from satchel.blocking import blocking
from satchel.errors import BodyCut, PreconditionFailed, RangeNotSatisfiable
from satchel.http import requestid
from satchel.http.accesslog import DIRECT_BYTES
from satchel.http.keys import SETTINGS
from satchel.http.limits import download_shaper, finished
from satchel.http.observe import transfer
from satchel.ranges import Multipart, Outcome, Validators, content_range, evaluate, http_date
from satchel.storage.base import Reader, zero_copy
from satchel.throttle import Shaper


def plain_socket(transport: asyncio.Transport) -> socket.socket | None:
    """The transport's socket where bytes may go to and from it directly: not under TLS."""
    if transport.get_extra_info("sslcontext") is not None:
        return None
    sock: socket.socket | None = transport.get_extra_info("socket")
    return sock


async def fd_ready(fd: int | socket.socket, *, write: bool = False) -> None:
    """Wait until ``fd`` is readable (or writable). For a duplicate of a transport's
    socket: the loop allows one callback per descriptor, and the transport has it."""
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    if write:
        loop.add_writer(fd, wake)
    else:
        loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        if write:
            loop.remove_writer(fd)
        else:
            loop.remove_reader(fd)


class ResponseSink:
    """Writes to a prepared response and counts what went out.

    Ranges of a :class:`ZeroCopy` reader go out by ``os.sendfile`` driven by the
    socket's writability, on any event loop (uvloop has no ``loop.sendfile``). Other
    readers, or a transport without a plain socket (TLS), get reads in a thread. A
    peer that takes no bytes for ``send_timeout`` seconds is cut off. With a
    ``shaper`` every write and every sendfile call is a slice the speed limits
    allow, so a limited download stays zero-copy.
    """

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        *,
        use_sendfile: bool = True,
        chunk_size: int = 1024 * 1024,
        send_timeout: float = 60.0,
        shaper: Shaper | None = None,
    ) -> None:
        self._request = request
        self._response = response
        self._use_sendfile = use_sendfile
        self._chunk_size = chunk_size
        self._timeout = send_timeout
        self.shaper = shaper
        self.sent = 0

    @classmethod
    def for_request(cls, request: web.Request, response: web.StreamResponse) -> ResponseSink:
        """A sink configured from the application's settings."""
        settings = request.app[SETTINGS]
        return cls(
            request,
            response,
            use_sendfile=settings.sendfile,
            chunk_size=settings.chunk_size,
            send_timeout=settings.send_timeout,
            shaper=download_shaper(request),
        )

    async def write(self, data: bytes | bytearray) -> None:
        if len(data) >= DIRECT_WRITE and (direct := self._direct()) is not None:
            view = memoryview(data)
            await self._to_socket(
                *direct, len(data), lambda fd, at, n: os.write(fd, view[at : at + n])
            )
            return
        if self.shaper is None:
            return await self._write(data)
        view = memoryview(data)
        while view:
            allowed = await self.shaper.acquire(len(view))
            await self._write(view[:allowed])
            view = view[allowed:]

    async def _write(self, data: bytes | bytearray | memoryview) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await self._response.write(data)
        except TimeoutError as exc:
            raise self._stalled() from exc
        self.sent += len(data)

    def _direct(self) -> tuple[asyncio.Transport, int] | None:
        """The transport and its socket's descriptor where bytes may go to the socket
        directly: a plain socket, a body written as it is (not chunked, not compressed),
        and direct sending not turned off (``--no-sendfile``)."""
        transport = self._request.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Connection lost")
        if not self._use_sendfile or self._response.chunked or self._response.compression:
            return None  # aiohttp must frame or encode what is written
        sock = plain_socket(transport)
        return None if sock is None else (transport, sock.fileno())

    async def send(self, reader: Reader, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``reader`` from ``offset``; fewer if it shrank."""
        direct = self._direct()
        if direct is None or not zero_copy(reader):
            return await self._copy(reader, offset, count)
        fd = reader.fileno()
        return await self._to_socket(
            *direct, count, lambda sock, at, n: os.sendfile(sock, fd, offset + at, n)
        )

    async def _to_socket(
        self,
        transport: asyncio.Transport,
        sock_fd: int,
        count: int,
        put: Callable[[int, int, int], int],
    ) -> int:
        """Send ``count`` bytes by ``put(socket, done, most)``, a system call that sends
        at most ``most`` bytes from byte ``done`` on (0: nothing is left, a file shrank).
        Straight to the socket, not through the transport's buffer: the call lets other
        threads run while the kernel copies, which ``transport.write`` does not (a
        batch of small members is read in a thread meanwhile)."""
        fd = os.dup(sock_fd)  # for fd_ready: the transport owns the original
        sent = 0
        try:
            while transport.get_write_buffer_size():  # headers etc. go out first, in order
                await self._writable(fd)
            shaper = self.shaper
            while sent < count:
                allowed = count - sent if shaper is None else await shaper.acquire(count - sent)
                try:
                    n = put(fd, sent, allowed)
                except BlockingIOError:
                    if shaper is not None:
                        shaper.give_back(allowed)
                    await self._writable(fd)
                    continue
                except OSError as exc:
                    raise ConnectionResetError(f"sending: {exc.strerror}") from exc
                if shaper is not None:
                    shaper.give_back(allowed - n)
                if n == 0:
                    break  # the file is shorter than it was
                sent += n
                self.sent += n
            return sent
        finally:
            os.close(fd)
            # aiohttp counts only what went through its writer
            self._request[DIRECT_BYTES] = self._request.get(DIRECT_BYTES, 0) + sent

    async def _writable(self, fd: int) -> None:
        try:
            async with asyncio.timeout(self._timeout):
                await fd_ready(fd, write=True)
        except TimeoutError as exc:
            raise self._stalled() from exc

    def _stalled(self) -> ConnectionResetError:
        if self._request.transport is not None:
            self._request.transport.abort()
        return ConnectionResetError(f"the client took no bytes for {self._timeout:g} s")

    async def _copy(self, reader: Reader, offset: int, count: int) -> int:
        """By reads, the next read under way while a chunk is written: a reader over a
        network (S3) fetches while the socket sends. No read outlives the call. The
        reads of all copies at once share ``COPY_BUDGET``: 200 downloads from S3 read
        smaller chunks than one does, so memory stays bounded."""
        end, start = offset + count, offset

        def read_at(at: int) -> asyncio.Future[bytes]:
            size = min(_copy_chunk(self._chunk_size), end - at)
            return asyncio.ensure_future(blocking(reader.read, at, size))

        _copying[0] += 1
        pending: asyncio.Future[bytes] | None = read_at(offset)
        try:
            while pending is not None:
                data = await pending
                pending = None
                if not data:
                    break
                offset += len(data)
                if offset < end:
                    pending = read_at(offset)
                await self.write(data)
        finally:
            _copying[0] -= 1
            if pending is not None and not pending.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(pending)
        return offset - start


# Writes of this many bytes or more go straight to a plain socket (``ResponseSink.write``)
DIRECT_WRITE = 256 * 1024
COPY_BUDGET = 32 * 1024 * 1024  # bytes in reads and writes of all copies of a process
MIN_COPY_CHUNK = 64 * 1024
_copying = [0]  # copies running in this process


def _copy_chunk(chunk_size: int) -> int:
    """A copy's read size: its share of the budget (two chunks each: one read, one
    written), between 64 KiB and ``--chunk-size``."""
    return max(MIN_COPY_CHUNK, min(chunk_size, COPY_BUDGET // (2 * max(1, _copying[0]))))


Parts = Sequence[bytes | tuple[int, int]]
log = logging.getLogger("satchel.http")


@dataclass(frozen=True)
class Plan:
    """The answer to a GET or HEAD, decided before any byte is sent: the response, not
    yet prepared, and the parts of its body: literal bytes and (start, stop) of the
    representation. No parts: nothing to send (a 304, or a HEAD)."""

    response: web.StreamResponse
    parts: Parts = ()

    def reaches(self, end: int) -> bool:
        """Whether a part runs to ``end``, the representation's last byte."""
        return any(isinstance(part, tuple) and part[1] == end for part in self.parts)

    async def headers_only(self, request: web.Request) -> web.StreamResponse:
        """The answer of a plan without parts: its headers."""
        await self.response.prepare(request)
        return self.response


def plan_body(
    request: web.Request,
    validators: Validators,
    content_type: str,
    *,
    headers: dict[str, str] | None = None,
    body_headers: dict[str, str] | None = None,
) -> Plan:
    """Decide the response to a GET or HEAD before any byte is sent.

    ``headers`` go on every answer (with the validators), ``body_headers`` only on
    200 and 206. 412 and 416 are raised; otherwise the plan: the response (status,
    exact Content-Length, Content-Range or the multipart type) and the parts to send.
    """
    size = validators.size
    decision = evaluate(request.method, request.headers, validators)
    headers = {
        "ETag": validators.etag,
        "Last-Modified": http_date(validators.last_modified),
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, no-cache",
        "X-Content-Type-Options": "nosniff",
        **(headers or {}),
    }
    if (request_id := request.get(requestid.KEY)) is not None:  # prepared before it returns
        headers[requestid.HEADER] = request_id
    match decision.outcome:
        case Outcome.NOT_MODIFIED:
            return Plan(web.Response(status=304, headers=headers))
        case Outcome.PRECONDITION_FAILED:
            raise PreconditionFailed()
        case Outcome.UNSATISFIABLE:
            raise RangeNotSatisfiable(headers={"Content-Range": f"bytes */{size}"})
    headers = {**headers, **(body_headers or {})}
    ranges = decision.ranges or ((0, size),)
    parts: Parts = ranges
    if len(ranges) > 1:
        multipart = Multipart(f"satchel-{secrets.token_hex(12)}", content_type, size, ranges)
        headers["Content-Type"] = multipart.media_type
        parts, length = list(multipart.parts()), multipart.length  # callers may look first
    else:
        headers["Content-Type"] = content_type
        length = ranges[0][1] - ranges[0][0]
        if decision.outcome is Outcome.PARTIAL:
            headers["Content-Range"] = content_range(*ranges[0], size)
    response = web.StreamResponse(status=decision.outcome.value, headers=headers)
    response.content_length = length
    return Plan(response, () if request.method == "HEAD" else parts)


async def send_planned(
    request: web.Request,
    plan: Plan,
    sink: ResponseSink,
    send_range: Callable[[int, int], Awaitable[None]],
    kind: str,
    name: str,
) -> bool:
    """Prepare the plan's response and send its parts: literal bytes through ``sink``,
    each (start, stop) by ``send_range``; True if every byte went out. The transfer is
    a ``kind`` (archive, file) to the metrics and the drain; ``name`` is for the log.

    After the headers an error can only cut the connection: a client that went away is
    logged as an interrupted download; a :class:`BodyCut` as an error, and the
    connection is cut so the client cannot take a short body for a whole one.
    """
    length = plan.response.content_length
    what = f"{kind} {name}"
    try:
        with transfer(request, kind):
            await plan.response.prepare(request)
            for part in plan.parts:
                if isinstance(part, bytes):
                    await sink.write(part)
                else:
                    await send_range(*part)
            await plan.response.write_eof()
    except (ConnectionError, asyncio.CancelledError) as exc:
        log.info("Download was interrupted: %s after %d of %s bytes", what, sink.sent, length)
        if isinstance(exc, asyncio.CancelledError):
            raise
        return False
    except BodyCut as exc:
        log.error("Aborted %s after %d of %s bytes: %s", what, sink.sent, length, exc)
        if request.transport is not None:
            request.transport.abort()
        return False
    finally:
        metrics.SENT.labels(kind).inc(sink.sent)
        finished(request, "download", sink.shaper)
    return True
