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
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from satchel.blocking import blocking
from satchel.errors import (
    DigestMismatch,
    DownloadsInProgress,
    FileNotFound,
    InsufficientStorage,
    PayloadTooLarge,
    RequestTimeout,
)
from satchel.files import (
    ID_RE,
    FileRepo,
    Retention,
    StoredFile,
    describe,
    display_name,
    expiry,
    new_delete_token,
    new_id,
    token_digest,
)
from satchel.space import Promise, Space
from satchel.storage.base import Digests, Incoming, Reader, Storage, disk_full, hash_all
from satchel.storage.ring import BLOCK_SIZE, BLOCKS, BlockRing
from satchel.throttle import Shaper

log = logging.getLogger("satchel.files")

_CHECK_CACHE_SIZE = 10_000
RING_BYTES = BLOCKS * BLOCK_SIZE
_Incoming = TypeVar("_Incoming", bound=Incoming)


@dataclass
class _Checked:
    """A /check cache entry: the record's lookup, and its JSON per base URL."""

    until: float  # time.monotonic(): look again after this
    lookup: asyncio.Future[StoredFile | None]
    bodies: dict[str, bytes] = field(default_factory=dict)
    expires: float = 0.0  # time.time() of the record's expiry, once it is known available


@dataclass(frozen=True)
class UploadLimits:
    max_upload_size: int
    disk_reserve: int
    read_timeout: float


class FileStore:
    def __init__(
        self,
        repo: FileRepo,
        storage: Storage,
        limits: UploadLimits,
        check_ttl: float = 1.0,
        space: Space | None = None,
    ) -> None:
        self.repo = repo
        self.storage = storage
        self.limits = limits
        self.space = space or Space(storage.free_bytes, limits.disk_reserve)
        self.check_ttl = check_ttl
        self._checked: dict[str, _Checked] = {}

    # -- admission, before any byte is read -------------------------------------------

    async def admit(self, length: int | None, space: Space | None = None) -> None:
        """413 or 507 for a declared length, before the body is read."""
        if length is not None and length > self.limits.max_upload_size:
            raise PayloadTooLarge(
                f"The upload has {length} bytes; this server accepts at most "
                f"{self.limits.max_upload_size}. Nothing was stored."
            )
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
        temp = await self.receive(body, self.storage.create, shaper=shaper)
        try:
            if sha256 is not None and temp.sha256 != sha256:
                raise DigestMismatch()
            file_id = new_id()
            await asyncio.shield(blocking(self.storage.commit, temp, file_id))
        except BaseException:
            await asyncio.shield(blocking(temp.discard))
            raise
        record = _new_record(
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
        record = _new_record(
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

    def _hash_upload(self, key: str) -> Digests:
        reader = self.storage.read_upload(key)
        try:
            return hash_all(reader)
        finally:
            reader.close()

    async def _insert(self, record: StoredFile, delete_token: str) -> None:
        """The last step of a store: after it, the file is visible."""
        await self.repo.insert(record, token_digest(delete_token))
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
        temp = await blocking(create)
        ring: BlockRing | None = None
        try:
            ring = BlockRing([temp.digest, temp.store])
            async with self.intake(shaper, body.declared, space) as intake:
                await Pump(ring).run(body, intake, self.limits.max_upload_size, PayloadTooLarge)
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
            with space.promise(declared) as promise:
                await space.check()  # others may have taken the room since admission
                async with asyncio.timeout(seconds) as deadline:
                    yield Intake(self, deadline, shaper, promise)
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

    def fresh_status(self, file_id: str, base: str) -> bytes | None:
        """The /check answer if the cache holds a fresh one; else ask ``status_json``.

        The fast path of the hottest request: no coroutine, no datetime (bench/RESULTS.md).
        """
        entry = self._checked.get(file_id)
        if entry is None or entry.until < time.monotonic() or entry.expires <= time.time():
            return None
        return entry.bodies.get(base)

    async def status_json(self, file_id: str, base: str) -> bytes:
        """The /check answer, through a short per-process cache of the encoded JSON.

        Another worker's download or delete shows here within ``check_ttl``; this
        process's own show at once; downloads themselves always read the database.
        """
        now = time.monotonic()
        entry = self._checked.get(file_id)
        if entry is None or entry.until < now:
            if not ID_RE.fullmatch(file_id):
                raise FileNotFound()
            if len(self._checked) >= _CHECK_CACHE_SIZE:
                self._checked.clear()
            entry = _Checked(now + self.check_ttl, asyncio.ensure_future(self.repo.get(file_id)))
            entry.lookup.add_done_callback(functools.partial(self._forget_failed, file_id, entry))
            self._checked[file_id] = entry
        lookup = entry.lookup
        # Shared: when an entry expires under load, every request for that id waits for
        # one lookup instead of each taking a connection of its own (bench/RESULTS.md).
        # Shielded: a client that leaves does not cancel the others' lookup.
        record = lookup.result() if lookup.done() else await asyncio.shield(lookup)
        if record is None or not record.available(datetime.now(UTC)):
            raise FileNotFound()
        entry.expires = record.expires_at.timestamp()
        body = entry.bodies.get(base)
        if body is None:
            body = entry.bodies[base] = json.dumps(
                describe(record, base), ensure_ascii=False
            ).encode()
        return body

    def _forget_failed(
        self, file_id: str, entry: _Checked, lookup: asyncio.Future[StoredFile | None]
    ) -> None:
        """A lookup that failed is not an answer to keep: the next request asks again."""
        if (lookup.cancelled() or lookup.exception() is not None) and self._checked.get(
            file_id
        ) is entry:
            del self._checked[file_id]

    async def open(self, record: StoredFile) -> Reader:
        """The file's bytes, open for reading: a record without them is a 404 (logged)."""
        try:
            return await blocking(self.storage.open, record.id)
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
        self._checked.pop(record.id, None)
        claimed = record.max_downloads is not None
        await self.repo.end_download(record.id, completed=completed, claimed=claimed)

    async def delete(self, file_id: str, token: str) -> bool:
        """Remove the file if ``token`` is its delete token. The bytes go first: on a
        full disk they are the room the database needs to delete the row. (A record
        left without bytes by a crash in between answers 404, and is purged.)"""
        self._checked.pop(file_id, None)
        digest = token_digest(token)
        if not await self.repo.owns(file_id, digest):  # a read: works on a full disk
            return False
        await blocking(self.storage.remove, file_id)
        await self.space.freeing(lambda: self.repo.delete(file_id, digest))
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


def _new_record(
    file_id: str,
    name_for: str | None,
    content_type: str,
    retention: Retention,
    size: int,
    sha256: bytes,
    crc32: int,
) -> StoredFile:
    created = datetime.now(UTC)
    return StoredFile(
        id=file_id,
        name=display_name(name_for, file_id, content_type),
        size=size,
        content_type=content_type,
        sha256=sha256.hex(),
        crc32=crc32,
        created_at=created,
        expires_at=expiry(created, retention.days),
        max_downloads=retention.max_downloads,
    )


class Body(Protocol):
    """A request body, read into the caller's memory."""

    declared: int | None  # its length, where the client said it

    async def ready(self) -> None:
        """Wait until there are bytes to read, or the body has ended."""
        ...

    async def read_into(self, view: memoryview) -> int:
        """Fill the start of ``view``: how many bytes, 0 at the end of the body."""
        ...


class ChunkBody:
    """A body that arrives as chunks (aiohttp's stream, a multipart part), copied in."""

    def __init__(self, chunks: AsyncIterator[bytes], declared: int | None = None) -> None:
        self._chunks = chunks
        self.declared = declared
        self._left = memoryview(b"")

    async def ready(self) -> None:
        if not self._left:
            self._left = memoryview(await anext(self._chunks, b""))

    async def read_into(self, view: memoryview) -> int:
        await self.ready()
        n = min(len(view), len(self._left))
        view[:n] = self._left[:n]
        self._left = self._left[n:]
        return n


class Pump:
    """The one loop of every upload path: fill the ring's blocks from a body.

    ``block`` and ``filled``: a block taken from the ring and not yet sent, and how much
    of it holds body bytes, for a caller that keeps what arrived when a body is cut.
    """

    def __init__(self, ring: BlockRing) -> None:
        self._ring = ring
        self.block: memoryview | None = None
        self.filled = 0

    async def run(
        self,
        body: Body,
        intake: Intake,
        room: int,
        too_large: Callable[[], Exception],
        first: int = BLOCK_SIZE,
    ) -> None:
        """Until the body ends; ``too_large()`` is raised past ``room`` bytes. The first
        block holds ``first`` bytes (so that the next ones start aligned), the rest a
        whole block each."""
        size = first
        while True:
            await body.ready()  # then take a block: see BlockRing
            block = self.block = await self._ring.take()
            self.filled = 0
            while self.filled < size and (n := await body.read_into(block[self.filled : size])):
                await intake.took(n)
                if intake.received > room:
                    raise too_large()
                self.filled += n
            self._ring.send(block, self.filled)
            self.block = None
            if self.filled < size:
                return
            size = BLOCK_SIZE


class Intake:
    """One request body as it arrives: call ``took`` for every chunk received.

    - One deadline for the whole body, pushed forward as bytes arrive, at most every
      stall/8 s (a timer per chunk would cost more than the hashing).
    - Each chunk is paid for under the speed limit before the next is read, so TCP
      back-pressure slows the sender; time spent waiting for the limit is not a stall.
    - Free space is checked as it grows (see :class:`Space`).
    """

    def __init__(
        self,
        store: FileStore,
        deadline: asyncio.Timeout,
        shaper: Shaper | None,
        promise: Promise,
    ) -> None:
        self._deadline = deadline
        self._shaper = shaper
        self._promise = promise
        self._stall = store.limits.read_timeout
        self._clock = asyncio.get_running_loop().time
        self._pushed = self._clock()
        self._next_space_check = promise.space.check_every
        self.received = 0

    async def took(self, size: int) -> None:
        if self._shaper is not None:
            self._deadline.reschedule(None)
            await self._shaper.consume(size)
            self._push()
        elif self._clock() - self._pushed > self._stall / 8:
            self._push()
        self.received += size
        self._promise.took(size)
        if self.received >= self._next_space_check:
            self._next_space_check += self._promise.space.check_every
            # The ring may hold what arrived and is not yet written: count it as written.
            await self._promise.space.check(unwritten=min(self.received, RING_BYTES))

    def _push(self) -> None:
        self._pushed = self._clock()
        self._deadline.reschedule(self._pushed + self._stall)
