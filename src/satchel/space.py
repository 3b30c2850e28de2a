"""The disk reserve: room for a write is what is free, less the reserve, less what was
promised to uploads still running.

The reserve is there so the database can always commit: on a full disk SQLite cannot
write a row, and then nothing, not even a delete, could free space again. So every
write path asks here before it reads a byte, and again as it writes:

- a body of known length promises its rest while it runs (this process's ledger);
- an unfinished resumable upload of known length promises its rest until it ends or
  expires (the database, so every process sees it);
- a body of unknown length promises nothing, and is held to what is left as it grows.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from satchel.blocking import blocking
from satchel.errors import InsufficientStorage
from satchel.metadata.db import database_full

log = logging.getLogger("satchel.space")
_T = TypeVar("_T")

_CHECK_AT_MOST_EVERY = 64 * 1024 * 1024


class Space:
    def __init__(
        self,
        free_bytes: Callable[[], int],
        reserve: int,
        unfinished: Callable[[], Awaitable[int]] | None = None,
        ballast: Ballast | None = None,
    ) -> None:
        """``free_bytes``: blocking, the filesystem's free bytes. ``unfinished``: the
        bytes still to come of unfinished resumable uploads (asked at most once a
        second: it is a database query, and admission is on every upload's path).
        ``ballast``: room held back for the database's deletes (see :class:`Ballast`)."""
        self._free_bytes = free_bytes
        self.reserve = reserve
        self._unfinished = unfinished
        self._unfinished_seen: tuple[float, int] = (-1.0, 0)  # (monotonic time, bytes)
        self._ballast = ballast
        self._running: dict[int, int] = {}  # promise -> bytes still to come
        self._ids = itertools.count()
        # How often a growing body looks again: often enough that a small reserve
        # is not overrun between two looks, and no more than every 64 MiB.
        self.check_every = min(_CHECK_AT_MOST_EVERY, max(1024 * 1024, reserve // 4))

    async def admit(self, length: int | None, *, own: int = 0) -> None:
        """507 unless ``length`` more bytes fit above the reserve beside every promise;
        ``own``: the part of those promises that is the caller's (a tus upload's rest)."""
        promised = sum(self._running.values()) + await self._unfinished_rest() - own
        if await blocking(self._free_bytes) - promised - (length or 0) < self.reserve:
            raise InsufficientStorage()

    def promises_changed(self) -> None:
        """A resumable upload began, was given its length, ended or went, here: ask the
        database next time (other processes see it within a second)."""
        self._unfinished_seen = (-1.0, 0)

    async def _unfinished_rest(self) -> int:
        if self._unfinished is None:
            return 0
        seen, rest = self._unfinished_seen
        if time.monotonic() - seen > 1.0:
            rest = await self._unfinished()
            self._unfinished_seen = (time.monotonic(), rest)
        return rest

    @contextlib.asynccontextmanager
    async def promise(self, length: int | None) -> AsyncIterator[Promise]:
        """While a body of ``length`` bytes (None: unknown) runs, its rest is promised;
        507 unless it fits above the reserve beside the promises made before it. The free
        bytes are read first, then the check and the promise are one step with nothing
        awaited between: bodies that come together cannot all count on the same room
        (each would see the others' promises, and all be refused)."""
        free = await blocking(self._free_bytes)
        if free - sum(self._running.values()) - (length or 0) < self.reserve:
            raise InsufficientStorage()
        key = next(self._ids)
        self._running[key] = length or 0
        try:
            yield Promise(self, key)
        finally:
            del self._running[key]

    async def freeing(self, write: Callable[[], Awaitable[_T]]) -> _T:
        """A database write that frees space (a delete): done even on a full disk."""
        return await (write() if self._ballast is None else self._ballast.freeing(write))

    async def refill(self) -> None:
        """Make the ballast again, where it was given up and there is room."""
        if self._ballast is not None:
            await blocking(self._ballast.ensure)

    async def check(self, unwritten: int = 0) -> None:
        """While writing: 507 once the promises, and the ``unwritten`` bytes a body has
        received but not yet written, no longer fit above the reserve."""
        promised = sum(self._running.values()) + unwritten
        if await blocking(self._free_bytes) - promised < self.reserve:
            raise InsufficientStorage()


class Promise:
    """One running body's share of the ledger."""

    def __init__(self, space: Space, key: int) -> None:
        self.space = space
        self._key = key

    def took(self, size: int) -> None:
        """``size`` bytes arrived: that much less is still to come."""
        running = self.space._running
        running[self._key] = max(0, running[self._key] - size)


class Ballast:
    """A file that holds room for the database's last writes.

    Satchel's own writes stop at the reserve, but another program (or no reserve) can
    fill the disk to its last block, and then SQLite cannot even delete a row. Deleting
    is the cure, so a delete that fails for want of space gives this file up and tries
    once more; the file is made again when there is room.
    """

    SIZE = 1024 * 1024

    def __init__(self, path: Path) -> None:
        self.path = path

    def ensure(self) -> None:
        """Blocking: make the file if it is missing and the disk has room for it."""
        if self.path.exists():
            return
        temp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, self.SIZE)
            finally:
                os.close(fd)
            os.replace(temp, self.path)
        except OSError:
            temp.unlink(missing_ok=True)  # no room yet: next time

    async def freeing(self, write: Callable[[], Awaitable[_T]]) -> _T:
        """``write()``; if the database had no room, once more after giving this up."""
        try:
            return await write()
        except Exception as exc:
            if not database_full(exc) or not await blocking(self._release):
                raise
            log.warning("The disk is full: gave up the ballast file to let a delete commit")
        return await write()

    def _release(self) -> bool:
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        return True
