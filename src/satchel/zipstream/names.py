"""Member names that every unzipper extracts where they belong.

A ZIP names its members with '/'-separated paths, and each unzipper maps them onto its
own file system. Names that one of them could turn into an escape or a device are
never written: a backslash (a separator on Windows, so ``..\\..\\x`` climbs out), a
drive letter, a dot segment, a control character, and the names Windows keeps for
devices (``CON``, ``NUL.txt``, ``COM1``…). Windows also drops trailing dots and spaces,
so ``.. `` would become ``..``: those are refused too. Pure: no IO.
"""

from __future__ import annotations

import re

MAX_NAME_BYTES = 4096
MAX_SEGMENT_BYTES = 255

_DEVICES = re.compile(r"(CON|PRN|AUX|NUL|CONIN\$|CONOUT\$|(COM|LPT)[0-9¹²³])", re.IGNORECASE)
_DRIVE = re.compile(r".:", re.DOTALL)  # ntpath reads any "X:" as a drive
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")  # Unicode's Cc and Cs
# ASCII letters, digits, "_", "-" and inner dots, at most 255, and not a device name: no
# rule below refuses one
_PLAIN = re.compile(
    r"(?!(?i:CON|PRN|AUX|NUL|COM[0-9]|LPT[0-9])(?:\.|\Z))"
    r"[A-Za-z0-9_-](?:[A-Za-z0-9_.-]{0,253}[A-Za-z0-9_-])?"
)


def unsafe_reason(name: str) -> str | None:
    """Why ``name`` (a relative '/'-separated path) is not a safe member name, or None."""
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    for segment in name.split("/"):
        reason = segment_reason(segment)
        if reason is not None:
            return reason
    return None


def segment_reason(segment: str) -> str | None:
    """Why one segment (a file or folder name) is not safe in a member name, or None."""
    if plain_segment(segment):
        return None
    return _segment_rules(segment)


def plain_segment(segment: str) -> bool:
    """Whether ``segment`` is one most names are: safe by one regex (a scan asks per
    file), and ASCII."""
    return _PLAIN.fullmatch(segment) is not None


def _segment_rules(segment: str) -> str | None:
    if segment in ("", ".", ".."):
        return "it has an empty, '.' or '..' segment"
    if len(segment.encode("utf-8", "surrogatepass")) > MAX_SEGMENT_BYTES:
        return f"a segment is longer than {MAX_SEGMENT_BYTES} bytes"
    if "\\" in segment:
        return "it has a backslash, a separator on Windows"
    if _DRIVE.match(segment):
        return "a segment starts like a drive (X:)"
    if _CONTROL.search(segment):
        return "it has a control character"
    if segment[-1] in ". ":
        return "a segment ends in a dot or a space, which Windows drops"
    if _DEVICES.fullmatch(segment.split(".", 1)[0].rstrip(" ")):
        return f"{segment!r} is a device name on Windows"
    return None
