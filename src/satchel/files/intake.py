"""A request body as it arrives: read into the ring's blocks by the one :class:`Pump`
of every upload path, held by an :class:`Intake` to the stall timer, the speed limit
and the space ledger."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from satchel.space import Promise
from satchel.storage.ring import BLOCK_SIZE, BLOCKS, BlockRing
from satchel.throttle import Shaper

RING_BYTES = BLOCKS * BLOCK_SIZE


class Body(Protocol):
    """A request body, read into the caller's memory."""

    declared: int | None  # its length, where the client said it

    async def ready(self) -> None:
        """Wait until there are bytes to read, or the body has ended."""
        ...

    async def read_into(self, view: memoryview) -> int:
        """Fill the start of ``view``: how many bytes, 0 at the end of the body."""
        ...


class ChunkBody:
    """A body that arrives as chunks (aiohttp's stream, a multipart part), copied in."""

    def __init__(self, chunks: AsyncIterator[bytes], declared: int | None = None) -> None:
        self._chunks = chunks
        self.declared = declared
        self._left = memoryview(b"")
        self.received = 0  # bytes read so far

    async def ready(self) -> None:
        if not self._left:
            self._left = memoryview(await anext(self._chunks, b""))

    async def read_into(self, view: memoryview) -> int:
        await self.ready()
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        self.received += n
        return n


class Pump:
    """The one loop of every upload path: fill the ring's blocks from a body.

    ``block`` and ``filled``: a block taken from the ring and not yet sent, and how much
    of it holds body bytes, for a caller that keeps what arrived when a body is cut.
    """

    def __init__(self, ring: BlockRing) -> None:
        self._ring = ring
        self.block: memoryview | None = None
        self.filled = 0

    async def run(
        self,
        body: Body,
        intake: Intake,
        room: int,
        too_large: Callable[[], Exception],
        first: int = BLOCK_SIZE,
    ) -> None:
        """Until the body ends; ``too_large()`` is raised past ``room`` bytes. The first
        block holds ``first`` bytes (so that the next ones start aligned), the rest a
        whole block each."""
        size = first
        while True:
            await body.ready()  # then take a block: see BlockRing
            block = self.block = await self._ring.take()
            self.filled = 0
            while self.filled < size and (n := await body.read_into(block[self.filled : size])):
                await intake.took(n)
                if intake.received > room:
                    raise too_large()
                self.filled += n
            self._ring.send(block, self.filled)
            self.block = None
            if self.filled < size:
                return
            size = BLOCK_SIZE


class Intake:
    """One request body as it arrives: call ``took`` for every chunk received.

    - One deadline for the whole body, pushed forward as bytes arrive, at most every
      stall/8 s (a timer per chunk would cost more than the hashing).
    - Each chunk is paid for under the speed limit before the next is read, so TCP
      back-pressure slows the sender; time spent waiting for the limit is not a stall.
    - Free space is checked as it grows (see :class:`Space`).
    """

    def __init__(
        self,
        stall: float,
        deadline: asyncio.Timeout,
        shaper: Shaper | None,
        promise: Promise,
    ) -> None:
        self._deadline = deadline
        self._shaper = shaper
        self._promise = promise
        self._stall = stall
        self._clock = asyncio.get_running_loop().time
        self._pushed = self._clock()
        self._next_space_check = promise.space.check_every
        self.received = 0

    async def took(self, size: int) -> None:
        if self._shaper is not None:
            self._deadline.reschedule(None)
            await self._shaper.consume(size)
            self._push()
        elif self._clock() - self._pushed > self._stall / 8:
            self._push()
        self.received += size
        self._promise.took(size)
        if self.received >= self._next_space_check:
            self._next_space_check += self._promise.space.check_every
            # The ring may hold what arrived and is not yet written: count it as written.
            await self._promise.space.check(unwritten=min(self.received, RING_BYTES))

    def _push(self) -> None:
        self._pushed = self._clock()
        self._deadline.reschedule(self._pushed + self._stall)
