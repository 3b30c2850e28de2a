"""Content-Digest / Repr-Digest as clients declare them (RFC 9530)."""

from __future__ import annotations

import base64
import hashlib

import pytest

from satchel.digests import parse_digests
from satchel.errors import BadRequest

SHA = hashlib.sha256(b"body").digest()
VALUE = f"sha-256=:{base64.b64encode(SHA).decode()}:"


def test_either_header_or_both_agreeing_give_the_digest() -> None:
    assert parse_digests({"Content-Digest": VALUE}) == SHA
    assert parse_digests({"Repr-Digest": f"md5=:AAAA:, {VALUE}"}) == SHA  # others ignored
    assert parse_digests({"Content-Digest": VALUE, "Repr-Digest": VALUE}) == SHA
    assert parse_digests({}) is None
    assert parse_digests({"Content-Digest": "sha-512=:AAAA:"}) is None


@pytest.mark.parametrize(
    "headers",
    [{"Content-Digest": "sha-256=AAAA"}, {"Content-Digest": "sha-256=:not base64!:"},
     {"Content-Digest": "sha-256=:AAAA:"},  # 3 bytes, not 32
     {"Content-Digest": VALUE, "Repr-Digest": "sha-256=:" + "A" * 43 + "=:"}],
)  # fmt: skip
def test_malformed_or_disagreeing_digests_are_a_400(headers: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        parse_digests(headers)
