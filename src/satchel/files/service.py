"""The file service: receive a stream durably, look files up, count, delete, purge.

Order of a store, so that a crash at any moment leaves no record pointing at a
missing or partial file: write a temp file while hashing, fsync, verify digests,
rename into place, fsync the directory, and only then insert the record. A file
without a record (a crash between the last two steps) is invisible, and swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from satchel import metrics
from satchel.blocking import blocking, taken
from satchel.errors import (
    DigestMismatch,
    DownloadsInProgress,
    FileNotFound,
    InsufficientStorage,
    PayloadTooLarge,
    RequestTimeout,
)
from satchel.files.intake import Body, Intake, Pump
from satchel.files.rules import (
    FileRepo,
    Retention,
    StoredFile,
    display_name,
    expiry,
    new_delete_token,
    new_id,
    token_digest,
)
from satchel.space import Space
from satchel.storage.base import Digests, Incoming, Reader, Storage, disk_full, hash_all
from satchel.storage.ring import BlockRing
from satchel.throttle import Shaper

log = logging.getLogger("satchel.files")

_Incoming = TypeVar("_Incoming", bound=Incoming)


@dataclass(frozen=True)
class UploadLimits:
    """How large an upload may be, the room kept free, how long a body may stall. Every
    upload path, plain or tus, asks ``check_length`` and ``room`` here."""

    max_upload_size: int
    disk_reserve: int
    read_timeout: float

    def check_length(self, length: int | None) -> None:
        """413 for a length past the largest upload this server accepts."""
        if length is not None and length > self.max_upload_size:
            raise PayloadTooLarge(
                f"The upload has {length} bytes; this server accepts at most "
                f"{self.max_upload_size}."
            )

    def room(self, length: int | None) -> int:
        """The most bytes an upload may bring in all: its length, once it is known."""
        return self.max_upload_size if length is None else length


class ShareExpiry(Protocol):
    """When a share expires, for a file joining it (None: the share is gone)."""

    async def expiry(self, share_id: str) -> datetime | None: ...


class FileStore:
    def __init__(
        self,
        repo: FileRepo,
        storage: Storage,
        limits: UploadLimits,
        space: Space | None = None,
        shares: ShareExpiry | None = None,
    ) -> None:
        self.repo = repo
        self.storage = storage
        self.limits = limits
        self.space = space or Space(storage.free_bytes, limits.disk_reserve)
        self.shares = shares

    # -- admission, before any byte is read -------------------------------------------

    async def admit(self, length: int | None, space: Space | None = None) -> None:
        """413 or 507 for a declared length, before the body is read."""
        self.limits.check_length(length)
        await (space or self.space).admit(length)

    # -- storing ---------------------------------------------------------------------

    async def store(
        self,
        body: Body,
        *,
        name_for: str | None,
        content_type: str,
        retention: Retention,
        sha256: bytes | None = None,
        shaper: Shaper | None = None,
    ) -> tuple[StoredFile, str]:
        """Receive, verify and commit one file; its record and its delete token."""
        file_id = new_id()
        create = functools.partial(self.storage.create, file_id)
        temp = await self.receive(body, create, shaper=shaper)
        try:
            if sha256 is not None and temp.sha256 != sha256:
                raise DigestMismatch()
            await asyncio.shield(blocking(self.storage.commit, temp))
        except BaseException:
            await asyncio.shield(blocking(temp.discard))
            raise
        record = await self._new_record(
            file_id, name_for, content_type, retention, temp.size, temp.sha256, temp.crc32
        )
        token = new_delete_token()
        try:
            await self._insert(record, token)
        except BaseException:
            await asyncio.shield(blocking(self.storage.remove, file_id))
            raise
        return record, token

    async def adopt(
        self,
        key: str,
        *,
        file_id: str,
        delete_token: str,
        name_for: str | None,
        content_type: str,
        retention: Retention,
        digests: Digests | None = None,
    ) -> StoredFile:
        """Make a complete resumable upload's bytes (its storage ``key``) the stored file
        ``file_id``: hashed here unless its ``digests`` were taken as it arrived.
        Idempotent, so a retry after a crash at any step finishes the job."""
        existing = await self.repo.get(file_id)
        if existing is not None:
            return existing
        if digests is None:
            digests = await blocking(self._hash_upload, key)
        await asyncio.shield(blocking(self.storage.finish_upload, key, file_id))
        record = await self._new_record(
            file_id,
            name_for,
            content_type,
            retention,
            digests.size,
            digests.sha256,
            digests.crc32,
        )
        await self._insert(record, delete_token)
        return record

    async def _new_record(
        self,
        file_id: str,
        name_for: str | None,
        content_type: str,
        retention: Retention,
        size: int,
        sha256: bytes,
        crc32: int,
    ) -> StoredFile:
        """The record of a file about to be stored. A share's file expires with its share
        (at once if the share is gone meanwhile: the next purge takes it)."""
        created = datetime.now(UTC)
        expires = expiry(created, retention.days)
        if retention.share is not None:
            assert self.shares is not None, "a file joins a share only where there are shares"
            expires = await self.shares.expiry(retention.share) or created
        return StoredFile(
            id=file_id,
            name=display_name(name_for, file_id, content_type),
            size=size,
            content_type=content_type,
            sha256=sha256.hex(),
            crc32=crc32,
            created_at=created,
            expires_at=expires,
            max_downloads=retention.max_downloads,
            share=retention.share,
        )

    def _hash_upload(self, key: str) -> Digests:
        reader = self.storage.read_upload(key)
        try:
            return hash_all(reader)
        finally:
            reader.close()

    async def _insert(self, record: StoredFile, delete_token: str) -> None:
        """The last step of a store: after it, the file is visible."""
        await self.repo.insert(record, token_digest(delete_token))
        metrics.FILES_STORED.inc()
        log.info(
            "Stored %s (%d bytes, sha256 %s) as %s",
            record.name,
            record.size,
            record.sha256,
            record.id,
        )

    async def receive(
        self,
        body: Body,
        create: Callable[[], _Incoming],
        shaper: Shaper | None = None,
        space: Space | None = None,
    ) -> _Incoming:
        """Stream into a new object ``create``-d (durable at the end), hashing on the way;
        nothing kept on error.

        Through a :class:`BlockRing`: while one thread hashes a block and another
        writes one out, the event loop fills the next. The body is held to the read
        timeout, the speed limit (``shaper``) and the disk reserve by an :class:`Intake`;
        a disk that falls behind stops the reading, so a stalled disk times out too.
        """
        space = space or self.space
        temp = await taken(lambda temp: temp.discard(), create)
        ring: BlockRing | None = None
        try:
            ring = BlockRing([temp.digest, temp.store])
            async with self.intake(shaper, body.declared, space) as intake:
                await Pump(ring).run(body, intake, self.limits.room(None), PayloadTooLarge)
            await ring.close()
            await blocking(temp.finish)
            # The looks while it grew saw the disk behind the ring's unwritten blocks:
            # now that every byte is down, it must still leave the reserve free.
            await space.check()
        except BaseException as exc:
            if ring is not None:  # its threads may still use the file: let them finish
                await ring.abort()
            await asyncio.shield(blocking(temp.discard))
            if disk_full(exc):
                raise InsufficientStorage() from exc
            raise
        return temp

    @contextlib.asynccontextmanager
    async def intake(
        self, shaper: Shaper | None, declared: int | None, space: Space | None = None
    ) -> AsyncIterator[Intake]:
        """Hold a request body to the read timeout, the speed limit and the disk reserve
        while it streams in (a 408 when it stalls); its ``declared`` length (None:
        unknown) is promised on ``space`` until it ends."""
        seconds = self.limits.read_timeout
        space = space or self.space
        try:
            async with space.promise(declared) as promise:  # others may have taken the room
                async with asyncio.timeout(seconds) as deadline:
                    yield Intake(seconds, deadline, shaper, promise)
        except TimeoutError as exc:
            raise RequestTimeout(
                f"No body bytes for {seconds:g} s; the upload was dropped."
            ) from exc

    # -- reading ---------------------------------------------------------------------

    async def available(self, file_id: str) -> StoredFile:
        record = await self.repo.get(file_id)
        if record is None or not record.available(datetime.now(UTC)):
            raise FileNotFound()
        return record

    async def open(self, record: StoredFile) -> Reader:
        """The file's bytes, open for reading: a record without them is a 404 (logged)."""
        try:
            return await taken(lambda reader: reader.close(), self.storage.open, record.id)
        except OSError as exc:
            log.error("File %s has a record but no bytes: %s", record.id, exc)
            raise FileNotFound() from exc

    async def start_download(self, record: StoredFile) -> None:
        """Before the first byte of a download that reaches the end of the file: with
        Max-Downloads, claim one of those left, so no more whole bodies than that ever
        leave; a 409 when every one left is running (404 when none is)."""
        if record.max_downloads is not None and not await self.repo.claim_download(
            record.id, datetime.now(UTC)
        ):
            await self.available(record.id)
            raise DownloadsInProgress()

    async def end_download(self, record: StoredFile, *, completed: bool) -> None:
        """A download begun by ``start_download`` ended: count it if every byte went out."""
        claimed = record.max_downloads is not None
        await self.repo.end_download(record.id, completed=completed, claimed=claimed)

    async def remove(self, records: Sequence[StoredFile]) -> None:
        """Remove these files, whatever their tokens: a share's, with the share."""
        for record in records:
            await blocking(self.storage.remove, record.id)
        await self.space.freeing(lambda: self.repo.remove([r.id for r in records]))
        metrics.FILES_DELETED.inc(len(records))

    async def delete(self, file_id: str, token: str) -> bool:
        """Remove the file if ``token`` is its delete token. The bytes go first: on a
        full disk they are the room the database needs to delete the row. (A record
        left without bytes by a crash in between answers 404, and is purged.)"""
        digest = token_digest(token)
        if not await self.repo.owns(file_id, digest):  # a read: works on a full disk
            return False
        await blocking(self.storage.remove, file_id)
        await self.space.freeing(lambda: self.repo.delete(file_id, digest))
        metrics.FILES_DELETED.inc()
        return True

    # -- housekeeping ----------------------------------------------------------------

    async def purge(self) -> int:
        """Remove expired and used-up files, and uploads abandoned long ago."""
        ids = await self.repo.purge(datetime.now(UTC))
        for file_id in ids:
            await blocking(self.storage.remove, file_id)
        stale = time.time() - 2 * self.limits.read_timeout - 60
        await blocking(self.storage.sweep_temp, stale)
        if ids:
            metrics.FILES_EXPIRED.inc(len(ids))
            log.info("Purged %d expired or used-up files", len(ids))
        return len(ids)

    async def sweep_orphans(self, older_than: float = 3600) -> int:
        """Remove stored files with no record (a crash between commit and insert).

        Only old ones: another worker may be between those two steps right now.
        """
        cutoff = time.time() - older_than
        candidates = await blocking(self.storage.ids_older_than, cutoff)
        known = await self.repo.known(candidates)
        orphans = [i for i in candidates if i not in known]
        for file_id in orphans:
            await blocking(self.storage.remove, file_id)
        if orphans:
            log.warning("Removed %d stored files that had no record", len(orphans))
        return len(orphans)
