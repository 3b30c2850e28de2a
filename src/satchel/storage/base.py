"""The storage seam: what the services need of the place where bytes live.

The protocols are owned by their consumers (``FileStore``, ``TusStore``, the download
handler); ``local.py`` is the first implementation, and
``tests/contract/test_storage.py`` is what every implementation must pass. Every method
blocks: async code calls them through ``satchel.blocking``.

What a backend may or may not do is a separate capability, checked with ``isinstance``:
- :class:`ZeroCopy`: a reader that can hand a file descriptor to ``sendfile``. A reader
  without it is streamed by reads.
- :class:`Presigning`: a storage that can hand out a URL serving a file by itself.
- :class:`StoredCrc`, :class:`FetchAhead`: folder members with a CRC-32 kept beside them,
  and folders whose members are worth opening ahead (S3).
- :class:`WholeReads`: folders that read a small member whole in one call (locally: four
  system calls), as an archive of many small files does.
- :class:`UploadLocks`: one writer per upload across processes (``flock`` locally). A
  backend whose instances share no filesystem gets its locks elsewhere (the database).

:class:`Folders` is the other seam: where the photo folders that archives are made of
live, and where ``PUT /archive/<folder>/<path>`` writes.
"""

from __future__ import annotations

import errno
import hashlib
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import NamedTuple, Protocol, TypeGuard, overload, runtime_checkable

# zlib-ng's CRC-32, not ISA-L's: both take about 0.02 s a GiB, but ISA-L's returns with
# the upper vector registers dirty, and SHA-256 (SHA-NI) then runs about 35% slower in
# that thread, for the rest of its life (bench/RESULTS.md).
from zlib_ng.zlib_ng import crc32

from satchel.errors import ArchiveChanged

# Blocks reach a storage in page-aligned memory, each a multiple of this but the last,
# and uploads are appended so that their blocks start at multiples of it: what O_DIRECT
# wants, locally.
ALIGN = 4096
UNLIMITED = 2**63 - 1  # the free space of a storage that has no size (S3)


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


class Hashing:
    """What every :class:`Incoming` does alike: hash the blocks as they come."""

    def __init__(self) -> None:
        self._digests = Digests()

    def digest(self, block: memoryview) -> None:
        """Hash a block (may run in one thread while ``store`` runs in another)."""
        self._digests.update(block)

    @property
    def sha256(self) -> bytes:
        return self._digests.sha256

    @property
    def crc32(self) -> int:
        return self._digests.crc32


def disk_full(exc: BaseException) -> bool:
    """The error a write gets when the filesystem (or the user's quota) has no room."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class Incoming(Protocol):
    """A new object being received in blocks, hashed as they come; nobody sees it until
    it is committed. Blocks come in page-aligned memory, each a multiple of 4 KiB but the
    last; ``digest`` may run in one thread while ``store`` runs in another."""

    size: int

    def digest(self, block: memoryview) -> None: ...

    def store(self, block: memoryview) -> None: ...

    @property
    def sha256(self) -> bytes: ...

    @property
    def crc32(self) -> int: ...

    def finish(self) -> None:
        """Every byte is in: make them durable."""
        ...

    def discard(self) -> None:
        """Drop it, finished or not."""
        ...


class Reader(Protocol):
    """An object open for ranged reads."""

    size: int

    def read(self, offset: int, count: int) -> bytes:
        """Up to ``count`` bytes from ``offset``; fewer only at the end."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ZeroCopy(Protocol):
    """A capability of a :class:`Reader`: the kernel can send it (``sendfile``)."""

    def fileno(self) -> int: ...


class Appending(Protocol):
    """A resumable upload open for writing from its offset on."""

    written: int  # bytes written so far

    def write(self, block: memoryview) -> None: ...

    def keep(self, end: int) -> None:
        """Keep the upload's first ``end`` bytes, durably: ``end`` is the offset it was
        opened at (what was written is dropped) or that plus ``written`` (all is kept)."""
        ...

    def close(self) -> None: ...


class Storage(Protocol):
    """Stored files, by id, and the bytes of resumable uploads, by key."""

    def create(self, file_id: str) -> Incoming:
        """A new object, to become the stored file ``file_id`` at ``commit``."""
        ...

    def commit(self, incoming: Incoming) -> None:
        """Make a finished ``create``-d object durable as its stored file."""
        ...

    def open(self, file_id: str) -> Reader:
        """FileNotFoundError if there is no such file."""
        ...

    def remove(self, file_id: str) -> None:
        """Idempotent."""
        ...

    def ids_older_than(self, cutoff: float) -> list[str]:
        """Ids of stored files last written before ``cutoff`` (a Unix time)."""
        ...

    def sweep_temp(self, cutoff: float) -> int:
        """Drop objects being received that were untouched since ``cutoff``: how many."""
        ...

    def free_bytes(self) -> int:
        """Bytes that can still be stored; :data:`UNLIMITED` where there is no limit."""
        ...

    def check(self) -> None:
        """Raise if bytes cannot be written now (a folder gone read-only, a bucket out of
        reach): what /readyz asks."""
        ...

    def create_upload(self, key: str, file_id: str) -> None:
        """An empty upload, durably, which will become the stored file ``file_id``."""
        ...

    def append(self, key: str, offset: int) -> Appending:
        """Open the upload to write at ``offset``, an end kept since it was last opened
        (the one the database acknowledged); bytes past it are cut off first.
        FileNotFoundError if there is no such upload."""
        ...

    def join(self, key: str, parts: Sequence[str]) -> None:
        """Make the new upload ``key`` the uploads ``parts``' bytes, in order, durably.
        Like ``read_upload``, only for uploads that take no more bytes."""
        ...

    def read_upload(self, key: str) -> Reader:
        """The bytes of an upload that takes no more (all its bytes are in)."""
        ...

    def finish_upload(self, key: str, file_id: str) -> None:
        """Make the complete upload's bytes the stored file ``file_id`` as well; idempotent,
        and the upload stays until ``remove_upload``."""
        ...

    def remove_upload(self, key: str) -> None:
        """Idempotent."""
        ...


@runtime_checkable
class Presigning(Protocol):
    """A capability of a :class:`Storage`: a URL that serves a stored file by itself for
    a while (an S3 presigned GET), for deployments whose bytes bypass Satchel."""

    def presign(self, file_id: str, disposition: str, content_type: str, seconds: int) -> str:
        """The URL, answering with these ``Content-Disposition`` and ``Content-Type``."""
        ...


@runtime_checkable
class UploadLocks(Protocol):
    """One writer per upload, across processes."""

    def acquire(self, key: str) -> Callable[[], None]:
        """Lock the upload without waiting; the function that releases it. ``Locked`` when
        another writer holds it; FileNotFoundError if it can tell there is no such
        upload (the caller checks the record once it holds the lock)."""
        ...


def hash_all(reader: Reader, chunk_size: int = 1024 * 1024) -> Digests:
    """The SHA-256 and CRC-32 of everything ``reader`` holds."""
    digests = Digests()
    while digests.size < reader.size and (chunk := reader.read(digests.size, chunk_size)):
        digests.update(chunk)
    return digests


class FileVersion(NamedTuple):  # tuples: a scan makes two a file, three times as fast
    """A folder member as it is now, which is what makes a cached CRC valid: its name in
    the folder, its size, mtime and identity (an inode locally, as a signed 64-bit
    number, which the database can store)."""

    name: str
    size: int
    mtime_ns: int
    inode: int


class SourceFile(NamedTuple):
    """A file an archive is made of: a photo folder member, whose ``location`` is where
    its folder source finds it (a path, locally), or a ``stored`` file, whose
    ``location`` is its id."""

    version: FileVersion
    location: str
    stored: bool = False


class Listing(Sequence[SourceFile]):
    """A folder's files as a scan found them, in columns: no tuple a file until one is
    asked for (100,000 files as tuples took 44 MB and a third of the scan's time). A
    file's location is ``base`` and its name, unless the scan gave another (a symlink's
    target). Its files are never ``stored``."""

    __slots__ = ("base", "names", "sizes", "mtimes_ns", "inodes", "_elsewhere")

    def __init__(self, base: str = "") -> None:
        self.base = base
        self.names: list[str] = []
        self.sizes = array("q")
        self.mtimes_ns = array("q")
        self.inodes = array("q")
        self._elsewhere: dict[int, str] = {}  # index -> location, where not base + name

    @classmethod
    def of(cls, files: Iterable[SourceFile], base: str = "") -> Listing:
        listing = cls(base)
        for version, location, _stored in files:
            listing.add(*version, location)
        return listing

    def add(self, name: str, size: int, mtime_ns: int, inode: int, location: str) -> None:
        if location != self.base + name:
            self._elsewhere[len(self.names)] = location
        self.names.append(name)
        self.sizes.append(size)
        self.mtimes_ns.append(mtime_ns)
        self.inodes.append(inode)

    def taken(self, order: Sequence[int]) -> Listing:
        """The files at these indexes, in this order."""
        listing = Listing(self.base)
        listing.names = [self.names[i] for i in order]
        for column in ("sizes", "mtimes_ns", "inodes"):
            setattr(listing, column, array("q", map(getattr(self, column).__getitem__, order)))
        if self._elsewhere:
            listing._elsewhere = {
                at: self._elsewhere[i] for at, i in enumerate(order) if i in self._elsewhere
            }
        return listing

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[SourceFile]:
        base, elsewhere = self.base, self._elsewhere
        columns = zip(self.names, self.sizes, self.mtimes_ns, self.inodes, strict=True)
        for at, (name, size, mtime_ns, inode) in enumerate(columns):
            location = elsewhere.get(at) or base + name
            yield SourceFile(FileVersion(name, size, mtime_ns, inode), location)

    @overload
    def __getitem__(self, index: int) -> SourceFile: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[SourceFile]: ...

    def __getitem__(self, index: int | slice) -> SourceFile | Sequence[SourceFile]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        name = self.names[index]  # IndexError past either end
        if index < 0:
            index += len(self.names)
        version = FileVersion(name, self.sizes[index], self.mtimes_ns[index], self.inodes[index])
        return SourceFile(version, self._elsewhere.get(index) or self.base + name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Listing) and (
            self.names == other.names
            and self.sizes == other.sizes
            and self.mtimes_ns == other.mtimes_ns
            and self.inodes == other.inodes
            and self.base == other.base
            and self._elsewhere == other._elsewhere
        )

    __hash__ = None  # type: ignore[assignment]  # it grows as a scan adds to it


class Member(Reader, Protocol):
    """A folder member open for reading."""

    def read_into(self, offset: int, view: memoryview) -> int:
        """Fill the start of ``view`` from ``offset``: how many bytes (0 at the end)."""
        ...

    def verify(self) -> None:
        """``ArchiveChanged`` unless every byte read came from the version it was opened
        as. Locally: it has not changed. On S3, where a GET is one version's bytes and
        each is checked as it is answered, only a member never read is looked at again."""
        ...


@runtime_checkable
class StoredCrc(Protocol):
    """A capability of a :class:`Member`: a CRC-32 its storage keeps (an S3 object's
    full-object checksum), so it need not be read for one."""

    def stored_crc(self) -> int | None: ...


@runtime_checkable
class FetchAhead(Protocol):
    """A capability of :class:`Folders` whose members come over a network: the archive
    sender opens this many members ahead, so that none stalls the stream."""

    fetch_ahead: int


@runtime_checkable
class WholeReads(Protocol):
    """A capability of :class:`Folders` (and of a selection's sources): a small member
    read whole in one call, checked against its version, cheaper than through a
    :class:`Member` (an archive of many small files reads them so)."""

    def read_whole(self, source: SourceFile, into: memoryview) -> None:
        """Fill ``into``, as long as the file, with its bytes; ``ArchiveChanged`` if it is
        gone or no longer that version."""
        ...


@runtime_checkable
class Watched(Protocol):
    """A capability of :class:`Folders`: telling that a folder did not change since a
    scan began (local folders, over inotify), so that its last plan stands unscanned."""

    def scan_watched(self, folder: str) -> tuple[Listing, int, int | None]:
        """``scan``, and a stamp for ``unchanged``: None if no later answer can trust it."""
        ...

    def unchanged(self, folder: str, stamp: int) -> bool:
        """Nothing in ``folder`` changed since the scan that gave ``stamp`` began."""
        ...

    def forget(self, folder: str) -> None:
        """Stop watching ``folder``: its plan is no longer kept."""
        ...


def read_all(member: Member, source: SourceFile, into: memoryview) -> None:
    """Fill ``into`` with all the bytes of ``member``, opened as ``source``, checked
    against its version; then it is closed."""
    try:
        got = 0
        while got < len(into):
            n = member.read_into(got, into[got:])
            if n == 0:
                raise ArchiveChanged(f"{source.version.name} shrank while being read")
            got += n
        member.verify()
    finally:
        member.close()


class Folders(Protocol):
    """Where the photo folders live."""

    def scan(self, folder: str) -> tuple[Listing, int]:
        """The folder's files, in any order, at any depth, and the folder's mtime (Unix
        seconds). Only files an unzipper can extract safely, inside the folder; the rest
        is skipped and logged. ``ArchiveNotFound`` if there is no such folder."""
        ...

    def open(self, source: SourceFile) -> Member:
        """``ArchiveChanged`` if it is gone or no longer that version."""
        ...

    def create(self) -> Incoming:
        """A new member being received, to ``place`` when it is whole."""
        ...

    def place(self, path: Sequence[str], incoming: Incoming) -> tuple[FileVersion, bool]:
        """Make ``incoming`` the member at ``path`` (the folder, then the segments of its
        path inside it), atomically and durably; missing folders are made. Its version,
        and whether it replaced a file. ``Conflict`` if a part of the path is a file."""
        ...

    def remove(self, path: Sequence[str]) -> bool:
        """Delete the member at ``path``: False if there is none."""
        ...

    def free_bytes(self) -> int: ...


# Capabilities checked on every member or send, remembered per class: a runtime protocol
# check walks the protocol's members (8 µs), and an archive made two a member
# (bench/RESULTS.md). A capability is a class's, never one instance's.
_CAPABLE: dict[tuple[type, type], bool] = {}


def _capable(obj: object, capability: type) -> bool:
    key = (type(obj), capability)
    known = _CAPABLE.get(key)
    if known is None:
        known = _CAPABLE[key] = isinstance(obj, capability)
    return known


def zero_copy(reader: Reader) -> TypeGuard[ZeroCopy]:
    return _capable(reader, ZeroCopy)


def stores_crc(member: Member) -> TypeGuard[StoredCrc]:
    return _capable(member, StoredCrc)


def fetches_ahead(sources: object) -> TypeGuard[FetchAhead]:
    return _capable(sources, FetchAhead)


def reads_whole(sources: object) -> TypeGuard[WholeReads]:
    return _capable(sources, WholeReads)


def watched(folders: object) -> TypeGuard[Watched]:
    return _capable(folders, Watched)
