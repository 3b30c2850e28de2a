"""Upload locks for a storage that has none of its own (an object store)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path

from satchel.errors import Locked


class FileLocks:
    """:class:`satchel.storage.base.UploadLocks` by ``flock`` on a lock file per upload
    in a local folder: it holds across the worker processes of one instance (one data
    folder), and a process that dies releases its locks."""

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
