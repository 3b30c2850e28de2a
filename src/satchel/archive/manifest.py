"""An archive's plan: the folder's files in order, the ZIP layout, the ETag; and the
CRC cache those files' headers need, behind its repository protocol."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from satchel.errors import ArchiveNotFound, BadRequest
from satchel.storage.base import FileVersion, SourceFile
from satchel.zipstream import Layout, Limits, arrange
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
    folder: str
    files: tuple[SourceFile, ...]  # in archive order
    layout: Layout
    etag: str
    last_modified: int


def build_manifest(
    folder: str, files: Sequence[SourceFile], folder_mtime: int, limits: Limits = Limits()
) -> Manifest:
    by_name = {f.version.name: f for f in files}
    members = arrange(
        [ZipMember(f.version.name, f.version.size, f.version.mtime_ns // 10**9) for f in files],
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
