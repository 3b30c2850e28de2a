"""An archive's plan, of a folder or of a selection: its files in order, the ZIP
layout, the ETag; and the CRC cache those files' headers need, behind its repository
protocol."""

from __future__ import annotations

import hashlib
import re
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from satchel.archive.snapshot import Snapshot
from satchel.errors import ArchiveNotFound, BadRequest
from satchel.storage.base import FileVersion, Listing, SourceFile
from satchel.zipstream import Layout, Limits, first_small, small_first
from satchel.zipstream import Member as ZipMember
from satchel.zipstream.names import unsafe_reason

FOLDER_RE = re.compile(r"[A-Za-z0-9_-]{1,128}")


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

    async def snapshot(self, key: str, etag: str) -> Snapshot | None:
        """The snapshot of the archive ``key`` (see ``Manifest.key``), if one was kept;
        without its versions (``b""``) when its ETag is ``etag``: they tell which files
        did not change, which that ETag says already (100,000 files: 9 MB not read)."""
        ...

    async def keep_snapshot(self, key: str, snapshot: Snapshot) -> None:
        """Keep the snapshot of the archive ``key``, replacing an older one."""
        ...

    async def prune_snapshots(self, before: datetime) -> int:
        """Forget snapshots kept before ``before`` (of folders and selections gone)."""
        ...


@dataclass(frozen=True, slots=True)
class Manifest:
    """An archive's plan, settled before its first byte: its files in archive order and
    their layout, the ETag and Last-Modified; for each file, the photo folder whose CRC
    cache keeps it (None for a stored file) and its CRC where one is known already (a
    stored file's, from its record)."""

    label: str  # what the log calls it: the folder, or m/<selection id>
    key: str  # what its CRC snapshot is kept under: the folder, or m/<selection key>
    files: Sequence[SourceFile]  # a folder's: a Listing, columns
    layout: Layout
    etag: str
    last_modified: int
    folders: tuple[str | None, ...]
    crcs: tuple[int | None, ...]


@dataclass(slots=True)
class _Kept:
    scanned: Listing
    limits: Limits
    plan: Manifest
    stamp: int | None  # the folder watch's, taken before the scan that found ``scanned``


class Plans:
    """The latest plan of each folder, with what its scan found: the next archive of a
    folder whose scan finds the same (files, versions and order: a folder unchanged)
    reuses its layout and the header records it rendered, without sorting or hashing
    the files again; where a watch says the folder did not change since that scan, it
    is not even scanned. Bounded by members, not plans: a plan holds about 460 bytes a
    member once all its header records are rendered (its files in columns; as tuples, a
    member took 770), so 120,000 members take about 55 MB. A folder larger than that is
    planned afresh each time, which keeps a server's memory down. ``dropped`` is told
    of each folder whose plan is let go. Used from threads."""

    def __init__(
        self, max_members: int = 120_000, dropped: Callable[[str], None] | None = None
    ) -> None:
        self._plans: OrderedDict[str, _Kept] = OrderedDict()
        self._members = 0
        self._max = max_members
        self._lock = threading.Lock()
        self.dropped = dropped

    def get(
        self, key: str, scanned: Listing, limits: Limits, stamp: int | None = None
    ) -> Manifest | None:
        """The plan of ``key`` if it was made from what this scan found (its ``stamp``
        now stands for the plan)."""
        with self._lock:
            kept = self._plans.get(key)
            if kept is None or kept.limits != limits or kept.scanned != scanned:
                return None
            kept.stamp = stamp
            self._plans.move_to_end(key)
            return kept.plan

    def unscanned(
        self, key: str, limits: Limits, unchanged: Callable[[int], bool]
    ) -> Manifest | None:
        """The plan of ``key`` if ``unchanged`` says of its stamp that the folder did not
        change since the scan it was made from."""
        with self._lock:
            kept = self._plans.get(key)
            if kept is None or kept.limits != limits or kept.stamp is None:
                return None
            if not unchanged(kept.stamp):
                return None
            self._plans.move_to_end(key)
            return kept.plan

    def keeps(self, members: int) -> bool:
        """Whether a plan of so many members would be kept."""
        return members <= self._max

    def holds(self, key: str) -> bool:
        with self._lock:
            return key in self._plans

    def put(
        self,
        plan: Manifest,
        scanned: Listing,
        limits: Limits,
        stamp: int | None = None,
    ) -> None:
        gone: list[str] = []
        with self._lock:
            if not self.keeps(len(plan.files)):
                return
            replaced = self._plans.pop(plan.key, None)
            if replaced is not None:
                self._members -= len(replaced.plan.files)
            self._plans[plan.key] = _Kept(scanned, limits, plan, stamp)
            self._members += len(plan.files)
            while self._members > self._max:
                key, oldest = self._plans.popitem(last=False)
                self._members -= len(oldest.plan.files)
                gone.append(key)
        if self.dropped is not None:
            for key in gone:
                self.dropped(key)


def build_manifest(
    folder: str,
    files: Listing,
    folder_mtime: int,
    limits: Limits = Limits(),
    plans: Plans | None = None,
    stamp: int | None = None,
) -> Manifest:
    """A folder's archive: every file, ordered by name; kept in ``plans`` (with
    ``stamp``, the folder watch's, of this scan) if they keep so many members."""
    names, sizes, mtimes_ns, inodes = files.names, files.sizes, files.mtimes_ns, files.inodes
    order = sorted(range(len(names)), key=names.__getitem__)
    etag = _etag(limits, (f"{names[i]}\0{sizes[i]}\0{mtimes_ns[i]}\0{inodes[i]}\n" for i in order))
    if first := first_small(array("q", map(sizes.__getitem__, order)), limits):
        order.insert(0, order.pop(first))
    placed = files.taken(order)
    mtimes = array("q", (m // 10**9 for m in placed.mtimes_ns))
    keep = plans is not None and plans.keeps(len(placed))
    layout = Layout(placed.names, placed.sizes, mtimes, limits, keep_rendered=keep)
    plan = Manifest(
        folder,
        folder,
        placed,
        layout,
        etag,
        max(mtimes, default=folder_mtime),
        (folder,) * len(placed),
        (None,) * len(placed),
    )
    if plans is not None and placed:
        plans.put(plan, files, limits, stamp)
    return plan


@dataclass(frozen=True, slots=True)
class Picked:
    """A file of a selection: its name in the ZIP and where it comes from."""

    name: str
    source: SourceFile
    folder: str | None  # the photo folder whose CRC cache keeps it; None if stored
    crc: int | None = None  # known already (a stored file's)


def build_selection(
    label: str, key: str, picked: Sequence[Picked], limits: Limits = Limits()
) -> Manifest:
    """A selection's archive: its files in the order given (names are unique)."""
    by_name = {p.name: p for p in picked}
    members = small_first(
        [
            ZipMember(p.name, p.source.version.size, p.source.version.mtime_ns // 10**9)
            for p in picked
        ],
        limits,
    )
    ordered = [by_name[m.name] for m in members]
    return Manifest(
        label,
        key,
        tuple(p.source for p in ordered),
        Layout.of(members, limits, keep_rendered=False),  # planned afresh for each request
        _etag(limits, _selection_lines(ordered)),
        max((m.mtime for m in members), default=0),  # a share may be empty
        tuple(p.folder for p in ordered),
        tuple(p.crc for p in ordered),
    )


def _selection_lines(picked: Iterable[Picked]) -> Iterator[str]:
    """The lines of a selection's ETag: a file's name in the ZIP where it is not its
    version's or the file is stored, then its version (else as a folder's archive)."""
    for p in picked:
        v = p.source.version
        if p.name != v.name or p.source.stored:
            yield f"{p.name}\0{int(p.source.stored)}\0"
        yield f"{v.name}\0{v.size}\0{v.mtime_ns}\0{v.inode}\n"


def _etag(limits: Limits, lines: Iterable[str]) -> str:
    """A strong ETag: a hash of what decides the bytes, the limits and a line for each
    file's version (``name\\0size\\0mtime_ns\\0inode``)."""
    digest = hashlib.sha256(f"{limits.zip64_at}:{limits.max_entries}\n".encode())
    batch: list[str] = []  # hashed a few thousand at a time: a call a file costs a third
    for line in lines:
        batch.append(line)
        if len(batch) >= 4096:
            digest.update("".join(batch).encode())
            batch.clear()
    digest.update("".join(batch).encode())
    return f'"{digest.hexdigest()[:40]}"'


# -- writing into folders (PUT /archive/<folder>/<path>) ------------------------------


def member_path(folder: str, relative: str) -> tuple[str, ...]:
    """The segments of ``relative`` under ``folder``, if every unzipper would extract it
    inside the folder (:mod:`satchel.zipstream.names`). Pure validation."""
    if not FOLDER_RE.fullmatch(folder):
        raise ArchiveNotFound(folder=folder)
    reason = unsafe_reason(relative)
    if reason is not None:
        raise BadRequest(f"Not a safe name inside the folder: {relative!r}: {reason}.")
    return (folder, *relative.split("/"))
