"""Writing response bodies: bytes, and file ranges by sendfile with a read fallback."""

from __future__ import annotations

import asyncio
import os
from typing import BinaryIO

from aiohttp import web

from satchel.archive import blocking


class ResponseSink:
    """Writes to a prepared response and counts what went out.

    File ranges go by ``loop.sendfile`` (zero-copy) unless disabled; where the
    loop or transport cannot (uvloop, TLS) it falls back to reads in a thread,
    once, for the rest of the response.
    """

    def __init__(
        self,
        request: web.Request,
        response: web.StreamResponse,
        *,
        use_sendfile: bool = True,
        chunk_size: int = 1024 * 1024,
    ) -> None:
        self._request = request
        self._response = response
        self._use_sendfile = use_sendfile
        self._chunk_size = chunk_size
        self.sent = 0

    async def write(self, data: bytes) -> None:
        await self._response.write(data)
        self.sent += len(data)

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset``; fewer if the file shrank."""
        if self._use_sendfile:
            transport = self._request.transport
            if transport is None or transport.is_closing():
                raise ConnectionResetError("Connection lost")
            try:
                sent = await asyncio.get_running_loop().sendfile(
                    transport, file, offset, count, fallback=False
                )
            except (NotImplementedError, asyncio.SendfileNotAvailableError):
                self._use_sendfile = False
            else:
                self.sent += sent
                return sent
        return await self._copy(file, offset, count)

    async def _copy(self, file: BinaryIO, offset: int, count: int) -> int:
        fd, end, start = file.fileno(), offset + count, offset
        while offset < end:
            data = await blocking(os.pread, fd, min(self._chunk_size, end - offset), offset)
            if not data:
                break
            await self.write(data)
            offset += len(data)
        return offset - start
