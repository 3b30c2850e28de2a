"""Whole numbers from the wire: one strict parser for every header and query value.

Python's ``int()`` takes what no HTTP grammar allows (``²``, ``١``, ``1_000``, ``+5``,
surrounding whitespace of any kind) and raises on more than 4,300 digits, so a
number a client sends is never handed to it unchecked.
"""

from __future__ import annotations

from satchel.errors import BadRequest

INT64_MAX = 2**63 - 1  # a BIGINT column
INT32_MAX = 2**31 - 1  # an INTEGER column (PostgreSQL's is 32 bits)
_MAX_DIGITS = 19  # INT64_MAX has 19


def ascii_digits(text: str) -> bool:
    """``text`` is one or more of 0-9 and nothing else (RFC 9110's 1*DIGIT)."""
    return text.isascii() and text.isdigit()


def parse_int(name: str, value: str, *, low: int = 0, high: int = INT64_MAX) -> int:
    """``value`` as a whole number in [low, high]; 400 naming ``name`` otherwise.

    Spaces and tabs around it are allowed (header whitespace); nothing else is.
    """
    text = value.strip(" \t")
    digits = text.lstrip("0") or "0"
    if not ascii_digits(text) or len(digits) > _MAX_DIGITS or not low <= int(digits) <= high:
        raise BadRequest(
            f"{name} must be a whole number from {low} to {high}, not {_shown(value)}.",
            field=name,
        )
    return int(digits)


def saturating(text: str, ceiling: int = 10**18) -> int:
    """ASCII digits as a number, where any value past ``ceiling`` is ``ceiling``: for
    positions (a byte range's ends) that only compare against sizes below it."""
    digits = text.lstrip("0") or "0"
    return ceiling if len(digits) > len(str(ceiling)) else min(int(digits), ceiling)


def _shown(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:40]) + "…"
