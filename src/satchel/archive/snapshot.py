"""A CRC snapshot: every CRC of an archive, in its order, with the version of the file
each is the CRC of; kept in one row, so that an archive of 100,000 files finds its CRCs
in one read, and a folder changed since finds those of its files that did not change.
Pure: no IO."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

from satchel.storage.base import FileVersion, SourceFile

_STAT = struct.Struct(">qqq")  # size, mtime_ns, inode


@dataclass(frozen=True, slots=True)
class Snapshot:
    etag: str  # of the archive these are the CRCs of
    crcs: bytes  # 4 bytes each, big-endian, in the archive's order
    versions: bytes  # each file's size, mtime_ns and inode, then the names, "\0" apart


def pack(etag: str, files: Sequence[SourceFile], crcs: Sequence[int]) -> Snapshot:
    stats = b"".join(_STAT.pack(f.version.size, f.version.mtime_ns, f.version.inode) for f in files)
    names = "\0".join(f.version.name for f in files).encode("utf-8", "surrogatepass")
    return Snapshot(etag, struct.pack(f">{len(crcs)}I", *crcs), stats + names)


def crcs_of(snapshot: Snapshot) -> list[int]:
    return list(struct.unpack(f">{len(snapshot.crcs) // 4}I", snapshot.crcs))


def by_version(snapshot: Snapshot) -> dict[FileVersion, int]:
    """Each CRC by the version of its file: what a changed folder's files that did not
    change still have."""
    crcs = crcs_of(snapshot)
    if not crcs:
        return {}
    cut = len(crcs) * _STAT.size
    names = snapshot.versions[cut:].decode("utf-8", "surrogatepass").split("\0")
    stats = _STAT.iter_unpack(snapshot.versions[:cut])
    return {
        FileVersion(name, size, mtime_ns, inode): crc
        for name, (size, mtime_ns, inode), crc in zip(names, stats, crcs, strict=True)
    }
