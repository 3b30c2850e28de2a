"""The byte layout of a stored (uncompressed) ZIP archive, with no IO.

The layout depends only on each member's (name, size, mtime): never on CRC
values, so the exact size, every offset and the mapping of any byte range to
(part, offset) are known before a single file is read. CRC-32 values are
needed only to *render* a local header or a central-directory record.

Format: PKWARE APPNOTE 6.3.x — §4.3.7 local header, §4.3.12 central directory,
§4.3.14-16 ZIP64 end records, §4.5.3 ZIP64 extra field; Info-ZIP extras 0x5455
(extended timestamp) and 0x7075 (Unicode Path).

Archive = LOCAL 0, DATA 0, LOCAL 1, DATA 1, …, CENTRAL, END.
No data descriptors: sizes and CRC sit in each local header, which every
unzipper — streaming ones included — reads.
"""

from __future__ import annotations

import bisect
import functools
import struct
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import Enum

LOCAL_SIG = 0x04034B50
CENTRAL_SIG = 0x02014B50
END_SIG = 0x06054B50
ZIP64_END_SIG = 0x06064B50
ZIP64_LOCATOR_SIG = 0x07064B50

VERSION_DEFAULT = 20  # 2.0: folders, plain stored entries
VERSION_ZIP64 = 45  # 4.5: ZIP64 extensions
MADE_BY = (3 << 8) | 63  # Unix host, spec 6.3: external attrs carry the mode
FLAG_UTF8 = 0x0800  # general purpose bit 11
FILE_ATTRS = (0o100644 & 0xFFFF) << 16  # regular file, rw-r--r--

_LOCAL = struct.Struct("<IHHHHHIIIHH")  # 30 bytes
_CENTRAL = struct.Struct("<IHHHHHHIIIHHHHHII")  # 46 bytes
_END = struct.Struct("<IHHHHIIH")  # 22 bytes
_ZIP64_END = struct.Struct("<IQHHIIQQQQ")  # 56 bytes
_ZIP64_LOCATOR = struct.Struct("<IIQI")  # 20 bytes
_EXTRA_HEAD = struct.Struct("<HH")

_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
_DOS_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest DOS date
_DOS_LAST = 4354819198  # 2107-12-31T23:59:58Z, the latest DOS date
_TS_MAX = 0x7FFFFFFF  # 0x5455 holds a 32-bit time; readers treat it as signed


@dataclass(frozen=True, slots=True)
class Member:
    """One file in the archive: its relative POSIX name, size and mtime (UTC s)."""

    name: str
    size: int
    mtime: int


@dataclass(frozen=True, slots=True)
class Limits:
    """Where ZIP64 starts. Real values by default; tests shrink them."""

    zip64_at: int = _U32  # a size or offset >= this needs ZIP64
    max_entries: int = _U16  # an entry count >= this needs ZIP64 end records


class Part(Enum):
    LOCAL = "local"
    DATA = "data"
    CENTRAL = "central"
    END = "end"


@dataclass(slots=True)  # not frozen: an archive makes two a member, and frozen's
class Piece:  # __init__ costs three times as much
    """Bytes [start, stop) of one part; ``index`` is the entry (-1 for CENTRAL/END)."""

    part: Part
    index: int
    start: int
    stop: int

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True)
class _Entry:
    member: Member
    name: bytes
    utf8: bool
    offset: int  # of the local header, from the archive start
    local_len: int
    zip64_size: bool  # the sizes live in a ZIP64 extra (local and central)
    zip64_offset: bool  # the offset lives in a ZIP64 extra (central only)
    central_at: int  # of its record, from the central directory start
    central_len: int

    @property
    def data_at(self) -> int:
        return self.offset + self.local_len

    @property
    def end(self) -> int:
        return self.data_at + self.member.size

    @property
    def version(self) -> int:
        return VERSION_ZIP64 if self.zip64_size or self.zip64_offset else VERSION_DEFAULT


def small_first(members: Sequence[Member], limits: Limits = Limits()) -> list[Member]:
    """The members in their order, but never opening with a ZIP64 entry when avoidable.

    Safari's auto-extract keeps only the first entry of an archive whose first
    entry is ZIP64; a small file in front avoids that.
    """
    ordered = list(members)
    if ordered and ordered[0].size >= limits.zip64_at:
        small = next((i for i, m in enumerate(ordered) if m.size < limits.zip64_at), None)
        if small is not None:
            ordered.insert(0, ordered.pop(small))
    return ordered


def _extra_lengths(utf8: bool, name_len: int) -> int:
    """Bytes of the 0x5455 and (for non-ASCII names) 0x7075 fields."""
    return 9 + (9 + name_len if utf8 else 0)


class Layout:
    """Exact byte layout of the archive of ``members``, in the given order."""

    def __init__(self, members: Sequence[Member], limits: Limits = Limits()) -> None:
        self.limits = limits
        entries: list[_Entry] = []
        offset = central_at = 0
        for member in members:
            entry = self._plan_entry(member, offset, central_at)
            entries.append(entry)
            offset = entry.end
            central_at += entry.central_len
        self.entries: tuple[_Entry, ...] = tuple(entries)
        self._starts = [e.offset for e in entries]
        # Each entry's header records, their CRC 0, rendered the first time one is asked
        # for: an archive sent again (a plan reused) renders none.
        self._local: list[bytes | None] = [None] * len(entries)
        self._central: list[bytes | None] = [None] * len(entries)
        self.central_offset = offset
        self.central_size = central_at
        self.zip64_end = (
            len(entries) >= limits.max_entries
            or offset >= limits.zip64_at
            or central_at >= limits.zip64_at
        )
        tail = _ZIP64_END.size + _ZIP64_LOCATOR.size if self.zip64_end else 0
        self.end_offset = offset + central_at
        self.end_size = tail + _END.size
        self.size = self.end_offset + self.end_size

    def _plan_entry(self, member: Member, offset: int, central_at: int) -> _Entry:
        if member.size < 0:
            raise ValueError(f"negative size for {member.name!r}")
        name = member.name.encode("utf-8")
        if not name or len(name) > _U16 - 64:
            raise ValueError(f"bad member name length: {member.name!r}")
        utf8 = not name.isascii()
        zip64_size = member.size >= self.limits.zip64_at
        zip64_offset = offset >= self.limits.zip64_at
        extras = _extra_lengths(utf8, len(name))
        local_len = _LOCAL.size + len(name) + extras + (20 if zip64_size else 0)
        zip64_central = 4 + 16 * zip64_size + 8 * zip64_offset
        central_len = (
            _CENTRAL.size
            + len(name)
            + extras
            + (zip64_central if zip64_size or zip64_offset else 0)
        )
        return _Entry(
            member, name, utf8, offset, local_len, zip64_size, zip64_offset, central_at, central_len
        )

    # -- mapping byte ranges to parts ------------------------------------------------

    def pieces(self, start: int = 0, stop: int | None = None) -> Iterator[Piece]:
        """The parts covering archive bytes [start, stop), in order."""
        stop = self.size if stop is None else stop
        if not 0 <= start <= stop <= self.size:
            raise ValueError(f"range [{start}, {stop}) outside archive of {self.size} bytes")
        local, data = Part.LOCAL, Part.DATA
        for index in range(self.entry_at(start), len(self.entries)):
            entry = self.entries[index]
            at = entry.offset
            if at >= stop:
                return
            end = at + entry.local_len  # _clip inlined: this runs twice a member
            lo, hi = max(start, at), min(stop, end)
            if lo < hi:
                yield Piece(local, index, lo - at, hi - at)
            at, end = end, end + entry.member.size
            lo, hi = max(start, at), min(stop, end)
            if lo < hi:
                yield Piece(data, index, lo - at, hi - at)
        yield from _clip(Part.CENTRAL, -1, self.central_offset, self.central_size, start, stop)
        yield from _clip(Part.END, -1, self.end_offset, self.end_size, start, stop)

    def entry_at(self, offset: int) -> int:
        """The index of the entry whose local header or body holds byte ``offset`` (0 when
        there is none before it)."""
        return max(bisect.bisect_right(self._starts, offset) - 1, 0)

    def central_entries(self, start: int, stop: int) -> range:
        """Indexes of the entries whose central records overlap [start, stop) of CENTRAL."""
        ats = [e.central_at for e in self.entries]
        first = max(bisect.bisect_right(ats, start) - 1, 0)
        last = bisect.bisect_left(ats, stop)
        return range(first, last)

    # -- rendering ---------------------------------------------------------------------

    def local_header(self, index: int, crc: int) -> bytes:
        header = self._local[index]
        if header is None:
            header = self._local[index] = self._render_local(index)
        return header[:14] + crc.to_bytes(4, "little") + header[18:]

    def central_record(self, index: int, crc: int) -> bytes:
        record = self._central[index]
        if record is None:
            record = self._central[index] = self._render_central(index)
        return record[:16] + crc.to_bytes(4, "little") + record[20:]

    def _render_local(self, index: int) -> bytes:
        """The local header, its CRC 0 (bytes 14–17)."""
        entry = self.entries[index]
        size32 = _U32 if entry.zip64_size else entry.member.size
        zip64 = _zip64_extra(*((entry.member.size, entry.member.size) if entry.zip64_size else ()))
        extra = zip64 + _common_extras(entry)
        dos_time, dos_date = dos_datetime(entry.member.mtime)
        head = _LOCAL.pack(
            LOCAL_SIG,
            entry.version,
            FLAG_UTF8 if entry.utf8 else 0,
            0,  # stored
            dos_time,
            dos_date,
            0,  # the CRC
            size32,
            size32,
            len(entry.name),
            len(extra),
        )
        return head + entry.name + extra

    def _render_central(self, index: int) -> bytes:
        """The central directory record, its CRC 0 (bytes 16–19)."""
        entry = self.entries[index]
        size = entry.member.size
        values: list[int] = [size, size] if entry.zip64_size else []
        if entry.zip64_offset:
            values.append(entry.offset)
        extra = _zip64_extra(*values) + _common_extras(entry)
        dos_time, dos_date = dos_datetime(entry.member.mtime)
        head = _CENTRAL.pack(
            CENTRAL_SIG,
            MADE_BY,
            entry.version,
            FLAG_UTF8 if entry.utf8 else 0,
            0,
            dos_time,
            dos_date,
            0,  # the CRC
            _U32 if entry.zip64_size else size,
            _U32 if entry.zip64_size else size,
            len(entry.name),
            len(extra),
            0,  # comment length
            0,  # disk number start
            0,  # internal attributes
            FILE_ATTRS,
            _U32 if entry.zip64_offset else entry.offset,
        )
        return head + entry.name + extra

    def end_records(self) -> bytes:
        count, cd_size, cd_offset = len(self.entries), self.central_size, self.central_offset
        at, most = self.limits.zip64_at, self.limits.max_entries
        tail = b""
        if self.zip64_end:
            tail = _ZIP64_END.pack(
                ZIP64_END_SIG, 44, MADE_BY, VERSION_ZIP64, 0, 0, count, count, cd_size, cd_offset
            ) + _ZIP64_LOCATOR.pack(ZIP64_LOCATOR_SIG, 0, self.end_offset, 1)
        count16 = _U16 if count >= most else count
        return tail + _END.pack(
            END_SIG,
            0,
            0,
            count16,
            count16,
            _U32 if cd_size >= at else cd_size,
            _U32 if cd_offset >= at else cd_offset,
            0,
        )


def _clip(part: Part, index: int, at: int, length: int, start: int, stop: int) -> Iterator[Piece]:
    lo, hi = max(start, at), min(stop, at + length)
    if lo < hi:
        yield Piece(part, index, lo - at, hi - at)


def _zip64_extra(*values: int) -> bytes:
    if not values:
        return b""
    return _EXTRA_HEAD.pack(0x0001, 8 * len(values)) + struct.pack(f"<{len(values)}Q", *values)


def _common_extras(entry: _Entry) -> bytes:
    stamp = min(max(entry.member.mtime, 0), _TS_MAX)
    extra = _EXTRA_HEAD.pack(0x5455, 5) + struct.pack("<BI", 1, stamp)
    if entry.utf8:
        crc = zlib.crc32(entry.name)
        extra += _EXTRA_HEAD.pack(0x7075, 5 + len(entry.name)) + struct.pack("<BI", 1, crc)
        extra += entry.name
    return extra


@functools.lru_cache(maxsize=1 << 16)  # every header renders one; a folder repeats them
def dos_datetime(mtime: int) -> tuple[int, int]:
    """(time, date) in MS-DOS format, UTC, clamped to 1980–2107."""
    t = time.gmtime(min(max(mtime, _DOS_EPOCH), _DOS_LAST))
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return dos_time, dos_date
