"""Files behind links: records, the repository protocol, and the pure rules.

Ids and delete tokens, retention limits, safe display names and links are pure
functions; the repository (SQL) and storage (local disk) sit behind protocols.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol
from urllib.parse import quote

from satchel.numbers import INT32_MAX, parse_int

ID_RE = re.compile(r"[A-Za-z0-9_-]{22}")  # 16 random bytes, URL-safe base64
_MEDIA_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,127}$")


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    name: str
    size: int
    content_type: str
    sha256: str  # hex
    crc32: int
    created_at: datetime
    expires_at: datetime
    max_downloads: int | None
    downloads: int = 0
    share: str | None = None  # the share it belongs to, and is served only through

    @property
    def downloads_left(self) -> int | None:
        return None if self.max_downloads is None else max(self.max_downloads - self.downloads, 0)

    def available(self, now: datetime) -> bool:
        return self.expires_at > now and self.downloads_left != 0


class FileRepo(Protocol):
    """Metadata of stored files."""

    async def insert(self, record: StoredFile, delete_token_sha256: str) -> None: ...

    async def get(self, file_id: str) -> StoredFile | None:
        """The record, whatever its state (callers check ``available``)."""
        ...

    async def get_many(self, ids: Sequence[str]) -> dict[str, StoredFile]:
        """The records of those ids that have one, by id."""
        ...

    async def claim_download(self, file_id: str, now: datetime) -> bool:
        """Atomically take one of a limited file's downloads left for a whole download
        about to start; False if every one is completed or claimed."""
        ...

    async def end_download(self, file_id: str, *, completed: bool, claimed: bool) -> None:
        """A whole download ended: count it if ``completed``; give its claim back."""
        ...

    async def owns(self, file_id: str, delete_token_sha256: str) -> bool:
        """Whether ``file_id`` has a record with this delete token."""
        ...

    async def delete(self, file_id: str, delete_token_sha256: str) -> bool:
        """Remove the record if the token matches; True if it was removed."""
        ...

    async def remove(self, ids: Sequence[str]) -> None:
        """Remove these records, whatever their tokens (a share's files, with it)."""
        ...

    async def purge(self, now: datetime) -> list[str]:
        """Remove records that expired or have no downloads left; their ids."""
        ...

    async def known(self, ids: Sequence[str]) -> set[str]:
        """Which of ``ids`` have a record, or are what a resumable upload becomes."""
        ...


def new_id() -> str:
    return secrets.token_urlsafe(16)


def new_delete_token() -> str:
    return secrets.token_urlsafe(24)


def token_digest(token: str) -> str:
    """Delete tokens are stored only as this hash (they are random, so SHA-256 suffices)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Retention:
    max_downloads: int | None
    days: int
    share: str | None = None  # a share's file keeps the share's expiry instead


def retention(
    max_downloads: str | None,
    max_days: str | None,
    *,
    default_days: int,
    days_limit: int,
    default_downloads: int | None,
    downloads_limit: int | None,
) -> Retention:
    """The Max-Downloads / Max-Days a client asked for, bounded by the server's maxima."""
    downloads = _positive("Max-Downloads", max_downloads) or default_downloads
    if downloads_limit is not None:
        downloads = min(downloads or downloads_limit, downloads_limit)
    days = min(_positive("Max-Days", max_days) or default_days, days_limit)
    return Retention(downloads, days)


def _positive(header: str, value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    return parse_int(header, value, low=1, high=INT32_MAX)  # an INTEGER column


def expiry(created: datetime, days: int) -> datetime:
    return created + timedelta(days=days)


def clean_filename(raw: str) -> str:
    """A filename a client gave, fit to name a download: NFC, its last path part, no
    control characters, at most 255 characters; "" when nothing is left."""
    name = unicodedata.normalize("NFC", raw).replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    return "" if name in (".", "..") else name[:255]


def display_name(raw: str | None, file_id: str, content_type: str) -> str:
    """The client's filename as metadata, or ``<id>.<subtype>`` when it gave none."""
    name = clean_filename(raw or "")
    if not name:
        subtype = content_type.split("/", 1)[-1].split("+")[0]
        extension = subtype if subtype.isalnum() and subtype != "octet-stream" else "bin"
        name = f"{file_id}.{extension}"
    return name


def media_type(raw: str | None) -> str:
    value = (raw or "").split(";", 1)[0].strip().lower()
    return value if _MEDIA_TYPE.match(value) else "application/octet-stream"


def links(
    base: str, file_id: str, delete_token: str | None = None, share: str | None = None
) -> dict[str, str]:
    """A file's links; a share's file is checked and downloaded through its share."""
    result = (
        {"check": f"{base}/check/{file_id}", "download": f"{base}/files/{file_id}/"}
        if share is None
        else {"check": f"{base}/shares/{share}", "download": f"{base}/s/{share}/f/{file_id}"}
    )
    if delete_token is not None:
        result["delete"] = f"{base}/files/{file_id}/?token={quote(delete_token)}"
    return result


def event_data(record: StoredFile) -> dict[str, object]:
    """A stored file as a webhook tells it: without links, which need a request's origin."""
    return {
        "id": record.id,
        "name": record.name,
        "size": record.size,
        "content_type": record.content_type,
        "sha256": record.sha256,
        "created_at": record.created_at.isoformat(),
        "expires_at": record.expires_at.isoformat(),
        "downloads_left": record.downloads_left,
        **({"share": record.share} if record.share is not None else {}),
    }


def describe(record: StoredFile, base: str, delete_token: str | None = None) -> dict[str, object]:
    """The JSON a client sees for a stored file."""
    body = event_data(record)
    body["links"] = links(base, record.id, delete_token, record.share)
    if delete_token is not None:
        body["delete_token"] = delete_token
    return body
