"""A ring of page-aligned blocks between the event loop and long-lived threads.

The event loop fills a free block and sends it to every stage: one thread hashes,
another writes, each working through the blocks in order. A block is free again
once every stage is done with it. Four blocks keep both threads busy while the
loop fills the next, and a thread that lives for the whole upload costs no
hand-off to an executor per block (bench/RESULTS.md).

Blocks are made as they are needed: a new one when none is free. The caller waits
for the client's next bytes before it takes a block, so for a client slower than
the threads the block it sent last is free again by then, and one block serves the
whole upload: fifty slow uploads hold 2 MiB each instead of 8.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import queue
import threading
from collections.abc import Callable, Sequence

Work = Callable[[memoryview], None]
_Item = tuple[memoryview, int] | None  # a block and how much of it is filled; None ends

BLOCKS = 4
BLOCK_SIZE = 2 * 1024 * 1024


class BlockRing:
    """``take`` a free block, fill it, ``send`` it to the stages; ``close`` at the end,
    or ``abort`` on an error. A stage's error is raised by the next ``take`` or by
    ``close``; after it, the stages skip the blocks still queued."""

    def __init__(self, stages: Sequence[Work], count: int = BLOCKS, size: int = BLOCK_SIZE):
        self._loop = asyncio.get_running_loop()
        self._free: asyncio.Queue[memoryview] = asyncio.Queue()
        self._size = size
        self._made, self._most = 0, count
        self._inboxes: list[queue.SimpleQueue[_Item]] = [queue.SimpleQueue() for _ in stages]
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._lock = threading.Lock()
        self._holders: dict[int, int] = {}  # id of a block -> stages yet to finish it
        self._running = len(stages)
        self._closed = False
        self._skip = False  # set on abort or after a stage's error
        self.failed: BaseException | None = None
        try:
            for inbox, work in zip(self._inboxes, stages, strict=True):
                threading.Thread(target=self._run, args=(inbox, work), daemon=True).start()
        except BaseException:  # no thread to be had: the ones started end at once
            self._end()
            raise

    async def take(self) -> memoryview:
        """A free block, or a new one while there are fewer than ``count``."""
        if self._free.empty() and self._made < self._most:
            block = self._make()
        else:
            block = await self._free.get()
        if self.failed is not None:
            raise self.failed
        return block

    def _make(self) -> memoryview:
        self._made += 1
        return memoryview(mmap.mmap(-1, self._size))  # page-aligned, as O_DIRECT wants

    def send(self, block: memoryview, length: int) -> None:
        """Hand the first ``length`` bytes of a taken block to the stages."""
        with self._lock:
            self._holders[id(block)] = len(self._inboxes)
        for inbox in self._inboxes:
            inbox.put((block, length))

    async def close(self) -> None:
        """Wait until every block sent has been through every stage."""
        self._end()
        await asyncio.shield(self._finished)
        if self.failed is not None:
            raise self.failed

    async def abort(self) -> None:
        """Drop the blocks still queued, and wait until the threads have let go of the
        ones they hold: their file must not be closed under them."""
        self._skip = True
        self._end()
        await asyncio.shield(self._finished)

    def _end(self) -> None:
        if not self._closed:
            self._closed = True
            for inbox in self._inboxes:
                inbox.put(None)

    def _run(self, inbox: queue.SimpleQueue[_Item], work: Work) -> None:
        while (item := inbox.get()) is not None:
            block, length = item
            if not self._skip:
                try:
                    work(block[:length])
                except BaseException as exc:  # raised on the event loop instead
                    self.failed = exc
                    self._skip = True
            with self._lock:
                self._holders[id(block)] -= 1
                free = not self._holders[id(block)]
            if free:
                self._notify(self._free.put_nowait, block)
        with self._lock:
            self._running -= 1
            finished = not self._running
        if finished:
            self._notify(self._finished.set_result, None)

    def _notify(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(fn, *args)
