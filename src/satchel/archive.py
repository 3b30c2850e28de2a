"""Folder -> archive: safe scanning, the manifest, CRC cache, and streaming.

The pure engine (``satchel.zipstream``) says which bytes go where; this module
reads files (always through :func:`blocking`), keeps CRC-32 values in the
cache, and pushes any byte range of an archive into a :class:`Sink`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import logging
import os
import re
import stat
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from zlib_ng.zlib_ng import crc32

from satchel.blocking import blocking
from satchel.errors import ArchiveChanged, ArchiveNotFound, BadRequest, Conflict
from satchel.space import Space
from satchel.storage.local import TempFile
from satchel.zipstream import Layout, Limits, Member, Part, arrange
from satchel.zipstream.names import segment_reason, unsafe_reason

log = logging.getLogger("satchel.archive")

LOOK_AHEAD = 2  # entries whose CRCs are computed while the current body is sent
FOLDER_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


@dataclass(frozen=True, slots=True)
class FileVersion:
    """What makes a CRC valid: the file's name in its folder and its identity."""

    name: str
    size: int
    mtime_ns: int
    inode: int  # signed 64-bit, as the database stores it


@dataclass(frozen=True, slots=True)
class CrcEntry:
    version: FileVersion
    crc: int


class CrcRepo(Protocol):
    """Where CRC-32 values of folder members are remembered."""

    async def load(self, folder: str) -> dict[FileVersion, int]:
        """Every remembered CRC of ``folder``, keyed by file version."""
        ...

    async def save(self, folder: str, entries: Sequence[CrcEntry]) -> None:
        """Remember these CRCs, replacing older versions of the same names."""
        ...


@dataclass(frozen=True, slots=True)
class SourceFile:
    version: FileVersion
    path: str  # absolute path to open


@dataclass(frozen=True, slots=True)
class Manifest:
    folder: str
    files: tuple[SourceFile, ...]  # in archive order
    layout: Layout
    etag: str
    last_modified: int


def _signed(ino: int) -> int:
    return ino - (1 << 64) if ino >= 1 << 63 else ino


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def scan_folder(root: Path, folder: str) -> tuple[list[SourceFile], int]:
    """Regular files under ``root/folder``, recursively, and the folder's mtime.

    Blocking. Raises ArchiveNotFound for a bad name or a missing folder. Symlinks
    are followed only while they stay inside ``root``; anything that is not a
    regular file or a folder is skipped (and logged).
    """
    if not FOLDER_RE.fullmatch(folder):
        raise ArchiveNotFound(folder=folder)
    real_root = os.path.realpath(root)
    base = os.path.realpath(os.path.join(real_root, folder))
    if base == real_root or not _inside(real_root, base) or not os.path.isdir(base):
        raise ArchiveNotFound(folder=folder)
    base_stat = os.stat(base)
    files: list[SourceFile] = []
    seen_dirs = {(base_stat.st_dev, base_stat.st_ino)}
    pending = [(base, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError as exc:
            log.warning("Skipping unreadable folder %s: %s", directory, exc)
            continue
        for entry in entries:
            name = prefix + entry.name
            found = _inspect(real_root, entry, name)
            if found is None:
                continue
            path, st = found
            if stat.S_ISDIR(st.st_mode):
                if (st.st_dev, st.st_ino) not in seen_dirs:
                    seen_dirs.add((st.st_dev, st.st_ino))
                    pending.append((path, name + "/"))
            else:
                version = FileVersion(name, st.st_size, st.st_mtime_ns, _signed(st.st_ino))
                files.append(SourceFile(version, path))
    return files, base_stat.st_mtime_ns // 1_000_000_000


def _inspect(
    real_root: str, entry: os.DirEntry[str], name: str
) -> tuple[str, os.stat_result] | None:
    """(path to open, its stat) for a folder or regular file we may serve, else None."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        log.warning("Skipping %r: its name is not valid UTF-8", entry.path)
        return None
    reason = segment_reason(entry.name)  # the folders above it were checked on the way
    if reason is not None:
        log.warning("Skipping %r: %s", entry.path, reason)
        return None
    path = entry.path
    try:
        if entry.is_symlink():
            path = os.path.realpath(entry.path)
            if not _inside(real_root, path):
                log.warning("Skipping symlink %s: it points outside the photos root", entry.path)
                return None
        st = os.stat(path)
    except OSError as exc:
        log.warning("Skipping %s: %s", entry.path, exc)
        return None
    if stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and os.access(path, os.R_OK)):
        return path, st
    log.warning("Skipping %s: not a readable regular file", entry.path)
    return None


def build_manifest(
    folder: str, files: Sequence[SourceFile], folder_mtime: int, limits: Limits = Limits()
) -> Manifest:
    by_name = {f.version.name: f for f in files}
    members = arrange(
        [Member(f.version.name, f.version.size, f.version.mtime_ns // 10**9) for f in files],
        limits,
    )
    ordered = tuple(by_name[m.name] for m in members)
    digest = hashlib.sha256(f"{limits.zip64_at}:{limits.max_entries}\n".encode())
    for f in ordered:
        v = f.version
        digest.update(f"{v.name}\0{v.size}\0{v.mtime_ns}\0{v.inode}\n".encode())
    last_modified = max((m.mtime for m in members), default=folder_mtime)
    return Manifest(
        folder, ordered, Layout(members, limits), f'"{digest.hexdigest()[:40]}"', last_modified
    )


# -- streaming ---------------------------------------------------------------------------


class Sink(Protocol):
    """Where archive bytes go: an HTTP response in production, a buffer in tests."""

    async def write(self, data: bytes) -> None: ...

    async def sendfile(self, file: BinaryIO, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``file`` from ``offset``; fewer if the file shrank."""
        ...


class _OpenFile:
    """One member's file. Blocking methods; a lock makes open, read and close exclusive.

    Async callers may be cancelled while a thread runs one of these; the lock and
    the ``closed`` flag make a late ``open`` after ``close`` a no-op, never a leak.
    """

    def __init__(self, index: int, source: SourceFile) -> None:
        self.index = index
        self.source = source
        self.file: BinaryIO | None = None
        self._closed = False
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open and check the file is still the version in the manifest."""
        with self._lock:
            if self._closed:
                return
            try:
                self.file = open(self.source.path, "rb", buffering=0)  # noqa: SIM115
            except OSError as exc:
                raise ArchiveChanged(f"{self.source.version.name}: {exc}") from exc
            self._verify()

    def verify(self) -> None:
        with self._lock:
            self._verify()

    def _verify(self) -> None:
        if self.file is None:
            raise ArchiveChanged(f"{self.source.version.name} was closed")
        st = os.fstat(self.file.fileno())
        v = self.source.version
        if st.st_nlink == 0:
            raise ArchiveChanged(f"{v.name} was removed while the archive was being sent")
        if (st.st_size, st.st_mtime_ns, _signed(st.st_ino)) != (v.size, v.mtime_ns, v.inode):
            raise ArchiveChanged(f"{v.name} changed while the archive was being sent")

    def crc(self, chunk_size: int) -> int:
        """CRC-32 of the whole file, then check it did not change meanwhile."""
        with self._lock:
            if self.file is None:
                raise ArchiveChanged(f"{self.source.version.name} was closed")
            buf = bytearray(chunk_size)
            view = memoryview(buf)
            crc, offset, size = 0, 0, self.source.version.size
            while offset < size:
                n = os.preadv(self.file.fileno(), [view[: min(chunk_size, size - offset)]], offset)
                if n == 0:
                    raise ArchiveChanged(f"{self.source.version.name} shrank while being read")
                crc = crc32(view[:n], crc)
                offset += n
            self._verify()
            return crc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self.file is not None:
                self.file.close()
                self.file = None


def _retire_and_open(previous: _OpenFile | None, following: _OpenFile | None) -> None:
    if previous is not None:
        try:
            previous.verify()
        finally:
            previous.close()
    if following is not None:
        following.open()


def _crc_of(opened: _OpenFile, chunk_size: int) -> int:
    opened.open()
    return opened.crc(chunk_size)


def _close_all(files: list[_OpenFile]) -> None:
    for opened in files:
        opened.close()


@dataclass
class ArchiveSender:
    """Streams byte ranges of one archive into a sink, computing missing CRCs."""

    manifest: Manifest
    known: dict[FileVersion, int]
    sink: Sink
    chunk_size: int = 1024 * 1024
    delay: float = 0.0
    computed: list[CrcEntry] = field(default_factory=list)
    _crcs: dict[int, int] = field(default_factory=dict)
    _open: _OpenFile | None = None
    # Files of the next entries, their CRCs being computed in threads while the
    # current body goes out: the CRC work overlaps the kernel's copy.
    _ahead: dict[int, tuple[_OpenFile, asyncio.Future[int]]] = field(default_factory=dict)
    _stop: int = 0

    async def send(self, start: int, stop: int) -> None:
        layout = self.manifest.layout
        self._stop = stop
        for piece in layout.pieces(start, stop):
            if piece.part is Part.LOCAL:
                header = layout.local_header(piece.index, await self._crc(piece.index))
                await self._write(header[piece.start : piece.stop])
            elif piece.part is Part.DATA:
                await self._send_body(piece.index, piece.start, piece.length)
            else:
                if self._open is not None:  # the last body must be intact before the end
                    await self._switch(None, open_it=False)
                if piece.part is Part.CENTRAL:
                    await self._send_central(piece.start, piece.stop)
                else:
                    await self._write(layout.end_records()[piece.start : piece.stop])
        if self._open is not None:  # a range that ends inside the entries
            await blocking(self._open.verify)

    async def close(self) -> None:
        """Close every file this sender opened, even if the caller is being cancelled."""
        files = [self._open] if self._open is not None else []
        for opened, task in self._ahead.values():
            files.append(opened)
            task.cancel()
        self._open = None
        self._ahead.clear()
        if files:
            # One shielded call, scheduled at once: cancelling us cannot stop it.
            await asyncio.shield(blocking(_close_all, files))

    async def _switch(self, following: _OpenFile | None, *, open_it: bool = True) -> None:
        """Make ``following`` the current file in one thread hop: check the previous
        file was not changed while it was sent, close it, open the next one."""
        previous, self._open = self._open, following  # close() now covers both
        if previous is None and not open_it:
            return
        # Shielded: once scheduled it runs to the end, so nothing is left open.
        await asyncio.shield(blocking(_retire_and_open, previous, following if open_it else None))

    async def _file(self, index: int) -> _OpenFile:
        if self._open is None or self._open.index != index:
            await self._switch(_OpenFile(index, self.manifest.files[index]))
        assert self._open is not None
        return self._open

    async def _crc(self, index: int) -> int:
        if index in self._crcs:
            return self._crcs[index]
        version = self.manifest.files[index].version
        crc = self.known.get(version)
        if crc is None:
            if index in self._ahead:
                following, task = self._ahead.pop(index)  # adopt its open file for the body
                await self._switch(following, open_it=False)
                crc = await task
            else:
                opened = await self._file(index)
                crc = await blocking(opened.crc, self.chunk_size)
            self.computed.append(CrcEntry(version, crc))
        self._crcs[index] = crc
        return crc

    def _look_ahead(self, index: int) -> None:
        """Start CRCs of the next entries whose headers the range reaches."""
        layout, files = self.manifest.layout, self.manifest.files
        for following in range(index + 1, min(index + 1 + LOOK_AHEAD, len(files))):
            source = files[following]
            if layout.entries[following].offset >= self._stop:
                return
            if following in self._ahead or following in self._crcs or source.version in self.known:
                continue
            opened = _OpenFile(following, source)
            task = asyncio.ensure_future(blocking(_crc_of, opened, self.chunk_size))
            # A failure surfaces when the entry is reached; if it never is, stay quiet.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._ahead[following] = (opened, task)

    async def _send_central(self, start: int, stop: int) -> None:
        layout = self.manifest.layout
        batch = bytearray()
        for index in layout.central_entries(start, stop):
            at = layout.entries[index].central_at
            record = layout.central_record(index, await self._crc(index))
            batch += record[max(start - at, 0) : max(stop - at, 0)]
            if len(batch) >= 64 * 1024:
                await self._write(bytes(batch))
                batch.clear()
        if batch:
            await self._write(bytes(batch))

    async def _send_body(self, index: int, offset: int, count: int) -> None:
        opened = await self._file(index)
        self._look_ahead(index)
        assert opened.file is not None
        if self.delay == 0:
            sent = await self.sink.sendfile(opened.file, offset, count)
            self._log_chunk(sent)
            if sent != count:
                raise ArchiveChanged(f"{opened.source.version.name} shrank while being sent")
            return
        fd = opened.file.fileno()  # with a per-chunk delay: chunk by chunk, pausing
        end = offset + count
        while offset < end:
            data = await blocking(os.pread, fd, min(self.chunk_size, end - offset), offset)
            if not data:
                raise ArchiveChanged(f"{opened.source.version.name} shrank while being sent")
            await self._write(data)
            offset += len(data)

    async def _write(self, data: bytes) -> None:
        await self.sink.write(data)
        self._log_chunk(len(data))
        if self.delay:
            await asyncio.sleep(self.delay)

    def _log_chunk(self, size: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Sending archive %s chunk %d bytes", self.manifest.folder, size)


@dataclass(frozen=True)
class Archives:
    """The archive service: where folders live and where their CRCs are kept."""

    root: Path
    store: CrcRepo
    limits: Limits = Limits()
    space: Space | None = None  # the photos root's room, for files written into folders

    async def remember(self, folder: str, name: str, st: os.stat_result, crc: int) -> None:
        """Cache the CRC of a file just written into a folder (it was computed on the way in)."""
        version = FileVersion(name, st.st_size, st.st_mtime_ns, _signed(st.st_ino))
        await self.store.save(folder, [CrcEntry(version, crc)])

    async def manifest(self, folder: str) -> Manifest:
        """Scan the folder (stat only, no reads) and plan its archive."""
        files, folder_mtime = await blocking(scan_folder, self.root, folder)
        return build_manifest(folder, files, folder_mtime, self.limits)


# -- writing into folders (PUT /archive/<folder>/<path>) ------------------------------

TEMP_DIR = ".satchel-tmp"  # under the photos root: same filesystem, never a valid folder


def member_path(folder: str, relative: str) -> tuple[str, ...]:
    """The segments of ``relative`` under ``folder``, if every unzipper would extract it
    inside the folder (:mod:`satchel.zipstream.names`). Pure validation."""
    if not FOLDER_RE.fullmatch(folder):
        raise ArchiveNotFound(folder=folder)
    reason = unsafe_reason(relative)
    if reason is not None:
        raise BadRequest(f"Not a safe name inside the folder: {relative!r}: {reason}.")
    return (folder, *relative.split("/"))


@contextlib.contextmanager
def _parent_fd(root: Path, segments: Sequence[str], *, create: bool) -> Iterator[int | None]:
    """Blocking: an open fd of the folder that holds ``segments[-1]``, walked from
    ``root`` one component at a time without following a symlink, so no write can be
    led outside the root; missing folders are made on the way when ``create``, else
    None. A component that is a file or a symlink is a 409."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for depth, segment in enumerate(segments[:-1]):
            try:
                following = _open_dir(segment, fd, create=create)
            except OSError as exc:
                if exc.errno not in (errno.ENOTDIR, errno.ELOOP, errno.EEXIST):
                    raise
                where = "/".join(segments[: depth + 1])
                raise Conflict(f"{where!r} is a file or a symlink, not a folder.") from exc
            os.close(fd)
            fd = following
            if fd < 0:
                break
        yield None if fd < 0 else fd
    finally:
        if fd >= 0:
            os.close(fd)


def _open_dir(name: str, parent: int, *, create: bool) -> int:
    """The fd of folder ``name`` in ``parent`` (not through a symlink); -1 if missing."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            return -1
    with contextlib.suppress(FileExistsError):  # another request made it just now
        os.mkdir(name, 0o755, dir_fd=parent)
    return os.open(name, flags, dir_fd=parent)


def place(root: Path, segments: Sequence[str], temp: TempFile) -> tuple[os.stat_result, bool]:
    """Blocking: move a finished temp file to ``root/segments`` atomically and durably;
    its stat, and whether it replaced a file. Missing folders are made."""
    name = segments[-1]
    with _parent_fd(root, segments, create=True) as fd:
        assert fd is not None
        existed = _member_kind(name, fd)
        os.rename(temp.path, name, dst_dir_fd=fd)
        os.fsync(fd)
        return os.stat(name, dir_fd=fd, follow_symlinks=False), existed


def remove_member(root: Path, segments: Sequence[str]) -> bool:
    """Blocking: delete one regular file inside the photos root; False if absent."""
    name = segments[-1]
    with _parent_fd(root, segments, create=False) as fd:
        if fd is None or not _member_kind(name, fd):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name, dir_fd=fd)
            os.fsync(fd)
            return True
        return False


def _member_kind(name: str, parent: int) -> bool:
    """Whether ``name`` in ``parent`` is a regular file; a 409 for anything else."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise Conflict(f"{name!r} is a folder or a symlink, not a file.")
    return True


def folder_temp(root: Path) -> TempFile:
    directory = root / TEMP_DIR
    directory.mkdir(exist_ok=True)
    return TempFile(directory)
