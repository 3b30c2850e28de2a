"""Photo folders on the local filesystem: the first implementation of
:class:`satchel.storage.base.Folders`. Every method blocks.

Reading follows a symlink only while it stays inside the photos root. Writing never
follows one: the path is walked a component at a time with ``O_NOFOLLOW`` from an open
folder, so no write can be led outside the root.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

from satchel.errors import ArchiveChanged, ArchiveNotFound, Conflict
from satchel.storage.base import FileVersion, Incoming, Listing, SourceFile
from satchel.storage.local import FileReader, TempFile, free_bytes
from satchel.storage.watch import FolderWatch, open_watch
from satchel.zipstream.names import plain_segment, segment_reason

log = logging.getLogger("satchel.archive")

TEMP_DIR = ".satchel-tmp"  # under the photos root: same filesystem, never a valid folder


def _signed(ino: int) -> int:
    return ino - (1 << 64) if ino >= 1 << 63 else ino


def _inside(root: str, path: str) -> bool:
    return os.path.commonpath([root, path]) == root


def _check(version: FileVersion, st: os.stat_result) -> None:
    """``ArchiveChanged`` unless an open file is still ``version``."""
    if st.st_nlink == 0:
        raise ArchiveChanged(f"{version.name} was removed while the archive was being sent")
    if (st.st_size, st.st_mtime_ns, _signed(st.st_ino)) != (
        version.size,
        version.mtime_ns,
        version.inode,
    ):
        raise ArchiveChanged(f"{version.name} changed while the archive was being sent")


class LocalMember(FileReader):
    """A member's file, checked against the version it was listed as."""

    def __init__(self, source: SourceFile) -> None:
        self.version = source.version
        try:
            super().__init__(source.location)
        except OSError as exc:
            raise ArchiveChanged(f"{self.version.name}: {exc}") from exc
        self.verify()

    def read_into(self, offset: int, view: memoryview) -> int:
        return os.preadv(self.fileno(), [view], offset)

    def verify(self) -> None:
        _check(self.version, os.fstat(self.fileno()))


class LocalFolders:
    """``watch``: report, over inotify, whether a folder changed since a scan
    (``Watched``), where the photos root's filesystem allows it."""

    def __init__(self, root: Path, watch: bool = False) -> None:
        self.root = root
        self._watch = open_watch(os.path.realpath(root)) if watch else None

    # -- reading -----------------------------------------------------------------------

    def scan(self, folder: str) -> tuple[Listing, int]:
        return self._scan(folder, None)

    def scan_watched(self, folder: str) -> tuple[Listing, int, int | None]:
        if self._watch is None:
            return (*self._scan(folder, None), None)
        stamp = self._watch.stamp()
        return (*self._scan(folder, self._watch), stamp)

    def unchanged(self, folder: str, stamp: int) -> bool:
        return self._watch is not None and self._watch.unchanged(folder, stamp)

    def forget(self, folder: str) -> None:
        if self._watch is not None:
            self._watch.forget(folder)

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()

    def _scan(self, folder: str, watch: FolderWatch | None) -> tuple[Listing, int]:
        real_root = os.path.realpath(self.root)
        base = os.path.realpath(os.path.join(real_root, folder))
        if base == real_root or not _inside(real_root, base) or not os.path.isdir(base):
            raise ArchiveNotFound(folder=folder)
        base_stat = os.stat(base)
        if watch is not None and not _watchable(
            watch, os.path.join(real_root, folder), base, base_stat
        ):
            watch.spoil(folder)
        files = Listing(base + "/")
        # columns appended to in place: a call a file costs a tenth of the scan
        names, sizes, mtimes, inodes = (
            files.names.append,
            files.sizes.append,
            files.mtimes_ns.append,
            files.inodes.append,
        )
        seen_dirs = {(base_stat.st_dev, base_stat.st_ino)}
        # (directory, its path in the folder, whether it is base + that path: not reached
        # through a symlink, so its files' locations need not be kept)
        pending = [(base, "", True)]
        readable = _Readable()
        while pending:
            directory, prefix, plain = pending.pop()
            try:
                fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError as exc:
                log.warning("Skipping unreadable folder %s: %s", directory, exc)
                continue
            try:
                if watch is not None:
                    watch.add(folder, fd)
                # stat relative to the folder's fd: the kernel walks one name, not the path
                for entry in list(os.scandir(fd)):
                    name = prefix + entry.name
                    if plain and plain_segment(entry.name) and entry.is_file(follow_symlinks=False):
                        # most entries: a plain name, a regular file; one system call
                        st = _regular(fd, entry.name, readable)
                        if st is not None:
                            if watch is not None and st.st_nlink > 1:
                                watch.spoil(folder)  # changed through its other links unseen
                            names(name)
                            sizes(st.st_size)
                            mtimes(st.st_mtime_ns)
                            inodes(_signed(st.st_ino))
                            continue
                    path = f"{directory}/{entry.name}"
                    found = _inspect(real_root, fd, path, entry.name, readable)
                    if found is None:
                        continue
                    if watch is not None and not _watchable(watch, path, *found):
                        watch.spoil(folder)
                    target, st = found
                    if stat.S_ISDIR(st.st_mode):
                        if (st.st_dev, st.st_ino) not in seen_dirs:
                            seen_dirs.add((st.st_dev, st.st_ino))
                            pending.append((target, name + "/", plain and target == path))
                    else:
                        files.add(name, st.st_size, st.st_mtime_ns, _signed(st.st_ino), target)
            finally:
                os.close(fd)
        return files, base_stat.st_mtime_ns // 1_000_000_000

    def open(self, source: SourceFile) -> LocalMember:
        return LocalMember(source)

    def read_whole(self, source: SourceFile, into: memoryview) -> None:
        """Open, read into place, check, close: four system calls (``WholeReads``)."""
        v = source.version
        try:
            fd = os.open(source.location, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise ArchiveChanged(f"{v.name}: {exc}") from exc
        try:
            beyond = bytearray(1)  # a byte more: a file that grew is another
            got = os.readv(fd, [into, beyond])
            while 0 < got < v.size and (more := os.readv(fd, [into[got:], beyond])):
                got += more
            st = os.fstat(fd)
        finally:
            os.close(fd)
        _check(v, st)
        if got != v.size:
            raise ArchiveChanged(f"{v.name} changed while the archive was being sent")

    # -- writing -----------------------------------------------------------------------

    def create(self) -> TempFile:
        directory = self.root / TEMP_DIR
        directory.mkdir(exist_ok=True)
        return TempFile(directory)

    def place(self, path: Sequence[str], incoming: Incoming) -> tuple[FileVersion, bool]:
        assert isinstance(incoming, TempFile)
        name = path[-1]
        with _parent_fd(self.root, path, create=True) as fd:
            assert fd is not None
            existed = _member_kind(name, fd)
            os.rename(incoming.path, name, dst_dir_fd=fd)
            os.fsync(fd)
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        relative = "/".join(path[1:])
        return FileVersion(relative, st.st_size, st.st_mtime_ns, _signed(st.st_ino)), existed

    def remove(self, path: Sequence[str]) -> bool:
        name = path[-1]
        with _parent_fd(self.root, path, create=False) as fd:
            if fd is None or not _member_kind(name, fd):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
                os.fsync(fd)
                return True
            return False

    def free_bytes(self) -> int:
        return free_bytes(self.root)


class _Readable:
    """Whether we may read a regular file, without a system call where the answer is
    sure: a process that may override file permissions (root, as a rule) reads every
    one, and an owner is asked only its owner's mode bits (ACLs included). Else
    ``access``."""

    def __init__(self) -> None:
        self.uid = os.geteuid()
        self.everything = _may_override_permissions()

    def surely(self, st: os.stat_result) -> bool:
        """Readable, known without a system call."""
        return self.everything or (st.st_uid == self.uid and bool(st.st_mode & stat.S_IRUSR))

    def __call__(self, path: str, st: os.stat_result) -> bool:
        if self.everything or st.st_uid == self.uid:
            return self.surely(st)
        return os.access(path, os.R_OK)


def _watchable(watch: FolderWatch, path: str, found: str, st: os.stat_result) -> bool:
    """Whether every change to what ``path`` is (``found``, ``st``) is reported to a watch
    on its folder: not a symlink, not on another filesystem, not a file with other links
    (written through those, it is changed unseen)."""
    if found != path or st.st_dev != watch.device:
        return False
    return not (stat.S_ISREG(st.st_mode) and st.st_nlink > 1)


def _regular(dir_fd: int, name: str, readable: _Readable) -> os.stat_result | None:
    """The stat of ``name`` in ``dir_fd`` if it is a regular file surely readable; else
    None, and ``_inspect`` looks again, and says why it is skipped."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) and readable.surely(st) else None


def _may_override_permissions() -> bool:
    """Whether this process has CAP_DAC_OVERRIDE (Linux), which lets it read any file."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) & (1 << 1))
    except (OSError, ValueError):
        pass
    return False


def _inspect(
    real_root: str, dir_fd: int, path: str, name: str, readable: _Readable
) -> tuple[str, os.stat_result] | None:
    """(path to open, its stat) for a folder or regular file we may serve (``path``:
    ``name`` in the folder ``dir_fd``), else None. A symlink is followed only inside the
    photos root, and its target is what is opened."""
    if not plain_segment(name):  # the folders above it were checked on the way
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            log.warning("Skipping %r: its name is not valid UTF-8", path)
            return None
        reason = segment_reason(name)
        if reason is not None:
            log.warning("Skipping %r: %s", path, reason)
            return None
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode):
            target = os.path.realpath(path)
            if not _inside(real_root, target):
                log.warning("Skipping symlink %s: it points outside the photos root", path)
                return None
            path, st = target, os.stat(target)
    except OSError as exc:
        log.warning("Skipping %s: %s", path, exc)
        return None
    if stat.S_ISDIR(st.st_mode) or (stat.S_ISREG(st.st_mode) and readable(path, st)):
        return path, st
    log.warning("Skipping %s: not a readable regular file", path)
    return None


@contextlib.contextmanager
def _parent_fd(root: Path, segments: Sequence[str], *, create: bool) -> Iterator[int | None]:
    """An open fd of the folder that holds ``segments[-1]``, walked from ``root`` one
    component at a time without following a symlink; missing folders are made on the
    way when ``create``, else None. A component that is a file or a symlink is a 409."""
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


def _member_kind(name: str, parent: int) -> bool:
    """Whether ``name`` in ``parent`` is a regular file; a 409 for anything else."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return False
    if not stat.S_ISREG(st.st_mode):
        raise Conflict(f"{name!r} is a folder or a symlink, not a file.")
    return True
