"""Cross-origin requests (CORS): which origins may read Satchel's answers and send it
uploads. Pure: no IO; the HTTP layer turns a verdict into headers.

``--cors-origin`` names origins (``https://cms.example``), each allowed every method;
``*`` allows any origin to download (GET and HEAD) and nothing more, so a page of any
site may show an archive or a file, but only the listed ones may upload or delete.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

_ORIGIN = re.compile(
    r"https?://[a-z0-9.-]+(?::[0-9]{1,5})?|https?://\[[0-9a-f:.]+\](?::[0-9]{1,5})?"
)
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
DOWNLOADS = frozenset({"GET", "HEAD"})
METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"
# What a page's script may read of an answer beyond the safelisted headers: what tus
# clients need, the stored file's links, and what resuming a download needs.
EXPOSED = (
    "Location, Upload-Offset, Upload-Length, Upload-Expires, Upload-Metadata, "
    "Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm, "
    "Satchel-Download, Satchel-Check, Satchel-Delete, Satchel-File-Id, X-Url-Delete, "
    "X-Request-Id, Content-Disposition, Content-Range, Content-Length, ETag, "
    "Last-Modified, Repr-Digest, Retry-After"
)
MAX_AGE = "86400"  # seconds a browser may keep a preflight's answer


def parse_origins(values: Sequence[str]) -> tuple[str, ...]:
    """The origins, as browsers send them (lower case, no path); ValueError names a bad one."""
    origins = []
    for value in values:
        origin = value.strip().rstrip("/").lower()
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ValueError(f"not an origin (scheme://host[:port], or *): {value!r}")
        origins.append(origin)
    return tuple(origins)


@dataclass(frozen=True)
class Cors:
    origins: frozenset[str]

    @classmethod
    def of(cls, origins: Sequence[str]) -> Cors | None:
        return cls(frozenset(origins)) if origins else None

    def allow_origin(self, origin: str, method: str) -> str | None:
        """The ``Access-Control-Allow-Origin`` a request from ``origin`` gets for
        ``method``, or None: it is not allowed."""
        if origin.lower() in self.origins:
            return origin
        if "*" in self.origins and method in DOWNLOADS:
            return "*"
        return None

    @staticmethod
    def allow_headers(requested: str) -> str | None:
        """What a preflight may answer to ``Access-Control-Request-Headers``: the names
        it asked for, if each is a header name."""
        names = [name.strip() for name in requested.split(",") if name.strip()]
        if not all(_TOKEN.fullmatch(name) for name in names):
            return None
        return ", ".join(names)
