"""An archive's plan, of a folder or of a selection: its files in order, the ZIP
layout, the ETag; and the CRC cache those files' headers need, behind its repository
protocol."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from satchel.errors import ArchiveNotFound, BadRequest
from satchel.storage.base import FileVersion, SourceFile
from satchel.zipstream import Layout, Limits, arrange, small_first
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


@dataclass(frozen=True, slots=True)
class Manifest:
    """An archive's plan, settled before its first byte: its files in archive order and
    their layout, the ETag and Last-Modified; for each file, the photo folder whose CRC
    cache keeps it (None for a stored file) and its CRC where one is known already (a
    stored file's, from its record)."""

    label: str  # what the log calls it: the folder, or m/<selection id>
    files: tuple[SourceFile, ...]
    layout: Layout
    etag: str
    last_modified: int
    folders: tuple[str | None, ...]
    crcs: tuple[int | None, ...]


def build_manifest(
    folder: str, files: Sequence[SourceFile], folder_mtime: int, limits: Limits = Limits()
) -> Manifest:
    """A folder's archive: every file, ordered by name."""
    by_name = {f.version.name: f for f in files}
    members = arrange(
        [ZipMember(f.version.name, f.version.size, f.version.mtime_ns // 10**9) for f in files],
        limits,
    )
    ordered = tuple(by_name[m.name] for m in members)
    last_modified = max((m.mtime for m in members), default=folder_mtime)
    return Manifest(
        folder,
        ordered,
        Layout(members, limits),
        _etag(limits, ((f.version.name, f) for f in ordered)),
        last_modified,
        (folder,) * len(ordered),
        (None,) * len(ordered),
    )


@dataclass(frozen=True, slots=True)
class Picked:
    """A file of a selection: its name in the ZIP and where it comes from."""

    name: str
    source: SourceFile
    folder: str | None  # the photo folder whose CRC cache keeps it; None if stored
    crc: int | None = None  # known already (a stored file's)


def build_selection(label: str, picked: Sequence[Picked], limits: Limits = Limits()) -> Manifest:
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
        tuple(p.source for p in ordered),
        Layout(members, limits),
        _etag(limits, ((p.name, p.source) for p in ordered)),
        max(m.mtime for m in members),
        tuple(p.folder for p in ordered),
        tuple(p.crc for p in ordered),
    )


def _etag(limits: Limits, named: Iterable[tuple[str, SourceFile]]) -> str:
    """A strong ETag: a hash of what decides the bytes, each file's name in the ZIP and
    version (a folder archive's, where the two names agree, as it always was)."""
    digest = hashlib.sha256(f"{limits.zip64_at}:{limits.max_entries}\n".encode())
    for name, source in named:
        v = source.version
        if name != v.name or source.stored:
            digest.update(f"{name}\0{int(source.stored)}\0".encode())
        digest.update(f"{v.name}\0{v.size}\0{v.mtime_ns}\0{v.inode}\n".encode())
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
