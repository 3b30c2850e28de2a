"""Webhooks, the pure part: an event as JSON, signed as Standard Webhooks sign them
(standardwebhooks.com): ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``
(``v1,`` and the base64 HMAC-SHA256 of ``<id>.<timestamp>.<body>``), with a secret
given as ``whsec_<base64>``; and when to try again. No IO."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from datetime import datetime
from typing import NamedTuple

EVENTS = ("file.stored", "file.deleted", "file.expired", "upload.started", "share.closed")
MIN_SECRET_BYTES = 16
PREFIX = "whsec_"
LONGEST_WAIT = 3600.0  # seconds between tries, at most


class Delivery(NamedTuple):
    """One event to one endpoint, as the outbox holds it."""

    id: str  # the webhook-id
    url: str
    body: str
    tries: int  # failed so far
    created_at: datetime


def parse_secret(text: str) -> bytes:
    """The key of a ``whsec_<base64>`` secret (the prefix may be left out)."""
    encoded = text.strip().removeprefix(PREFIX)
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ and base64") from None
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"a webhook secret must hold at least {MIN_SECRET_BYTES} bytes")
    return key


def new_message_id() -> str:
    return f"msg_{secrets.token_urlsafe(18)}"


def event_body(event_type: str, data: dict[str, object], at: datetime) -> str:
    """The JSON an endpoint receives, as Standard Webhooks shape it."""
    stamp = at.isoformat().replace("+00:00", "Z")
    event = {"type": event_type, "timestamp": stamp, "data": data}
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def signed_headers(key: bytes, message_id: str, body: bytes, now: float) -> dict[str, str]:
    """The headers of one try: signed at the time it is made, so a late retry is
    still within a receiver's tolerance."""
    timestamp = str(int(now))
    mac = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
    }


def retry_after(tries: int, first: float) -> float:
    """Seconds before the next try after ``tries`` failed ones: doubling from ``first``."""
    return min(first * 2.0 ** max(tries - 1, 0), LONGEST_WAIT)
