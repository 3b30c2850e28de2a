"""Webhooks' pure rules: signatures that the Standard Webhooks reference library
accepts, secrets, the shape of an event, the doubling wait."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook

from satchel.hooks.rules import event_body, parse_secret, retry_after, signed_headers

SECRET = "whsec_" + base64.b64encode(b"k" * 24).decode()


@given(st.binary(max_size=200), st.text(min_size=1, max_size=20))
def test_every_signature_verifies_with_the_reference_library(body: bytes, tail: str) -> None:
    now = datetime.now(UTC).timestamp()
    headers = signed_headers(parse_secret(SECRET), f"msg_{tail}", body, now)
    Webhook(SECRET).verify(body, headers, json_parse=False)
    with pytest.raises(Exception, match="signature"):
        Webhook("whsec_" + base64.b64encode(b"x" * 24).decode()).verify(body, headers)


def test_secrets_are_whsec_and_base64_of_sixteen_bytes_or_more() -> None:
    assert parse_secret(SECRET) == b"k" * 24
    assert parse_secret(SECRET.removeprefix("whsec_")) == b"k" * 24
    for bad in ("whsec_", "whsec_!!!", "whsec_" + base64.b64encode(b"short").decode()):
        with pytest.raises(ValueError):
            parse_secret(bad)


def test_an_event_is_type_timestamp_and_data() -> None:
    at = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    event = json.loads(event_body("file.stored", {"id": "x", "name": "фото"}, at))
    assert event == {
        "type": "file.stored",
        "timestamp": "2026-12-03T12:00:00Z",
        "data": {"id": "x", "name": "фото"},
    }


def test_waits_double_up_to_an_hour() -> None:
    assert [retry_after(n, 10) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_after(40, 10) == 3600
