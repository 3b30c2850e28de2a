"""Signed, expiring links: ``?expires=<unix time>&sig=<mac>`` on an archive or file
link. Pure: no clock, no IO; the caller says what time it is.

The MAC is HMAC-SHA256 over ``"<path>\\n<expires>"`` in UTF-8, where the path is the
resource's canonical one (``/archive/<folder>/``, ``/archive/m/<selection id>/``,
``/files/<id>/``), decoded, and it is
written in URL-safe base64 without padding. Several secrets may be accepted at once,
for rotation; links are made with the first.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
from collections.abc import Sequence

MIN_SECRET = 16  # characters of a secret


class Verdict(enum.Enum):
    UNSIGNED = "unsigned"  # neither expires nor sig
    VALID = "valid"
    EXPIRED = "expired"  # a good signature whose time has passed
    FORGED = "forged"  # a signature no secret made, or a malformed one


def signature(secret: bytes, path: str, expires: int) -> str:
    mac = hmac.new(secret, f"{path}\n{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")


def signed_query(secret: bytes, path: str, expires: int) -> str:
    return f"expires={expires}&sig={signature(secret, path, expires)}"


def verify(
    secrets: Sequence[bytes], path: str, expires: str | None, sig: str | None, now: float
) -> Verdict:
    """What a link's ``expires`` and ``sig`` values say about it. The signature is
    checked first, in constant time against every secret, so that a forged link never
    learns whether its time had passed."""
    if expires is None and sig is None:
        return Verdict.UNSIGNED
    if expires is None or sig is None or not _UNIX_TIME.fullmatch(expires):
        return Verdict.FORGED
    given, at = sig.encode("utf-8"), int(expires)
    matches = [hmac.compare_digest(signature(s, path, at).encode(), given) for s in secrets]
    if not any(matches):
        return Verdict.FORGED
    return Verdict.VALID if at > now else Verdict.EXPIRED


_UNIX_TIME = re.compile(r"[0-9]{1,12}")
_LINK = re.compile(r"(?:[a-z]+://[^/]*)?/(archive/m|archive|files|download)/([^/?#]+)/?(?:[?#].*)?")


def canonical(link: str) -> str | None:
    """The path a link's signature covers: ``/archive/<folder>/``, ``/archive/m/<id>/``
    or ``/files/<id>/`` from any spelling Satchel serves (a full URL, with or without the
    last slash, ``/download/<id>``); None for anything else."""
    match = _LINK.fullmatch(link)
    if match is None:
        return None
    kind, name = match.groups()
    return f"/{kind}/{name}/" if kind.startswith("archive") else f"/files/{name}/"
