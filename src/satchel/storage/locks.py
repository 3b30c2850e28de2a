"""Upload locks: one writer per resumable upload, across processes and instances.

- :class:`Locks` is what ``TusStore`` holds: async, so a lock may live in the database
  (``satchel.metadata.locks.PgLocks``, for instances that share no filesystem).
- :class:`Threaded` runs a storage's own blocking ``UploadLocks`` (locally ``flock``).
- :class:`FileLocks` are lock files in the data folder, for a storage without locks
  (S3) when there is no PostgreSQL: one instance, with any number of workers.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

from satchel.blocking import blocking, taken
from satchel.errors import Locked
from satchel.storage.base import UploadLocks

Release = Callable[[], Awaitable[None]]


class Locks(Protocol):
    async def acquire(self, key: str) -> Release:
        """Lock the upload without waiting; the coroutine function that releases it.
        ``Locked`` when another writer holds it; FileNotFoundError if it can tell
        there is no such upload. A caller cancelled meanwhile leaves nothing held."""
        ...


class Threaded:
    """:class:`Locks` from blocking ``UploadLocks``, called in threads."""

    def __init__(self, locks: UploadLocks) -> None:
        self._locks = locks

    async def acquire(self, key: str) -> Release:
        release = await taken(lambda release: release(), self._locks.acquire, key)

        async def released() -> None:
            await blocking(release)

        return released


class FileLocks:
    """``UploadLocks`` by ``flock`` on a lock file per upload in a local folder: it holds
    across the worker processes of one instance (one data folder), and a process that
    dies releases its locks."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def acquire(self, key: str) -> Callable[[], None]:
        path = self.directory / key
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o640)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                os.close(fd)
                raise Locked(retry_after=1) from exc
            try:  # a holder that released meanwhile unlinked the file we opened
                if os.stat(path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)

        def release() -> None:
            path.unlink(missing_ok=True)  # while still held: nobody locks it after
            os.close(fd)

        return release
