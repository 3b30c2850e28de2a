"""Local storage: files kept by id under <data>/files, written durably.

Every method blocks; async code calls them through ``satchel.archive.blocking``.
A file becomes visible only through ``commit``: temp file, fsync, rename into
place, fsync of the directory. A crash leaves either no file or a whole one;
leftover temp files are removed by ``sweep_temp`` at start.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

# zlib-ng's CRC-32, not ISA-L's: both take about 0.02 s a GiB, but ISA-L's returns with
# the upper vector registers dirty, and SHA-256 (SHA-NI) then runs about 35% slower in
# that thread, for the rest of its life (bench/RESULTS.md).
from zlib_ng.zlib_ng import crc32

log = logging.getLogger("satchel.storage")


ALIGN = 4096  # O_DIRECT wants buffers, sizes and offsets aligned to the block size


class Digests:
    """SHA-256 and CRC-32 of the bytes so far, and how many there were."""

    def __init__(self) -> None:
        self.size = 0
        self.crc32 = 0
        self._sha256 = hashlib.sha256()

    def update(self, block: memoryview | bytes) -> None:
        self._sha256.update(block)
        self.crc32 = crc32(block, self.crc32)
        self.size += len(block)

    @property
    def sha256(self) -> bytes:
        return self._sha256.digest()


class TempFile:
    """A file being received in blocks; hashes them (SHA-256, CRC-32) as they come.

    The caller hands over blocks in page-aligned memory, each a multiple of 4 KiB
    but the last. Where the filesystem allows it they are written with O_DIRECT,
    straight from the caller's memory: on this kind of VM, filling fresh page-cache
    pages runs at 0.35–0.42 GB/s while direct writes reach 2.3–2.5 GB/s
    (bench/RESULTS.md). A short last block's tail goes through the page cache;
    ``finish`` fsyncs either way.
    """

    def __init__(self, directory: Path) -> None:
        self.path = directory / f"{secrets.token_hex(16)}.part"
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        self.size = 0
        self._digests = Digests()
        try:  # set after creating: a failed O_DIRECT open could leave the file behind
            fcntl.fcntl(self._fd, fcntl.F_SETFL, os.O_WRONLY | os.O_DIRECT)
            self._direct = True
        except OSError:  # no direct I/O here (tmpfs, some network filesystems)
            self._direct = False

    def digest(self, block: memoryview) -> None:
        """Hash a block (may run in one thread while ``store`` runs in another)."""
        self._digests.update(block)

    def store(self, block: memoryview) -> None:
        """Write a block out."""
        if self.size % ALIGN:
            raise ValueError("only the last block may be shorter than a multiple of 4 KiB")
        self.size += len(block)
        if self._direct:
            aligned = len(block) - len(block) % ALIGN
            self._write_out(block[:aligned])
            if aligned == len(block):
                return
            assert self._fd is not None
            fcntl.fcntl(self._fd, fcntl.F_SETFL, os.O_WRONLY)  # the unaligned tail
            self._direct = False
            block = block[aligned:]
        self._write_out(block)

    def _write_out(self, view: memoryview) -> None:
        assert self._fd is not None
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    @property
    def sha256(self) -> bytes:
        return self._digests.sha256

    @property
    def crc32(self) -> int:
        return self._digests.crc32

    def finish(self) -> None:
        """Flush to stable storage and close."""
        assert self._fd is not None
        os.fsync(self._fd)
        os.close(self._fd)
        self._fd = None

    def discard(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)


class Appender:
    """Writes blocks one after another into an open file, from ``offset`` on.

    A block that starts at a 4 KiB boundary, in page-aligned memory, goes out with
    O_DIRECT where the filesystem allows it, all but its unaligned tail; the rest
    through the page cache. The caller fsyncs. ``written``: bytes written so far.
    """

    def __init__(self, path: Path, fd: int, offset: int) -> None:
        self._fd = fd
        self._offset = offset
        self.written = 0
        try:
            self._direct: int | None = os.open(path, os.O_WRONLY | os.O_DIRECT)
        except OSError:  # no direct I/O here
            self._direct = None

    def write(self, block: memoryview) -> None:
        if self._direct is not None and (self._offset + self.written) % ALIGN == 0:
            aligned = len(block) - len(block) % ALIGN
            self._pwrite(self._direct, block[:aligned])
            block = block[aligned:]
        self._pwrite(self._fd, block)

    def _pwrite(self, fd: int, view: memoryview) -> None:
        while view:
            n = os.pwrite(fd, view, self._offset + self.written)
            self.written += n
            view = view[n:]

    def close(self) -> None:
        if self._direct is not None:
            os.close(self._direct)
            self._direct = None


def hash_file(path: Path, chunk_size: int = 1024 * 1024) -> Digests:
    """The SHA-256 and CRC-32 of a file's bytes."""
    digests = Digests()
    with path.open("rb", buffering=0) as f:
        while chunk := f.read(chunk_size):
            digests.update(chunk)
    return digests


def free_bytes(path: Path) -> int:
    """Blocking: the bytes free to us on the filesystem of ``path``."""
    return shutil.disk_usage(path).free


def disk_full(exc: BaseException) -> bool:
    """The error a write gets when the filesystem (or the user's quota) has no room."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStorage:
    def __init__(self, data: Path) -> None:
        self.root = data / "files"
        self.tmp = data / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, file_id: str) -> Path:
        return self.root / file_id[:2] / file_id

    def create(self) -> TempFile:
        return TempFile(self.tmp)

    def commit(self, temp: TempFile, file_id: str) -> Path:
        """Make a finished temp file durable under its id; after this a crash keeps it."""
        return self._place(file_id, lambda target: os.rename(temp.path, target))

    def link(self, source: Path, file_id: str) -> Path:
        """Make a finished file (on the same filesystem) durable under its id; idempotent."""

        def hard_link(target: Path) -> None:
            with contextlib.suppress(FileExistsError):  # a retry after a crash: it was made
                os.link(source, target)

        return self._place(file_id, hard_link)

    def _place(self, file_id: str, put: Callable[[Path], None]) -> Path:
        """``put`` the file at its id's path, then fsync the directories that name it."""
        target = self.path(file_id)
        target.parent.mkdir(exist_ok=True)
        put(target)
        fsync_dir(target.parent)
        fsync_dir(self.root)
        return target

    def remove(self, file_id: str) -> None:
        self.path(file_id).unlink(missing_ok=True)

    def ids_older_than(self, cutoff: float) -> list[str]:
        """Ids of stored files last modified before ``cutoff`` (a Unix time)."""
        return [
            p.name
            for shard in self.root.iterdir()
            if shard.is_dir()
            for p in shard.iterdir()
            if p.is_file() and p.stat().st_mtime < cutoff
        ]

    def sweep_temp(self, cutoff: float) -> int:
        """Remove temp files untouched since ``cutoff``: uploads a crash or a stall left."""
        count = 0
        for leftover in self.tmp.glob("*.part"):
            try:
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    count += 1
            except FileNotFoundError:
                continue
        return count

    def free_bytes(self) -> int:
        return free_bytes(self.root)
