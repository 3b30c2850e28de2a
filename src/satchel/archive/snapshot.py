"""A CRC snapshot: every CRC of an archive, in its order, with the version of the file
each is the CRC of; kept in one row, so that an archive of 100,000 files finds its CRCs
in one read, and a folder changed since finds those of its files that did not change.
Pure: no IO."""

from __future__ import annotations

import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass

from satchel.storage.base import FileVersion, SourceFile

_STAT = struct.Struct(">qqq")  # size, mtime_ns, inode
_U32 = next(code for code in "IL" if array(code).itemsize == 4)  # "I", as a rule


@dataclass(frozen=True, slots=True)
class Snapshot:
    etag: str  # of the archive these are the CRCs of
    crcs: bytes  # 4 bytes each, big-endian, in the archive's order
    # each file's size, mtime_ns and inode, then the names, "\0" apart; deflated after a
    # "Z" (a row kept before has them as they are: its first byte, a size's highest, is 0)
    versions: bytes


_DEFLATED = b"Z"
_NAMES_AT_ONCE = 4096  # names encoded and deflated at a time


def pack(etag: str, files: Sequence[SourceFile], crcs: Sequence[int]) -> Snapshot:
    """Packed in place and deflated as it goes, never a bytes object a file nor all the
    names at once: this runs as a cold archive of 100,000 files ends, when the server's
    memory is at its fullest, and the row it makes is written through SQLite's pages
    (4.4 MB of versions deflate to 1.2 MB)."""
    stats = bytearray(_STAT.size * len(files))
    for at, (_, size, mtime_ns, inode) in enumerate(f.version for f in files):
        _STAT.pack_into(stats, at * _STAT.size, size, mtime_ns, inode)
    deflate = zlib.compressobj(1)
    parts = [_DEFLATED, deflate.compress(stats)]
    del stats
    for at in range(0, len(files), _NAMES_AT_ONCE):
        names = "\0".join(f.version.name for f in files[at : at + _NAMES_AT_ONCE])
        parts.append(
            deflate.compress((("\0" if at else "") + names).encode("utf-8", "surrogatepass"))
        )
    parts.append(deflate.flush())
    return Snapshot(etag, _big_endian(array(_U32, crcs)).tobytes(), b"".join(parts))


def crcs_of(snapshot: Snapshot) -> array[int]:
    """The CRCs, 4 bytes each as they are kept (100,000: 400 KB, where a list takes 4 MB)."""
    return _big_endian(array(_U32, snapshot.crcs))


def _big_endian(crcs: array[int]) -> array[int]:
    """Swapped in place where the machine is little-endian (a swap is its own inverse)."""
    if sys.byteorder == "little":
        crcs.byteswap()
    return crcs


def by_version(snapshot: Snapshot) -> dict[FileVersion, int]:
    """Each CRC by the version of its file: what a changed folder's files that did not
    change still have."""
    crcs = crcs_of(snapshot)
    if not crcs:
        return {}
    versions = snapshot.versions
    if versions.startswith(_DEFLATED):
        versions = zlib.decompress(memoryview(versions)[len(_DEFLATED) :])
    cut = len(crcs) * _STAT.size
    names = versions[cut:].decode("utf-8", "surrogatepass").split("\0")
    stats = _STAT.iter_unpack(versions[:cut])
    return {
        FileVersion(name, size, mtime_ns, inode): crc
        for name, (size, mtime_ns, inode), crc in zip(names, stats, crcs, strict=True)
    }
