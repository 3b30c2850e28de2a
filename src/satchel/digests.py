"""Content-Digest and Repr-Digest (RFC 9530) as a client declares them. Pure."""

from __future__ import annotations

import base64
from collections.abc import Mapping

from satchel.errors import BadRequest


def parse_digests(headers: Mapping[str, str]) -> bytes | None:
    """The SHA-256 a client declared in Content-Digest or Repr-Digest (RFC 9530), if any.

    For an upload without content coding both digests cover the same bytes.
    """
    declared: set[bytes] = set()
    for name in ("Content-Digest", "Repr-Digest"):
        value = headers.get(name)
        if value is None:
            continue
        for member in value.split(","):
            algorithm, _, encoded = member.strip().partition("=")
            if algorithm.strip().lower() != "sha-256":
                continue  # unsupported algorithms may be ignored (RFC 9530 §2)
            encoded = encoded.strip()
            try:
                if not (encoded.startswith(":") and encoded.endswith(":")):
                    raise ValueError("not a byte sequence")
                digest = base64.b64decode(encoded[1:-1], validate=True)
            except ValueError as exc:
                raise BadRequest(f"{name}: sha-256 must be :base64:, got {encoded!r}") from exc
            if len(digest) != 32:
                raise BadRequest(f"{name}: a sha-256 digest has 32 bytes, not {len(digest)}")
            declared.add(digest)
    if len(declared) > 1:
        raise BadRequest("Content-Digest and Repr-Digest disagree")
    return declared.pop() if declared else None
