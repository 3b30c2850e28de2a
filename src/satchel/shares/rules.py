"""Shares: several stored files under one unguessable link, with their own expiry,
download limit and optional password. Pure: no IO (the KDF only burns CPU).

A share's files are served only through it (``/s/<id>/…``), so its password and its
download limit cannot be gone round by a file's own link. A download of the share is a
whole ``all.zip`` or a whole file of it; parts of a body (Range) count for nothing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import unicodedata
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from satchel.errors import BadRequest
from satchel.numbers import INT32_MAX
from satchel.zipstream.names import MAX_SEGMENT_BYTES, unsafe_reason

MAX_FILES = 10_000  # as many as an archive of a selection takes
MAX_BODY = 64 * 1024  # bytes of JSON in POST /shares/ and PATCH /shares/<id>
MAX_PASSWORD = 1024  # characters
SESSION = timedelta(hours=12)  # how long a password, once given, holds in a browser
COOKIE = "satchel_share"

# scrypt's cost: 2**15 × 8 × 128 bytes = 32 MiB and ~0.1 s a try (OWASP's second
# option). The record names its own cost, so a later, dearer one still verifies these.
_LOG_N, _R, _P = 15, 8, 1
_MAXMEM = 64 * 1024 * 1024


class Keep:
    """What a PATCH leaves out: the setting stays as it is."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP: Final = Keep()


@dataclass(frozen=True, slots=True)
class Share:
    id: str
    created_at: datetime
    expires_at: datetime
    max_downloads: int | None
    downloads: int = 0
    password: str | None = None  # the scrypt record, None without a password
    closed_at: datetime | None = None

    @property
    def downloads_left(self) -> int | None:
        return None if self.max_downloads is None else max(self.max_downloads - self.downloads, 0)

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def available(self, now: datetime) -> bool:
        return self.expires_at > now and self.downloads_left != 0


@dataclass(frozen=True, slots=True)
class Bounds:
    """The server's retention settings, which a share's own are held to."""

    default_days: int
    max_days: int
    default_downloads: int | None
    max_downloads: int | None


@dataclass(frozen=True, slots=True)
class NewShare:
    days: int
    max_downloads: int | None
    password: str | None


@dataclass(frozen=True, slots=True)
class Change:
    """A PATCH: each field KEEP where the body leaves it out."""

    days: int | Keep = KEEP
    max_downloads: int | None | Keep = KEEP
    password: str | None | Keep = KEEP
    close: bool = False


def parse_new(body: object, bounds: Bounds) -> NewShare:
    """The JSON of ``POST /shares/`` (an empty body is ``{}``): BadRequest says what is wrong."""
    fields = _object(body, {"max_days", "max_downloads", "password"})
    days = _days(fields.get("max_days"), bounds) if "max_days" in fields else bounds.default_days
    downloads = bounds.default_downloads
    if "max_downloads" in fields:
        downloads = _downloads(fields["max_downloads"], bounds)
    elif bounds.max_downloads is not None:
        downloads = min(downloads or bounds.max_downloads, bounds.max_downloads)
    password = _password(fields.get("password"))
    return NewShare(days, downloads, password)


def parse_change(body: object, bounds: Bounds) -> Change:
    """The JSON of ``PATCH /shares/<id>``: ``max_days`` counts from now; ``null``
    removes a download limit or the password; ``"closed": true`` closes the share."""
    fields = _object(body, {"max_days", "max_downloads", "password", "closed"})
    if not fields:
        raise BadRequest("Say what to change: max_days, max_downloads, password or closed.")
    closed = fields.get("closed", False)
    if "closed" in fields and closed is not True:
        raise BadRequest("'closed' can only be true: a closed share is not opened again.")
    return Change(
        days=_days(fields["max_days"], bounds) if "max_days" in fields else KEEP,
        max_downloads=(
            _downloads(fields["max_downloads"], bounds) if "max_downloads" in fields else KEEP
        ),
        password=_password(fields["password"]) if "password" in fields else KEEP,
        close=closed is True,
    )


def _object(body: object, keys: set[str]) -> dict[str, object]:
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    unknown = sorted(set(body) - keys)
    if unknown:
        raise BadRequest(f"Unknown key {unknown[0]!r}; known: {', '.join(sorted(keys))}.")
    return body


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _days(value: object, bounds: Bounds) -> int:
    days = _whole(value)
    if days is None or not 1 <= days <= bounds.max_days:
        raise BadRequest(f"'max_days' must be a whole number from 1 to {bounds.max_days}.")
    return days


def _downloads(value: object, bounds: Bounds) -> int | None:
    """A limit, or None for none: the server's maximum, when it has one, holds anyway."""
    if value is None:
        return bounds.max_downloads
    downloads = _whole(value)
    if downloads is None or not 1 <= downloads <= INT32_MAX:
        raise BadRequest("'max_downloads' must be a whole number from 1, or null for no limit.")
    return downloads if bounds.max_downloads is None else min(downloads, bounds.max_downloads)


def _password(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_PASSWORD:
        raise BadRequest(f"'password' must be a string of 1 to {MAX_PASSWORD} characters.")
    return value


def expiry_after(share: Share, days: int, now: datetime, max_days: int) -> datetime:
    """A new expiry ``days`` from now, never past ``max_days`` after the share was made:
    changing it again and again does not keep a share for ever."""
    return min(now + timedelta(days=days), share.created_at + timedelta(days=max_days))


# -- passwords --------------------------------------------------------------------------


def hash_password(password: str, salt: bytes | None = None) -> str:
    """The record kept of a password: scrypt, with its cost and salt."""
    salt = salt or secrets.token_bytes(16)
    derived = _scrypt(password, salt, _LOG_N, _R, _P)
    return f"scrypt${_LOG_N}${_R}${_P}${_b64(salt)}${_b64(derived)}"


def check_password(password: str, record: str) -> bool:
    """Whether ``password`` is the one ``record`` was made of (in constant time)."""
    try:
        kind, log_n, r, p, salt, derived = record.split("$")
        expected = base64.urlsafe_b64decode(derived + "==")
        given = _scrypt(password, base64.urlsafe_b64decode(salt + "=="), int(log_n), int(r), int(p))
    except ValueError:  # a record this code did not write
        return False
    return kind == "scrypt" and hmac.compare_digest(given, expected)


def _scrypt(password: str, salt: bytes, log_n: int, r: int, p: int) -> bytes:
    secret = unicodedata.normalize("NFC", password).encode("utf-8", "surrogatepass")
    return hashlib.scrypt(secret, salt=salt, n=1 << log_n, r=r, p=p, maxmem=_MAXMEM, dklen=32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# -- the session a password opens: a signed, expiring cookie ----------------------------


def session_cookie(share: Share, now: datetime) -> str:
    """The cookie's value: until when, and a MAC keyed by the password's record, which
    only the database holds. A new password ends every session; instances that share
    the database share the key, with nothing to configure."""
    until = int((now + SESSION).timestamp())
    return f"{until}.{_session_mac(share, until)}"


def session_valid(share: Share, value: str, now: datetime) -> bool:
    until, _, mac = value.partition(".")
    if share.password is None or not until.isdigit() or int(until) <= now.timestamp():
        return False
    return hmac.compare_digest(mac, _session_mac(share, int(until)))


def _session_mac(share: Share, until: int) -> str:
    assert share.password is not None
    message = f"satchel share session\0{share.id}\0{until}".encode()
    return _b64(hmac.digest(share.password.encode(), message, "sha256"))


class Attempts:
    """Wrong passwords per client and share: past ``limit`` within ``window``, no more
    tries until the oldest of them is that old. Bounded: the least recent keys go first."""

    def __init__(
        self, limit: int = 5, window: timedelta = timedelta(minutes=15), size: int = 10_000
    ) -> None:
        self.limit = limit
        self.window = window
        self.size = size
        self._failures: OrderedDict[tuple[str, str], list[datetime]] = OrderedDict()

    def wait(self, client: str, share_id: str, now: datetime) -> int:
        """Seconds before this client may try this share's password again (0: now)."""
        recent = self._recent((client, share_id), now)
        if len(recent) < self.limit:
            return 0
        return max(1, int((recent[0] + self.window - now).total_seconds()) + 1)

    def failed(self, client: str, share_id: str, now: datetime) -> None:
        key = (client, share_id)
        self._failures[key] = [*self._recent(key, now), now][-self.limit :]
        self._failures.move_to_end(key)
        while len(self._failures) > self.size:
            self._failures.popitem(last=False)

    def succeeded(self, client: str, share_id: str) -> None:
        self._failures.pop((client, share_id), None)

    def _recent(self, key: tuple[str, str], now: datetime) -> list[datetime]:
        return [t for t in self._failures.get(key, ()) if now - t < self.window]


# -- names in "download all" ------------------------------------------------------------


def archive_names(names: Sequence[str]) -> list[str]:
    """A name in the ZIP for each of a share's files (their upload names): made safe for
    every unzipper, and told apart as a file system that ignores case would, by
    ``name (2).ext``."""
    taken: set[str] = set()
    result = []
    for at, name in enumerate(names):
        base = _safe(name) or f"file {at + 1}"
        stem, dot, ext = base.rpartition(".")
        if not stem:
            stem, dot, ext = base, "", ""
        candidate, n = base, 1
        while _fold(candidate) in taken:
            n += 1
            tail = f" ({n}){dot}{ext}"
            candidate = _clip(stem, MAX_SEGMENT_BYTES - len(tail.encode())) + tail
        taken.add(_fold(candidate))
        result.append(candidate)
    return result


def _safe(name: str) -> str:
    """``name`` as one safe segment, or "" if nothing of it is."""
    if "/" not in name and unsafe_reason(name) is None:
        return name
    cleaned = "".join("_" if c in '/\\:"' or ord(c) < 32 else c for c in name)
    cleaned = _clip(cleaned, MAX_SEGMENT_BYTES - 1).rstrip(". ")
    if cleaned and unsafe_reason(cleaned) is not None:
        cleaned = f"_{cleaned}"  # a device name (CON, NUL.txt…)
    return cleaned if cleaned and unsafe_reason(cleaned) is None else ""


def _clip(text: str, size: int) -> str:
    """``text`` cut to at most ``size`` bytes of UTF-8, never inside a character."""
    return text.encode("utf-8", "surrogatepass")[: max(size, 0)].decode("utf-8", "ignore")


def _fold(name: str) -> str:
    return unicodedata.normalize("NFC", name.casefold())
