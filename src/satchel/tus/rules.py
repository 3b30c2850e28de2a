"""tus 1.0 resumable uploads: the records, the repository protocol, the pure rules.

Header parsing and validation are pure functions here; the shell that writes
bytes is ``tus/service.py``, the HTTP handlers ``http/tus.py``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Protocol

from satchel.errors import BadRequest
from satchel.numbers import parse_int

VERSION = "1.0.0"
EXTENSIONS = (
    "creation",
    "creation-with-upload",
    "creation-defer-length",
    "expiration",
    "checksum",
    "termination",
    "concatenation",
)
CHECKSUMS = ("sha1", "sha256", "md5")
OFFSET_TYPE = "application/offset+octet-stream"
_KEY = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$")  # a token: no spaces, no commas


@dataclass(frozen=True, slots=True)
class Upload:
    id: str
    length: int | None  # None: deferred (creation-defer-length)
    offset: int
    metadata: dict[str, str | None]
    file_id: str  # the stored file it becomes, chosen up front so finishing is idempotent
    max_downloads: int | None
    max_days: int
    created_at: datetime
    expires_at: datetime
    completed: bool = False
    concat: str | None = None  # "partial", or "final;<urls>" (concatenation)

    @property
    def key(self) -> str:
        """What the database and the disk know this upload by (see :func:`upload_key`)."""
        return upload_key(self.id)

    @property
    def delete_token(self) -> str:
        """The stored file's delete token: derived from the id, kept nowhere."""
        digest = hashlib.sha256(f"satchel tus delete token\0{self.id}".encode()).digest()
        return base64.urlsafe_b64encode(digest[:24]).decode()

    @property
    def filename(self) -> str | None:
        return self.metadata.get("filename") or self.metadata.get("name")

    @property
    def filetype(self) -> str | None:
        return self.metadata.get("filetype") or self.metadata.get("type")

    @property
    def done(self) -> bool:
        return self.length is not None and self.offset == self.length

    @property
    def partial(self) -> bool:
        """A part of a later final upload: complete bytes never become a stored file."""
        return self.concat == "partial"

    @property
    def final(self) -> bool:
        return self.concat is not None and self.concat.startswith("final;")

    def moved(self, offset: int) -> Upload:
        return replace(self, offset=offset)


def upload_key(upload_id: str) -> str:
    """An upload's id is the secret in its URL: whoever has it may write to the upload,
    and learn the stored file's delete token (the last answer, or a HEAD, tells it).
    So the database and the disk hold only this hash of it, and neither a copy of the
    database nor a listing of the folder gives anyone an upload or a token."""
    return hashlib.sha256(f"satchel tus upload\0{upload_id}".encode()).hexdigest()


def started_event(upload: Upload) -> dict[str, object]:
    """The data of the ``upload.started`` webhook event."""
    return {
        "file_id": upload.file_id,
        "length": upload.length,
        "name": upload.metadata.get("filename"),
    }


class UploadRepo(Protocol):
    """Resumable uploads' metadata; the bytes are the shell's business."""

    async def insert(self, upload: Upload) -> None:
        """Keep the upload under its key (:func:`upload_key`); every method below takes
        the id and looks it up by that key."""
        ...

    async def get(self, upload_id: str) -> Upload | None: ...

    async def advance(
        self, upload_id: str, offset: int, length: int | None, expires_at: datetime
    ) -> None:
        """Record an acknowledged offset (and a length given late) and the new expiry."""
        ...

    async def complete(self, upload_id: str) -> None: ...

    async def delete(self, upload_id: str) -> bool: ...

    async def expired(self, now: datetime) -> list[str]:
        """Remove the records that expired; their keys."""
        ...

    async def unfinished_rest(self) -> int:
        """Bytes still to come of the unfinished, unexpired uploads of known length:
        what they were promised on the disk."""
        ...


def parse_number(name: str, value: str | None) -> int | None:
    """A non-negative integer header, or None if absent; 400 if malformed."""
    if value is None:
        return None
    return parse_int(name, value)


def parse_metadata(value: str | None) -> dict[str, str | None]:
    """Upload-Metadata: 'key base64value, key2, …' → {key: text or None}."""
    result: dict[str, str | None] = {}
    if not value or not value.strip():
        return result
    for pair in value.split(","):
        key, _, encoded = pair.strip().partition(" ")
        if not _KEY.fullmatch(key):
            raise BadRequest(f"Upload-Metadata: {key!r} is not a valid key.")
        if key in result:
            raise BadRequest(f"Upload-Metadata: {key!r} appears twice.")
        if not encoded.strip():
            result[key] = None
            continue
        try:
            result[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise BadRequest(f"Upload-Metadata: the value of {key!r} is not base64 UTF-8.") from exc
    return result


def encode_metadata(metadata: dict[str, str | None]) -> str:
    return ",".join(
        key if text is None else f"{key} {base64.b64encode(text.encode()).decode()}"
        for key, text in metadata.items()
    )


def parse_concat(value: str | None) -> tuple[str, list[str]] | None:
    """Upload-Concat: 'partial' → ('partial', []); 'final;<url> <url>' → ('final', ids)."""
    if value is None:
        return None
    value = value.strip()
    if value == "partial":
        return "partial", []
    kind, _, urls = value.partition(";")
    ids = [url.rstrip("/").rsplit("/", 1)[-1] for url in urls.split()]
    if kind != "final" or not ids:
        raise BadRequest("Upload-Concat is 'partial' or 'final;<upload URL> <upload URL>…'.")
    return "final", ids


@dataclass(frozen=True, slots=True)
class Checksum:
    algorithm: str
    digest: bytes

    def hasher(self) -> hashlib._Hash:
        return hashlib.new(self.algorithm)


def parse_checksum(value: str | None) -> Checksum | None:
    """Upload-Checksum: '<algorithm> <base64 digest>'; 400 for an unsupported one."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        raise BadRequest(
            f"Upload-Checksum: {algorithm!r} is not supported; use one of {', '.join(CHECKSUMS)}."
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error as exc:
        raise BadRequest("Upload-Checksum: the digest is not base64.") from exc
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise BadRequest(f"Upload-Checksum: a {algorithm} digest has a different length.")
    return Checksum(algorithm, digest)
