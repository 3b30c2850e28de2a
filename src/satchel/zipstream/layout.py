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
import itertools
import operator
import struct
import time
import zlib
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

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
_TIME_EXTRA = struct.Struct("<HHBI")  # 0x5455, 5, flags (mtime only), the mtime
_CRC = struct.Struct("<I")

_U32 = 0xFFFFFFFF
_U16 = 0xFFFF
_DOS_EPOCH = 315532800  # 1980-01-01T00:00:00Z, the earliest DOS date
_DOS_LAST = 4354819198  # 2107-12-31T23:59:58Z, the latest DOS date
_TS_MAX = 0x7FFFFFFF  # 0x5455 holds a 32-bit time; readers treat it as signed


class Member(NamedTuple):  # a tuple: a plan makes one a file, three times as fast
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


def small_first(members: Sequence[Member], limits: Limits = Limits()) -> list[Member]:
    """The members in their order, but never opening with a ZIP64 entry when avoidable.

    Safari's auto-extract keeps only the first entry of an archive whose first
    entry is ZIP64; a small file in front avoids that.
    """
    ordered = list(members)
    if first := first_small([m.size for m in ordered], limits):
        ordered.insert(0, ordered.pop(first))
    return ordered


def first_small(sizes: Sequence[int], limits: Limits = Limits()) -> int:
    """Which entry :func:`small_first` puts first: 0, unless that one needs ZIP64 and
    another does not."""
    if not sizes or sizes[0] < limits.zip64_at:
        return 0
    return next((i for i, size in enumerate(sizes) if size < limits.zip64_at), 0)


class Layout:
    """Exact byte layout of the archive of the members (``names``, ``sizes``, ``mtimes``
    in UTC seconds), in the given order. ``Layout.of`` takes :class:`Member` s.

    Compact: a member is its encoded name and a few numbers in arrays, no object of its
    own (an archive of 100,000 files would otherwise hold 100,000 of each kind). ``sizes``,
    ``offsets`` (of each local header), ``data_ats`` (of each body) and ``central_ats``
    (of each central record, from the central directory's start) are read-only."""

    def __init__(
        self,
        names: Sequence[str],
        sizes: Sequence[int],
        mtimes: Sequence[int],
        limits: Limits = Limits(),
        *,
        keep_rendered: bool = True,
    ) -> None:
        self.limits = limits
        z = limits.zip64_at
        encoded = [name.encode("utf-8") for name in names]
        sizes = array("q", sizes)
        if sizes and min(sizes) < 0:
            raise ValueError(f"negative size for {names[sizes.index(min(sizes))]!r}")
        lengths = list(map(len, encoded))
        if lengths and not 0 < min(lengths) <= max(lengths) <= _U16 - 64:
            bad = next(i for i, n in enumerate(lengths) if not 0 < n <= _U16 - 64)
            raise ValueError(f"bad member name length: {names[bad]!r}")
        # Arrays, not lists, wherever the numbers are large: a list would hold an object
        # for each (100,000 members: 3 MB a list, for as long as the plan is made).
        # name, the 0x5455 extra, the 0x7075 one (non-ASCII names), the ZIP64 one (sizes)
        extras = (
            list(map((9).__add__, lengths))
            if b"".join(encoded).isascii()
            else [
                n + 9 + (0 if raw.isascii() else 9 + n)
                for n, raw in zip(lengths, encoded, strict=True)
            ]
        )
        # most archives need no ZIP64 extra anywhere: their records are summed in C
        small = not sizes or max(sizes) < z
        local = array(
            "q",
            map(_LOCAL.size.__add__, extras)
            if small
            else (
                _LOCAL.size + e + (20 if size >= z else 0)
                for e, size in zip(extras, sizes, strict=True)
            ),
        )
        ends: array[int] = array("q", itertools.accumulate(map(operator.add, local, sizes)))
        offsets = array("q", [0]) + ends[:-1] if ends else array("q")
        central_ends = array(
            "q",
            itertools.accumulate(
                map(_CENTRAL.size.__add__, extras)
                if small and (not offsets or offsets[-1] < z)
                else (
                    _CENTRAL.size + e + _zip64_central(size >= z, offset >= z)
                    for e, size, offset in zip(extras, sizes, offsets, strict=True)
                )
            ),
        )
        self._names = encoded
        self._mtimes = array("q", mtimes)
        self.sizes = sizes
        self.offsets = offsets
        self.data_ats: array[int] = array("q", map(operator.add, offsets, local))
        self.central_ats = array("q", [0]) + central_ends[:-1] if central_ends else array("q")
        # Each entry's header records, their CRC 0, kept once rendered when the layout is
        # to be reused (an archive sent again renders none); else each is rendered when
        # asked for, as an archive asks once (a kept record costs about 200 bytes).
        self._local: list[bytes | None] | None = [None] * len(names) if keep_rendered else None
        self._central: list[bytes | None] | None = [None] * len(names) if keep_rendered else None
        self.central_offset = ends[-1] if ends else 0
        self.central_size = central_ends[-1] if central_ends else 0
        self.zip64_end = (
            len(names) >= limits.max_entries or self.central_offset >= z or self.central_size >= z
        )
        tail = _ZIP64_END.size + _ZIP64_LOCATOR.size if self.zip64_end else 0
        self.end_offset = self.central_offset + self.central_size
        self.end_size = tail + _END.size
        self.size = self.end_offset + self.end_size

    @classmethod
    def of(
        cls, members: Sequence[Member], limits: Limits = Limits(), *, keep_rendered: bool = True
    ) -> Layout:
        return cls(
            [m.name for m in members],
            [m.size for m in members],
            [m.mtime for m in members],
            limits,
            keep_rendered=keep_rendered,
        )

    def __len__(self) -> int:
        return len(self._names)

    def end(self, index: int) -> int:
        """Where the body of entry ``index`` ends."""
        return self.data_ats[index] + self.sizes[index]

    # -- mapping byte ranges to parts ------------------------------------------------

    def pieces(self, start: int = 0, stop: int | None = None) -> Iterator[Piece]:
        """The parts covering archive bytes [start, stop), in order."""
        stop = self.size if stop is None else stop
        if not 0 <= start <= stop <= self.size:
            raise ValueError(f"range [{start}, {stop}) outside archive of {self.size} bytes")
        local, data = Part.LOCAL, Part.DATA
        offsets, data_ats, sizes = self.offsets, self.data_ats, self.sizes
        for index in range(self.entry_at(start), len(self)):
            at = offsets[index]
            if at >= stop:
                return
            end = data_ats[index]  # _clip inlined: this runs twice a member
            lo, hi = max(start, at), min(stop, end)
            if lo < hi:
                yield Piece(local, index, lo - at, hi - at)
            at, end = end, end + sizes[index]
            lo, hi = max(start, at), min(stop, end)
            if lo < hi:
                yield Piece(data, index, lo - at, hi - at)
        yield from _clip(Part.CENTRAL, -1, self.central_offset, self.central_size, start, stop)
        yield from _clip(Part.END, -1, self.end_offset, self.end_size, start, stop)

    def entry_at(self, offset: int) -> int:
        """The index of the entry whose local header or body holds byte ``offset`` (0 when
        there is none before it)."""
        return max(bisect.bisect_right(self.offsets, offset) - 1, 0)

    def central_entries(self, start: int, stop: int) -> range:
        """Indexes of the entries whose central records overlap [start, stop) of CENTRAL."""
        first = max(bisect.bisect_right(self.central_ats, start) - 1, 0)
        last = bisect.bisect_left(self.central_ats, stop)
        return range(first, last)

    # -- rendering ---------------------------------------------------------------------

    def local_header(self, index: int, crc: int) -> bytes:
        header = _rendered(self._local, index, self._render_local)
        return header[:14] + crc.to_bytes(4, "little") + header[18:]

    def put_local_header(self, into: bytearray, at: int, index: int, crc: int) -> None:
        """Write entry ``index``'s local header, with ``crc``, into ``into`` at ``at``
        (``local_header`` without its three copies)."""
        header = _rendered(self._local, index, self._render_local)
        into[at : at + len(header)] = header
        _CRC.pack_into(into, at + 14, crc)

    def central(self, start: int, stop: int, crcs: Sequence[int]) -> bytearray:
        """Bytes [start, stop) of the central directory, each record with its entry's CRC
        from ``crcs``: the records joined at once, their CRCs written in place (a record
        at a time costs three copies a member)."""
        entries = self.central_entries(start, stop)
        if not entries:
            return bytearray()
        ats, base = self.central_ats, self.central_ats[entries.start]
        out = bytearray().join([_rendered(self._central, i, self._render_central) for i in entries])
        for index in entries:
            _CRC.pack_into(out, ats[index] - base + 16, crcs[index])
        del out[stop - base :]
        del out[: start - base]
        return out

    def _render_local(self, index: int) -> bytes:
        """The local header, its CRC 0 (bytes 14–17)."""
        name, size, z = self._names[index], self.sizes[index], self.limits.zip64_at
        extra = self._common_extras(index)
        if size >= z:
            extra = _zip64_extra(size, size) + extra
        size32 = _U32 if size >= z else size
        dos_time, dos_date = dos_datetime(self._mtimes[index])
        head = _LOCAL.pack(
            LOCAL_SIG,
            VERSION_ZIP64 if size >= z or self.offsets[index] >= z else VERSION_DEFAULT,
            0 if name.isascii() else FLAG_UTF8,
            0,  # stored
            dos_time,
            dos_date,
            0,  # the CRC
            size32,
            size32,
            len(name),
            len(extra),
        )
        return head + name + extra

    def _render_central(self, index: int) -> bytes:
        """The central directory record, its CRC 0 (bytes 16–19)."""
        name, size, offset = self._names[index], self.sizes[index], self.offsets[index]
        z = self.limits.zip64_at
        extra = self._common_extras(index)
        if size >= z or offset >= z:
            values = ([size, size] if size >= z else []) + ([offset] if offset >= z else [])
            extra = _zip64_extra(*values) + extra
        size32 = _U32 if size >= z else size
        dos_time, dos_date = dos_datetime(self._mtimes[index])
        head = _CENTRAL.pack(
            CENTRAL_SIG,
            MADE_BY,
            VERSION_ZIP64 if size >= z or offset >= z else VERSION_DEFAULT,
            0 if name.isascii() else FLAG_UTF8,
            0,
            dos_time,
            dos_date,
            0,  # the CRC
            size32,
            size32,
            len(name),
            len(extra),
            0,  # comment length
            0,  # disk number start
            0,  # internal attributes
            FILE_ATTRS,
            _U32 if offset >= z else offset,
        )
        return head + name + extra

    def _common_extras(self, index: int) -> bytes:
        """The 0x5455 extra (the mtime) and, for a non-ASCII name, the 0x7075 one."""
        name = self._names[index]
        extra = _TIME_EXTRA.pack(0x5455, 5, 1, min(max(self._mtimes[index], 0), _TS_MAX))
        if not name.isascii():
            crc = zlib.crc32(name)
            extra += _EXTRA_HEAD.pack(0x7075, 5 + len(name)) + struct.pack("<BI", 1, crc)
            extra += name
        return extra

    def end_records(self) -> bytes:
        count, cd_size, cd_offset = len(self), self.central_size, self.central_offset
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
    return _EXTRA_HEAD.pack(0x0001, 8 * len(values)) + struct.pack(f"<{len(values)}Q", *values)


def _rendered(kept: list[bytes | None] | None, index: int, render: Callable[[int], bytes]) -> bytes:
    """Entry ``index``'s record from ``kept``; rendered when missing, and kept if ``kept``
    is a list."""
    record = kept[index] if kept is not None else None
    if record is None:
        record = render(index)
        if kept is not None:
            kept[index] = record
    return record


def _zip64_central(zip64_size: bool, zip64_offset: bool) -> int:
    """Bytes of a central record's ZIP64 extra."""
    return 4 + 16 * zip64_size + 8 * zip64_offset if zip64_size or zip64_offset else 0


@functools.lru_cache(maxsize=1 << 16)  # every header renders one; a folder repeats them
def dos_datetime(mtime: int) -> tuple[int, int]:
    """(time, date) in MS-DOS format, UTC, clamped to 1980–2107."""
    t = time.gmtime(min(max(mtime, _DOS_EPOCH), _DOS_LAST))
    dos_time = (t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2)
    dos_date = ((t.tm_year - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday
    return dos_time, dos_date
