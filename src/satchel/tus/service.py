"""Resumable uploads (tus 1.0): bytes in the storage by the upload's key, offsets in
the database.

- An acknowledged offset is durable: the bytes are made durable before the record
  moves, and the record moves before the client hears 204.
- One writer per upload, across processes and instances: a PATCH holds the upload's
  lock (``Locks``: a ``flock`` locally, a PostgreSQL advisory lock for instances on S3)
  for as long as it writes; another PATCH gets 423 at once.
- Bytes past the acknowledged offset (a crash mid-PATCH) are cut off before writing.
- A PATCH cut short (the network dropped) keeps what arrived, so the client resumes
  there; with an Upload-Checksum the partial chunk cannot be verified and is dropped.
  A full disk cuts it short too: 507, keeping what was written.
- Finishing is idempotent: the stored file's id is chosen at creation; the bytes
  become the stored file's (a hard link locally), its record is inserted, the upload
  marked complete, and only then are the upload's own bytes removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from satchel.blocking import blocking, taken
from satchel.errors import (
    BadRequest,
    ChecksumMismatch,
    Conflict,
    InsufficientStorage,
    Locked,
    PayloadTooLarge,
    UploadNotFound,
)
from satchel.files.intake import Body, Pump
from satchel.files.rules import ID_RE, Retention, StoredFile, media_type, new_id
from satchel.files.service import FileStore
from satchel.storage.base import ALIGN, Appending, Digests, disk_full
from satchel.storage.locks import Locks
from satchel.storage.ring import BLOCK_SIZE, BlockRing
from satchel.throttle import Shaper
from satchel.tus.rules import Checksum, Upload, UploadRepo

log = logging.getLogger("satchel.tus")

_RUNNING_KEPT = 4096  # uploads whose running hashes a process remembers


class TusStore:
    def __init__(self, repo: UploadRepo, files: FileStore, locks: Locks, expiry: timedelta) -> None:
        self.repo = repo
        self.files = files
        self.storage = files.storage  # the uploads' bytes live beside the stored files
        self.locks = locks
        self.expiry = expiry
        self._digests: dict[str, Digests] = {}  # upload key -> hashes up to its offset

    async def create(
        self,
        *,
        length: int | None,
        metadata: dict[str, str | None],
        retention: Retention,
        concat: str | None = None,
    ) -> Upload:
        await self.files.admit(length)  # 413 past the maximum, 507 without room
        now = datetime.now(UTC)
        upload = Upload(
            id=new_id(),
            length=length,
            offset=0,
            metadata=metadata,
            file_id=new_id(),
            max_downloads=retention.max_downloads,
            max_days=retention.days,
            created_at=now,
            expires_at=self._expires(),
            concat=concat,
        )
        await blocking(self.storage.create_upload, upload.key, upload.file_id)
        await self.repo.insert(upload)
        self.files.space.promises_changed()
        if length == 0:
            return await self.settle(upload)
        return upload

    async def concatenate(
        self,
        urls: str,
        part_ids: list[str],
        *,
        metadata: dict[str, str | None],
        retention: Retention,
    ) -> Upload:
        """A final upload: the complete partial uploads' bytes, in order, as one stored
        file (concatenation; unfinished partial uploads are refused)."""
        parts = []
        for part_id in part_ids:
            try:
                part = await self.get(part_id)
            except UploadNotFound as exc:
                raise BadRequest(f"Upload-Concat: no partial upload {part_id!r}.") from exc
            if not part.partial or not part.done:
                raise BadRequest(f"Upload-Concat: {part_id!r} is not a finished partial upload.")
            parts.append(part)
        length = sum(part.length or 0 for part in parts)
        final = await self.create(
            length=length, metadata=metadata, retention=retention, concat=f"final;{urls}"
        )
        if final.completed:  # all parts empty
            return final
        async with contextlib.AsyncExitStack() as held:
            # hold every part, so none is written to or terminated while it is copied
            for upload in (*parts, final):
                await held.enter_async_context(self._held(upload))
            keys = [part.key for part in parts]
            await asyncio.shield(blocking(self.storage.join, final.key, keys))
            await self.repo.advance(final.id, length, None, self._expires())
            return await self._finish(final.moved(length))

    def _expires(self) -> datetime:
        return datetime.now(UTC) + self.expiry

    async def get(self, upload_id: str) -> Upload:
        upload = await self.repo.get(upload_id) if ID_RE.fullmatch(upload_id) else None
        if upload is None or upload.expires_at <= datetime.now(UTC):
            raise UploadNotFound()
        return upload

    async def stored(self, upload: Upload) -> StoredFile | None:
        """The stored file a completed upload became, while it is available."""
        if not upload.completed:
            return None
        record = await self.files.repo.get(upload.file_id)
        return record if record is not None and record.available(datetime.now(UTC)) else None

    # -- writing ---------------------------------------------------------------------

    async def append(
        self,
        upload: Upload,
        offset: int,
        body: Body,
        *,
        length: int | None = None,
        checksum: Checksum | None = None,
        shaper: Shaper | None = None,
    ) -> Upload:
        """Write one PATCH body at ``offset`` into ``upload`` (as the caller looked it up);
        the upload as acknowledged afterwards."""
        _at(upload, offset)  # 409 rather than 423 when both
        async with self._held(upload):
            # another process may have moved the upload before we held it
            upload = _at(await self.get(upload.id), offset)
            if length is not None and length != upload.length:
                if upload.length is not None:
                    raise BadRequest("Upload-Length cannot change once it is set.")
                if length < offset:
                    raise PayloadTooLarge(
                        f"Upload-Length {length} is less than the {offset} bytes received."
                    )
                self.files.limits.check_length(length)
                await self.repo.advance(upload.id, offset, length, self._expires())
                self.files.space.promises_changed()
                upload = replace(upload, length=length)
            if not upload.completed:
                end = await self._receive(upload, body, checksum, shaper)
                upload = upload.moved(end)
                if upload.done and not upload.partial:
                    upload = await self._finish(upload)
        return upload

    async def admit(self, upload: Upload, offset: int, size: int | None) -> None:
        """409 for a PATCH at the wrong offset, then 413 for one whose declared ``size``
        goes past the upload's length, then 507 if it has no room: before the body is
        read. The 507 says where the upload stands."""
        _at(upload, offset)
        if size is not None and upload.length is not None and offset + size > upload.length:
            raise PayloadTooLarge(
                f"The chunk has {size} bytes, but the upload ends {upload.length - offset} "
                f"bytes after Upload-Offset {offset}."
            )
        try:
            own = upload.length - upload.offset if upload.length is not None else 0
            await self.files.space.admit(size, own=own)
        except InsufficientStorage as exc:
            raise _no_room(offset) from exc

    async def settle(self, upload: Upload) -> Upload:
        """Finish an upload whose bytes are all in but which is not yet a stored file
        (a crash in between, or a zero-length upload); a no-op otherwise."""
        if not upload.done or upload.completed or upload.partial:
            return upload
        try:
            async with self._held(upload):
                upload = await self.get(upload.id)
                return await self._finish(upload) if not upload.completed else upload
        except Locked:
            return upload  # the PATCH holding it finishes it

    @contextlib.asynccontextmanager
    async def _held(self, upload: Upload) -> AsyncIterator[None]:
        """Hold the upload's lock (423 at once when another writer holds it)."""
        try:
            release = await self.locks.acquire(upload.key)
        except FileNotFoundError as exc:  # terminated or purged meanwhile
            raise UploadNotFound() from exc
        try:
            yield
        finally:
            await asyncio.shield(release())

    async def _receive(
        self,
        upload: Upload,
        body: Body,
        checksum: Checksum | None,
        shaper: Shaper | None,
    ) -> int:
        """Append the body at the upload's offset; its end offset, fsynced and recorded.

        Through a :class:`BlockRing`, as a plain upload: one thread writes (locally with
        O_DIRECT from the first 4 KiB boundary on); another hashes the chunk for its
        Upload-Checksum and, where this process saw the upload's bytes from offset 0,
        the file's SHA-256 and CRC-32, so that a finished upload is not read again.
        """
        start = upload.offset
        room = self.files.limits.room(upload.length) - start
        try:  # bytes past the offset were never acknowledged: they are cut off
            appending = await taken(
                lambda appending: appending.close(), self.storage.append, upload.key, start
            )
        except FileNotFoundError as exc:  # purged meanwhile
            raise UploadNotFound() from exc
        digests = self._running(upload)
        chunk_hash = checksum.hasher() if checksum is not None else None
        promised = checksum.digest if checksum is not None else None

        def hash_block(block: memoryview) -> None:
            if digests is not None:
                digests.update(block)
            if chunk_hash is not None:
                chunk_hash.update(block)

        stages = [appending.write]
        if digests is not None or chunk_hash is not None:
            stages.append(hash_block)
        too_large = functools.partial(
            PayloadTooLarge,
            f"The chunk goes past Upload-Length ({upload.length}); it was discarded."
            if upload.length is not None
            else "The upload is larger than this server accepts.",
        )
        ring: BlockRing | None = None
        pump: Pump | None = None
        try:
            ring = BlockRing(stages)
            pump = Pump(ring)
            async with self.files.intake(shaper, body.declared) as intake:
                first = -start % ALIGN or BLOCK_SIZE  # then every block starts aligned
                await pump.run(body, intake, room, too_large, first)
            await ring.close()
            if chunk_hash is not None and chunk_hash.digest() != promised:
                raise ChecksumMismatch()
        except (PayloadTooLarge, ChecksumMismatch):
            if ring is not None:
                await ring.abort()
            await asyncio.shield(blocking(appending.keep, start))
            raise
        except BaseException as exc:
            # Cut short (the network, a stall, a cancellation, a full disk): keep what
            # arrived, unless a checksum was promised for the whole chunk. A full disk
            # keeps what is already written: the rest has no room.
            full = isinstance(exc, InsufficientStorage) or disk_full(exc)
            keep_all = checksum is None and not full
            if ring is not None:
                if keep_all and pump is not None and pump.block is not None:
                    ring.send(pump.block, pump.filled)
                try:
                    await (ring.close() if keep_all else ring.abort())
                except Exception as late:  # a write failed while the rest went out
                    full = full or disk_full(late)
            end = start if checksum is not None else start + appending.written
            await asyncio.shield(self._acknowledge(upload, appending, end))
            self._keep_running(upload, digests, end)
            if full:
                raise _no_room(end) from exc
            raise
        else:
            end = start + appending.written
            await asyncio.shield(self._acknowledge(upload, appending, end))
        finally:
            await asyncio.shield(blocking(appending.close))
        self._keep_running(upload, digests, end)
        if end != upload.length:  # as for a plain upload, once every byte is down
            try:
                await self.files.space.check()
            except InsufficientStorage as exc:
                raise _no_room(end) from exc
        return end

    def _running(self, upload: Upload) -> Digests | None:
        """The hashes of the upload's bytes up to its offset, if this process has them
        (it took every byte so far); a partial upload's bytes are hashed once joined."""
        if upload.partial:
            return None
        if upload.offset == 0:
            return Digests()
        digests = self._digests.pop(upload.key, None)
        return digests if digests is not None and digests.size == upload.offset else None

    def _keep_running(self, upload: Upload, digests: Digests | None, end: int) -> None:
        """Remember the hashes for the next PATCH, where they cover exactly the bytes up
        to the acknowledged ``end``. Acknowledged bytes never change, so they stay true."""
        if digests is None or digests.size != end:
            return
        if len(self._digests) >= _RUNNING_KEPT:
            del self._digests[next(iter(self._digests))]  # the oldest
        self._digests[upload.key] = digests

    async def _acknowledge(self, upload: Upload, appending: Appending, end: int) -> None:
        await blocking(appending.keep, end)
        if end != upload.offset:  # progress keeps an upload alive (a sliding expiry)
            await self.repo.advance(upload.id, end, None, self._expires())

    async def _finish(self, upload: Upload) -> Upload:
        """Make the complete bytes the stored file; idempotent."""
        digests = self._digests.pop(upload.key, None)
        await self.files.adopt(
            upload.key,
            file_id=upload.file_id,
            delete_token=upload.delete_token,
            name_for=upload.filename,
            content_type=media_type(upload.filetype),
            retention=Retention(
                upload.max_downloads, upload.max_days, upload.metadata.get("share")
            ),
            digests=digests if digests is not None and digests.size == upload.length else None,
        )
        await self.repo.complete(upload.id)
        self.files.space.promises_changed()
        await blocking(self.storage.remove_upload, upload.key)
        log.info("Resumable upload %s is complete: file %s", upload.id, upload.file_id)
        return replace(upload, completed=True)

    # -- removal ---------------------------------------------------------------------

    async def terminate(self, upload_id: str) -> None:
        upload = await self.get(upload_id)
        async with self._held(upload):
            await blocking(self.storage.remove_upload, upload.key)
            self._digests.pop(upload.key, None)
        # The bytes first, the lock released so their blocks are free: on a full disk they
        # are the room the database needs to delete the row. (Not truncated: a finished
        # upload's bytes may be the stored file's too, by a hard link.)
        await self.files.space.freeing(lambda: self.repo.delete(upload.id))
        self.files.space.promises_changed()

    async def purge(self) -> int:
        """Remove expired uploads, finished or not (a finished one's file lives on)."""
        keys = await self.repo.expired(datetime.now(UTC))
        for key in keys:
            await blocking(self.storage.remove_upload, key)
            self._digests.pop(key, None)
        if keys:
            self.files.space.promises_changed()
            log.info("Removed %d expired resumable uploads", len(keys))
        return len(keys)


def _at(upload: Upload, offset: int) -> Upload:
    if offset != upload.offset:
        raise Conflict(f"Upload-Offset is {offset}, but the upload is at {upload.offset}.")
    return upload


def _no_room(end: int) -> InsufficientStorage:
    return InsufficientStorage(
        f"The server has no room for more bytes of this upload. It keeps {end} "
        f"bytes: resume at Upload-Offset {end} later.",
        upload_offset=end,
    )
