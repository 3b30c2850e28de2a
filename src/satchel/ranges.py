"""Range and conditional requests, as pure functions over header values.

RFC 9110 §13.2.2 (order of preconditions), §13.1.5 (If-Range), §14.1.2 and
§14.2 (Range), §14.6 (multipart/byteranges). No IO, no aiohttp.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from enum import Enum

from satchel.numbers import saturating

MAX_RANGES = 32  # more (after merging) and we answer the whole body (§14.2 MAY ignore)

_RANGE_SPEC = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*$")
_ETAG = re.compile(r'\s*(W/)?("[^"]*")\s*(?:,|$)')


class Outcome(Enum):
    FULL = 200
    PARTIAL = 206
    NOT_MODIFIED = 304
    PRECONDITION_FAILED = 412
    UNSATISFIABLE = 416


@dataclass(frozen=True, slots=True)
class Decision:
    outcome: Outcome
    ranges: tuple[tuple[int, int], ...] = ()  # [start, stop) pairs when PARTIAL


@dataclass(frozen=True, slots=True)
class Validators:
    etag: str  # strong, quoted: '"abc"'
    last_modified: int  # unix seconds
    size: int


def http_date(seconds: int) -> str:
    return format_datetime(datetime.fromtimestamp(seconds, UTC), usegmt=True)


def parse_http_date(value: str) -> int | None:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def parse_etags(value: str) -> list[tuple[bool, str]] | None:
    """[(weak, '"tag"'), ...]; None for '*'. Malformed parts are dropped."""
    if value.strip() == "*":
        return None
    return [(bool(m.group(1)), m.group(2)) for m in _ETAG.finditer(value)]


def _matches(header: str, etag: str, *, weak_ok: bool) -> bool:
    tags = parse_etags(header)
    if tags is None:
        return True
    return any(tag == etag and (weak_ok or not weak) for weak, tag in tags)


def parse_range(value: str, size: int) -> list[tuple[int, int]] | None:
    """Satisfiable [start, stop) ranges, merged and sorted; [] if none; None if invalid.

    An invalid header (wrong unit, bad syntax) is ignored by the caller (§14.2).
    """
    unit, _, specs = value.partition("=")
    if unit.strip().lower() != "bytes" or not specs.strip():
        return None
    ranges: list[tuple[int, int]] = []
    for spec in specs.split(","):
        if not spec.strip():
            continue
        m = _RANGE_SPEC.match(spec)
        if m is None or (not m.group(1) and not m.group(2)):
            return None
        first, last = m.group(1), m.group(2)
        if first:
            start = saturating(first)
            stop = size if not last else saturating(last) + 1
            if last and stop <= start:
                return None
            if start >= size:
                continue  # unsatisfiable on its own
            ranges.append((start, min(stop, size)))
        else:
            suffix = saturating(last)
            if suffix == 0 or size == 0:
                continue
            ranges.append((max(size - suffix, 0), size))
    return merge(ranges)


def merge(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def evaluate(method: str, headers: Mapping[str, str], v: Validators) -> Decision:
    """Decide the response to a GET or HEAD before any byte is sent."""
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _matches(if_match, v.etag, weak_ok=False):
            return Decision(Outcome.PRECONDITION_FAILED)
    elif (ius := headers.get("If-Unmodified-Since")) is not None:
        date = parse_http_date(ius)
        if date is not None and v.last_modified > date:
            return Decision(Outcome.PRECONDITION_FAILED)
    if_none_match = headers.get("If-None-Match")
    if if_none_match is not None:
        if _matches(if_none_match, v.etag, weak_ok=True):
            return Decision(Outcome.NOT_MODIFIED)
    elif (ims := headers.get("If-Modified-Since")) is not None:
        date = parse_http_date(ims)
        if date is not None and v.last_modified <= date:
            return Decision(Outcome.NOT_MODIFIED)
    range_header = headers.get("Range")
    if method != "GET" or range_header is None or not _if_range_holds(headers, v):
        return Decision(Outcome.FULL)
    ranges = parse_range(range_header, v.size)
    if ranges is None or len(ranges) > MAX_RANGES:
        return Decision(Outcome.FULL)
    if not ranges:
        return Decision(Outcome.UNSATISFIABLE)
    return Decision(Outcome.PARTIAL, tuple(ranges))


def _if_range_holds(headers: Mapping[str, str], v: Validators) -> bool:
    value = headers.get("If-Range")
    if value is None:
        return True
    value = value.strip()
    if value.startswith(('"', "W/")):
        return value == v.etag  # strong comparison only (§13.1.5)
    return parse_http_date(value) == v.last_modified


# -- multipart/byteranges -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Multipart:
    """The exact body of a multipart/byteranges response, as literals and ranges."""

    boundary: str
    content_type: str
    size: int
    ranges: tuple[tuple[int, int], ...]

    @property
    def media_type(self) -> str:
        return f"multipart/byteranges; boundary={self.boundary}"

    def _head(self, start: int, stop: int) -> bytes:
        return (
            f"--{self.boundary}\r\nContent-Type: {self.content_type}\r\n"
            f"Content-Range: bytes {start}-{stop - 1}/{self.size}\r\n\r\n"
        ).encode("ascii")

    def parts(self) -> Iterator[bytes | tuple[int, int]]:
        for i, (start, stop) in enumerate(self.ranges):
            yield (b"\r\n" if i else b"") + self._head(start, stop)
            yield (start, stop)
        yield f"\r\n--{self.boundary}--\r\n".encode("ascii")

    @property
    def length(self) -> int:
        return sum(len(p) if isinstance(p, bytes) else p[1] - p[0] for p in self.parts())


def content_range(start: int, stop: int, size: int) -> str:
    return f"bytes {start}-{stop - 1}/{size}"
