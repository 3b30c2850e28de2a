"""A ring of page-aligned blocks between the event loop and two long-lived threads.

The event loop fills a free block and sends it on; the first stage's thread (hash)
and then the second's (write) work on it, each block in order; then it is free
again. On this kind of VM a bare receiver with SHA-256 + CRC-32 in one thread and
O_DIRECT writes in another ran 0.80–0.99 GB/s with 2 blocks of 4 MiB and 0.94–1.05
with 8 of 1 MiB (bench/RESULTS.md): small blocks keep every stage busy, and a
thread that lives for the whole upload costs no hand-off to an executor per block.
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
    """``take`` a free block, fill it, ``send`` it through the stages; ``close`` at the
    end, or ``abort`` on an error. A stage's error is raised by the next ``take`` or by
    ``close``; after it, the stages skip the blocks still queued."""

    def __init__(self, stages: Sequence[Work], count: int = BLOCKS, size: int = BLOCK_SIZE):
        self._memory = mmap.mmap(-1, count * size)  # page-aligned, as O_DIRECT wants
        view = memoryview(self._memory)
        self._loop = asyncio.get_running_loop()
        self._free: asyncio.Queue[memoryview] = asyncio.Queue()
        for start in range(0, count * size, size):
            self._free.put_nowait(view[start : start + size])
        self._inboxes: list[queue.SimpleQueue[_Item]] = [queue.SimpleQueue() for _ in stages]
        self._finished: asyncio.Future[None] = self._loop.create_future()
        self._closed = False
        self._skip = False  # set on abort or after a stage's error
        self.failed: BaseException | None = None
        for number, work in enumerate(stages):
            threading.Thread(
                target=self._run, args=(number, work), name=f"ring-{number}", daemon=True
            ).start()

    async def take(self) -> memoryview:
        block = await self._free.get()
        if self.failed is not None:
            raise self.failed
        return block

    def send(self, block: memoryview, length: int) -> None:
        """Hand the first ``length`` bytes of a taken block to the stages."""
        self._inboxes[0].put((block, length))

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
            self._inboxes[0].put(None)

    def _run(self, number: int, work: Work) -> None:
        inbox = self._inboxes[number]
        last = number == len(self._inboxes) - 1
        while (item := inbox.get()) is not None:
            block, length = item
            if not self._skip:
                try:
                    work(block[:length])
                except BaseException as exc:  # raised on the event loop instead
                    self.failed = exc
                    self._skip = True
            if last:
                self._notify(self._free.put_nowait, block)
            else:
                self._inboxes[number + 1].put(item)
        if last:
            self._notify(self._finished.set_result, None)
        else:
            self._inboxes[number + 1].put(None)

    def _notify(self, fn: Callable[..., object], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(fn, *args)
