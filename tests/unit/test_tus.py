"""The pure tus rules: metadata, checksums, numbers."""

from __future__ import annotations

import base64
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel.errors import BadRequest
from satchel.tus.rules import encode_metadata, parse_checksum, parse_metadata, parse_number

keys = st.from_regex(r"[A-Za-z0-9_.-]{1,20}", fullmatch=True)
values = st.one_of(st.none(), st.text(min_size=1, max_size=50))


@given(st.dictionaries(keys, values, max_size=8))
def test_metadata_round_trips(metadata: dict[str, str | None]) -> None:
    assert parse_metadata(encode_metadata(metadata)) == metadata


@pytest.mark.parametrize(
    "header",
    [
        "filename",  # fine: a key without a value
        "filename d29ybGQ=, filetype dGV4dC9wbGFpbg==",
    ],
)
def test_metadata_as_clients_send_it(header: str) -> None:
    assert parse_metadata(header)


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("file name d29ybGQ=", "not base64"),  # a space in the key splits it
        ("a/b,c d29ybGQ=", "valid key"),
        ("k d29ybGQ=,k d29ybGQ=", "twice"),
        ("k !!!", "not base64"),
        ("k " + base64.b64encode(b"\xff\xfe").decode(), "not base64 UTF-8"),
    ],
)
def test_bad_metadata_is_a_400(header: str, fragment: str) -> None:
    with pytest.raises(BadRequest, match=fragment):
        parse_metadata(header)


def test_checksums() -> None:
    digest = base64.b64encode(hashlib.sha256(b"x").digest()).decode()
    parsed = parse_checksum(f"SHA256 {digest}")
    assert parsed is not None and parsed.algorithm == "sha256"
    assert parsed.digest == hashlib.sha256(b"x").digest()
    assert parse_checksum(None) is None
    for bad, fragment in [
        (f"crc32 {digest}", "not supported"),
        ("sha1 ***", "not base64"),
        (f"md5 {digest}", "different length"),
    ]:
        with pytest.raises(BadRequest, match=fragment):
            parse_checksum(bad)


def test_numbers() -> None:
    assert parse_number("Upload-Offset", "0") == 0
    assert parse_number("Upload-Offset", None) is None
    for bad in ("-1", "1.5", "", "1e3", "9" * 20):
        with pytest.raises(BadRequest, match="Upload-Offset"):
            parse_number("Upload-Offset", bad)
