"""Photo folders in an S3 bucket (``--photos s3://BUCKET/PREFIX``): ``/archive/<hash>/``
is the objects under ``PREFIX/<hash>/``. Every method blocks.

- A member's version is its key, size, LastModified and ETag (as a 64-bit identity).
  Every GET's answer is checked against that ETag: a member replaced mid-stream aborts
  the archive, as a changed local file does; a GET is one version's bytes.
- Its CRC-32 is the object's stored full-object checksum where the server keeps one
  (one HEAD; ``StoredCrc``), and only otherwise read from its bytes.
- The sender opens the next members while one is sent (``FetchAhead``): their first
  GETs are answered by the time their bodies are due.
- Writes (``PUT /archive/<hash>/<path>``) stream into a temporary object, copied into
  place by the server when whole (S3 has no rename).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from satchel.errors import ArchiveChanged, ArchiveNotFound, Conflict
from satchel.storage.base import FileVersion, Incoming, Listing, SourceFile
from satchel.storage.s3 import PART, S3Incoming, S3Location, S3Reader, S3Storage, missing
from satchel.zipstream.names import segment_reason

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

log = logging.getLogger("satchel.archive")

TEMP = ".satchel-tmp"  # never a valid folder name
KEEP = 8 * 1024 * 1024  # a member up to this size read for its CRC is kept for its body


def identity(etag: str) -> int:
    """An ETag as the signed 64-bit number a ``FileVersion`` keeps as its identity."""
    digest = hashlib.sha256(etag.strip('"').encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class S3Member(S3Reader):
    """A member's object, held to the version it was listed as."""

    def __init__(self, client: S3Client, bucket: str, source: SourceFile) -> None:
        self.version = source.version
        super().__init__(client, bucket, source.location, source.version.size)
        self._read_any = False
        # The bytes of a small member read for its CRC: its body is sent from them, so a
        # cold archive fetches each member once, not twice.
        self._kept: bytearray | None = bytearray() if self.size <= KEEP else None
        if self.size:  # its first GET now, so it is under way before its body is due
            try:
                self._open(0)
            except FileNotFoundError as exc:
                raise ArchiveChanged(f"{self.version.name} was removed") from exc

    def _check(self, etag: str) -> None:
        if identity(etag) != self.version.inode:
            raise ArchiveChanged(f"{self.version.name} changed while the archive was being sent")
        self._read_any = True

    def read(self, offset: int, count: int) -> bytes:
        kept = self._kept
        if kept is not None and len(kept) == self.size:
            return bytes(kept[offset : offset + count])
        try:
            return super().read(offset, count)
        except FileNotFoundError as exc:
            raise ArchiveChanged(f"{self.version.name} was removed") from exc

    def read_into(self, offset: int, view: memoryview) -> int:
        """What the CRC pass reads with: in order from the start, kept if small."""
        data = self.read(offset, len(view))
        if self._kept is not None and offset == len(self._kept) < self.size:
            self._kept += data
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._kept = None
        super().close()

    def verify(self) -> None:
        """Every GET was checked: only a member never read is looked at again."""
        if not self._read_any:
            self._head()

    def stored_crc(self) -> int | None:
        """The object's full-object CRC-32, where the server keeps one."""
        head = self._head()
        value = head.get("ChecksumCRC32")
        if value is None or head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
            return None
        return int.from_bytes(base64.b64decode(value), "big")

    def _head(self) -> Any:
        try:
            head = self._client.head_object(
                Bucket=self._bucket, Key=self.key, ChecksumMode="ENABLED"
            )
        except Exception as exc:
            if missing(exc):
                raise ArchiveChanged(f"{self.version.name} was removed") from exc
            raise
        if head["ContentLength"] != self.size or identity(head["ETag"]) != self.version.inode:
            raise ArchiveChanged(f"{self.version.name} changed while the archive was being sent")
        return head


class S3Folders:
    """:class:`satchel.storage.base.Folders` in an S3 bucket; ``FetchAhead``."""

    fetch_ahead = 2

    def __init__(self, client: S3Client, location: S3Location, part_size: int = PART) -> None:
        self.client = client
        self.location = location
        self._storage = S3Storage(client, location, part_size)  # for writes

    def scan(self, folder: str) -> tuple[Listing, int]:
        prefix = self.location.key(folder, "")
        pages = self.client.get_paginator("list_objects_v2")
        objects = [
            item
            for page in pages.paginate(Bucket=self.location.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]
        if not objects:
            raise ArchiveNotFound(folder=folder)
        names = {item["Key"][len(prefix) :] for item in objects}
        files, newest = Listing(prefix), 0
        for item in objects:
            name = item["Key"][len(prefix) :]
            newest = max(newest, int(item["LastModified"].timestamp()))
            reason = _unsafe(name, names)
            if reason is not None:
                if not name.endswith("/"):  # "a/" is how some tools mark a folder
                    log.warning("Skipping %r: %s", item["Key"], reason)
                continue
            mtime_ns = int(item["LastModified"].timestamp()) * 1_000_000_000
            files.add(name, item["Size"], mtime_ns, identity(item["ETag"]), item["Key"])
        return files, newest

    def open(self, source: SourceFile) -> S3Member:
        return S3Member(self.client, self.location.bucket, source)

    def create(self) -> S3Incoming:
        return self._storage.create(f"{TEMP}/{secrets.token_hex(16)}")

    def place(self, path: Sequence[str], incoming: Incoming) -> tuple[FileVersion, bool]:
        """Copied into place by the server, then the temporary object is removed. A part
        of the path that is a file, or a path that is a folder, is a 409."""
        assert isinstance(incoming, S3Incoming)
        key = self.location.key(*path)
        for depth in range(1, len(path)):
            if self._storage.exists(self.location.key(*path[:depth])):
                raise Conflict(f"{'/'.join(path[:depth])} is a file, not a folder")
        listing = self.client.list_objects_v2(
            Bucket=self.location.bucket, Prefix=key + "/", MaxKeys=1
        )
        if listing.get("KeyCount", 0):
            raise Conflict(f"{'/'.join(path)} is a folder")
        existed = self._storage.exists(key)
        self._storage.commit(incoming)
        try:
            self.client.copy(
                {"Bucket": self.location.bucket, "Key": incoming.key}, self.location.bucket, key
            )
        finally:
            self.client.delete_object(Bucket=self.location.bucket, Key=incoming.key)
        head = self.client.head_object(Bucket=self.location.bucket, Key=key)
        version = FileVersion(
            "/".join(path[1:]), head["ContentLength"],
            int(head["LastModified"].timestamp()) * 1_000_000_000, identity(head["ETag"]),
        )  # fmt: skip
        return version, existed

    def remove(self, path: Sequence[str]) -> bool:
        key = self.location.key(*path)
        if not self._storage.exists(key):
            return False
        self.client.delete_object(Bucket=self.location.bucket, Key=key)
        return True

    def free_bytes(self) -> int:
        return self._storage.free_bytes()


def _unsafe(name: str, names: set[str]) -> str | None:
    """Why a listed name is not a member an unzipper can extract safely, or None."""
    segments = name.split("/")
    for segment in segments:
        reason = segment_reason(segment)
        if reason is not None:
            return reason
    for depth in range(1, len(segments)):
        if "/".join(segments[:depth]) in names:
            return f"{'/'.join(segments[:depth])} is a file too"
    return None
