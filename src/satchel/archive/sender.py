"""Streaming any byte range of an archive into a :class:`Sink`: header records built in
memory; large bodies sent from their files (by ``sendfile`` where it can), their CRC-32s
read just ahead of their headers; small members read in batches, a thread hop and a
write for many, their CRCs computed from the bytes read."""

from __future__ import annotations

import asyncio
import logging
import threading
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from zlib_ng.zlib_ng import crc32

from satchel.archive.manifest import Manifest
from satchel.blocking import blocking
from satchel.errors import ArchiveChanged
from satchel.storage.base import (
    Member,
    Reader,
    SourceFile,
    fetches_ahead,
    read_all,
    reads_whole,
    stores_crc,
)
from satchel.zipstream import Layout, Part

log = logging.getLogger("satchel.archive")

LOOK_AHEAD = 2  # entries whose CRCs are computed while the current body is sent
# Members up to SMALL bytes are read, not sent by sendfile: consecutive ones are read in
# one thread hop, up to BATCH bytes, and go out with their headers in one write. Per
# member that saves a thread hop, a sendfile and a write (bench/RESULTS.md).
SMALL = 64 * 1024
BATCH = 1024 * 1024
AHEAD = 2  # batches assembled ahead of the one being written


class Sink(Protocol):
    """Where archive bytes go: an HTTP response in production, a buffer in tests."""

    async def write(self, data: bytes | bytearray) -> None: ...

    async def send(self, reader: Reader, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``reader`` from ``offset``; fewer if it shrank."""
        ...


class Sources(Protocol):
    """Where an archive's files are opened: the photo folders (:class:`Folders`), or
    those and the stored files, for a selection. May be ``FetchAhead``."""

    def open(self, source: SourceFile) -> Member:
        """``ArchiveChanged`` if it is gone or no longer that version."""
        ...


class _OpenFile:
    """One member's file. Blocking methods; a lock makes open, read and close exclusive.

    Async callers may be cancelled while a thread runs one of these; the lock and
    the ``closed`` flag make a late ``open`` after ``close`` a no-op, never a leak.
    """

    def __init__(self, sources: Sources, index: int, source: SourceFile) -> None:
        self.index = index
        self.source = source
        self.file: Member | None = None
        self._sources = sources
        self._closed = False
        self._lock = threading.Lock()

    def open(self) -> None:
        """Open it, checking it is still the version in the manifest."""
        with self._lock:
            if not self._closed:
                self.file = self._sources.open(self.source)

    def verify(self) -> None:
        with self._lock:
            self._member().verify()

    def _member(self) -> Member:
        if self.file is None:
            raise ArchiveChanged(f"{self.source.version.name} was closed")
        return self.file

    def crc(self, chunk_size: int) -> int:
        """CRC-32 of the whole file (kept by its storage, or read), then check it did not
        change meanwhile."""
        with self._lock:
            member = self._member()
            if stores_crc(member) and (stored := member.stored_crc()) is not None:
                return stored
            view = memoryview(bytearray(chunk_size))
            crc, offset, size = 0, 0, self.source.version.size
            while offset < size:
                n = member.read_into(offset, view[: min(chunk_size, size - offset)])
                if n == 0:
                    raise ArchiveChanged(f"{self.source.version.name} shrank while being read")
                crc = crc32(view[:n], crc)
                offset += n
            member.verify()
            return crc

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self.file is not None:
                self.file.close()
                self.file = None


def _retire_and_open(previous: _OpenFile | None, following: _OpenFile | None) -> None:
    if previous is not None:
        try:
            previous.verify()
        finally:
            previous.close()
    if following is not None:
        following.open()


def _assemble(
    sources: Sources,
    manifest: Manifest,
    known: Sequence[int | None],
    start: int,
    stop: int,
    indexes: range,
    previous: _OpenFile | None,
) -> _Assembled:
    """Check and close ``previous``; then archive bytes [start, stop), the headers and
    bodies of the small members ``indexes``, in one buffer. Each body is read whole
    (into its place when the range holds all of it) and checked against the version in
    the manifest; a CRC not known is computed from it."""
    _retire_and_open(previous, None)
    layout, files = manifest.layout, manifest.files
    out = bytearray(stop - start)
    view = memoryview(out)
    read = sources.read_whole if reads_whole(sources) else None
    offsets, data_ats = layout.offsets, layout.data_ats
    crcs, computed = array("q"), array("q")
    for index in indexes:
        source, offset, data_at = files[index], offsets[index], data_ats[index]
        end = data_at + source.version.size
        whole = start <= data_at and end <= stop
        body = (
            view[data_at - start : end - start] if whole else memoryview(bytearray(end - data_at))
        )
        if read is not None:
            read(source, body)
        else:
            read_all(sources.open(source), source, body)
        if not whole and (lo := max(start, data_at)) < (hi := min(stop, end)):
            view[lo - start : hi - start] = body[lo - data_at : hi - data_at]
        crc = known[index]
        if crc is None:
            crc = crc32(body)
            computed.append(index)
        crcs.append(crc)
        if start <= offset and data_at <= stop:  # the whole header: most members
            layout.put_local_header(out, offset - start, index, crc)
        elif (lo := max(start, offset)) < (hi := min(stop, data_at)):
            header = layout.local_header(index, crc)
            view[lo - start : hi - start] = header[lo - offset : hi - offset]
    return _Assembled(out, crcs, computed)


def _crc_of(opened: _OpenFile, chunk_size: int) -> int:
    opened.open()
    return opened.crc(chunk_size)


def _close_all(files: list[_OpenFile]) -> None:
    for opened in files:
        opened.close()


class _Assembled(NamedTuple):
    """A batch of small members' archive bytes, each one's CRC, and the indexes of those
    computed (not known before)."""

    out: bytearray
    crcs: array[int]
    computed: array[int]


Batch = tuple[int, int, range]
"""Archive bytes [start, stop) of the small members ``range``, assembled at once."""


def small_batches(layout: Layout, start: int, stop: int) -> list[Batch]:
    """The run of small members from byte ``start`` on (up to a large member or
    ``stop``), in batches of up to BATCH bytes."""
    offsets, sizes = layout.offsets, layout.sizes
    batches: list[Batch] = []
    at, index = start, layout.entry_at(start)
    while at < min(stop, layout.central_offset) and sizes[index] <= SMALL:
        last, limit = index + 1, min(stop, at + BATCH)
        while last < len(sizes) and offsets[last] < limit and sizes[last] <= SMALL:
            last += 1
        until = min(stop, layout.end(last - 1))
        batches.append((at, until, range(index, last)))
        at, index = until, last
    return batches


class _Ahead:
    """Batches assembled in order in a thread, up to AHEAD of them waiting to be taken.
    The thread goes from one batch to the next without a hop back to the event loop (a
    hop cost a millisecond a batch, bench/RESULTS.md); it ends when AHEAD wait, and
    taking one starts it again. It opens and closes every file itself: stopping or
    cancelling the taker leaks none."""

    def __init__(
        self,
        args: tuple[Sources, Manifest, Sequence[int | None]],
        batches: Sequence[Batch],
        previous: _OpenFile | None,
    ) -> None:
        self._args = args
        self._batches = batches
        self._previous = previous  # retired (checked, closed) before the first batch
        self._lock = threading.Lock()
        self._next = 0  # the batch to assemble next
        self._waiting = 0  # assembled, not taken
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        self._done: asyncio.Queue[_Assembled | Exception] = asyncio.Queue()
        self._running = True
        self._spawn()

    def _spawn(self) -> None:
        run = asyncio.ensure_future(blocking(self._run))
        run.add_done_callback(lambda t: t.cancelled() or t.exception())

    def _run(self) -> None:
        while True:
            with self._lock:
                previous, self._previous = self._previous, None
                if self._stopped or self._next == len(self._batches) or self._waiting == AHEAD:
                    self._running = False
                    break
                at, self._next = self._next, self._next + 1
            item: _Assembled | Exception
            try:
                item = _assemble(*self._args, *self._batches[at], previous)
            except Exception as exc:
                item = exc
            with self._lock:
                self._waiting += 1
                self._stopped |= isinstance(item, Exception)  # nothing after a failure
            try:
                self._loop.call_soon_threadsafe(self._done.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody takes it
                self.stop()
        if previous is not None:  # stopped before its first batch
            previous.close()

    async def take(self) -> _Assembled:
        """The next batch, in order; its error if it failed."""
        item = await self._done.get()
        with self._lock:
            self._waiting -= 1
            again = not (self._running or self._stopped or self._next == len(self._batches))
            self._running |= again
        if again:
            self._spawn()
        if isinstance(item, Exception):
            raise item
        return item

    def stop(self) -> None:
        """Assemble no more batches (the one under way, if any, is finished)."""
        with self._lock:
            self._stopped = True


@dataclass
class ArchiveSender:
    """Streams byte ranges of one archive into a sink, computing missing CRCs."""

    manifest: Manifest
    known: Sequence[int | None]  # each file's CRC, where one is known
    sink: Sink
    sources: Sources
    chunk_size: int = 1024 * 1024
    delay: float = 0.0
    # indexes of the members whose CRC was computed, not known: an array, not a tuple a
    # member (100,000 would take 12 MB); the CRCs are in ``crcs``
    computed: array[int] = field(default_factory=lambda: array("q"))
    crcs: array[int] = field(init=False)  # each member's CRC once used; -1 before
    _open: _OpenFile | None = None
    # Files of the next entries, their CRCs being computed in threads while the
    # current body goes out: the CRC work overlaps the kernel's copy.
    _ahead: dict[int, tuple[_OpenFile, asyncio.Future[int]]] = field(default_factory=dict)
    # Files of the next entries being opened (members over a network: ``FetchAhead``)
    _opening: dict[int, tuple[_OpenFile, asyncio.Future[None]]] = field(default_factory=dict)
    _stop: int = 0

    def __post_init__(self) -> None:
        self.crcs = array("q", [-1]) * len(self.manifest.files)

    async def send(self, start: int, stop: int) -> None:
        layout = self.manifest.layout
        sizes = layout.sizes
        self._stop = stop
        batches = self._batches
        at = start
        while at < min(stop, layout.central_offset):
            index = layout.entry_at(at)
            if batches and sizes[index] <= SMALL:
                at = await self._send_small(at, stop)
                continue
            until = min(stop, layout.end(index))
            for piece in layout.pieces(at, until):
                if piece.part is Part.LOCAL:
                    header = layout.local_header(index, await self._crc(index))
                    await self._write(header[piece.start : piece.stop])
                else:
                    await self._send_body(index, piece.start, piece.length)
            at = until
        if self._open is not None:  # the last body must be intact before what follows
            await self._switch(None, open_it=False)
        for piece in layout.pieces(at, stop):
            if piece.part is Part.CENTRAL:
                await self._send_central(piece.start, piece.stop)
            else:
                await self._write(layout.end_records()[piece.start : piece.stop])

    @property
    def _batches(self) -> bool:
        """Small members are batched but with a per-chunk delay (tests) or where members
        come over a network and are opened ahead, in parallel."""
        fetch = self.sources.fetch_ahead if fetches_ahead(self.sources) else 0
        return self.delay == 0 and fetch == 0

    async def _send_small(self, start: int, stop: int) -> int:
        """Send the run of small members from byte ``start`` (up to a large member or
        ``stop``) in batches, each written while the next ones are assembled in a
        thread; where the run ends."""
        batches = small_batches(self.manifest.layout, start, stop)
        previous, self._open = self._open, None  # checked and closed before the first
        ahead = _Ahead((self.sources, self.manifest, self.known), batches, previous)
        try:
            for _, _, indexes in batches:  # taken in their order
                out, crcs, computed = await ahead.take()
                self.crcs[indexes.start : indexes.stop] = crcs
                self.computed += computed
                await self._write(out)
        finally:
            ahead.stop()
        return batches[-1][1]

    async def close(self) -> None:
        """Close every file this sender opened, even if the caller is being cancelled."""
        files = [self._open] if self._open is not None else []
        for opened, computing in self._ahead.values():
            files.append(opened)
            computing.cancel()
        for opened, opening in self._opening.values():
            files.append(opened)
            opening.cancel()
        self._open = None
        self._ahead.clear()
        self._opening.clear()
        if files:
            # One shielded call, scheduled at once: cancelling us cannot stop it.
            await asyncio.shield(blocking(_close_all, files))

    async def _switch(self, following: _OpenFile | None, *, open_it: bool = True) -> None:
        """Make ``following`` the current file in one thread hop: check the previous
        file was not changed while it was sent, close it, open the next one."""
        previous, self._open = self._open, following  # close() now covers both
        if previous is None and not open_it:
            return
        # Shielded: once scheduled it runs to the end, so nothing is left open.
        await asyncio.shield(blocking(_retire_and_open, previous, following if open_it else None))

    async def _file(self, index: int) -> _OpenFile:
        if self._open is None or self._open.index != index:
            if index in self._opening:
                following, opening = self._opening.pop(index)
                await self._switch(following, open_it=False)
                await opening
            else:
                await self._switch(_OpenFile(self.sources, index, self.manifest.files[index]))
        assert self._open is not None
        return self._open

    async def _crc(self, index: int) -> int:
        crc = self.crcs[index]
        if crc >= 0:
            return crc
        known = self.known[index]
        if known is not None:
            crc = known
        else:
            if index in self._ahead:
                following, task = self._ahead.pop(index)  # adopt its open file for the body
                await self._switch(following, open_it=False)
                crc = await task
            else:
                opened = await self._file(index)
                crc = await blocking(opened.crc, self.chunk_size)
            self.computed.append(index)
        self.crcs[index] = crc
        return crc

    @property
    def cache_hits(self) -> int:
        """Members whose CRC came from ``known``; ``computed`` holds the others."""
        return len(self.crcs) - self.crcs.count(-1) - len(self.computed)

    def _look_ahead(self, index: int) -> None:
        """Start CRCs of the next entries whose headers the range reaches; open the next
        members ahead where they come over a network."""
        layout, files = self.manifest.layout, self.manifest.files
        fetch = self.sources.fetch_ahead if fetches_ahead(self.sources) else 0
        for following in range(index + 1, min(index + 1 + max(LOOK_AHEAD, fetch), len(files))):
            source = files[following]
            if layout.offsets[following] >= self._stop:
                return
            if following in self._ahead or following in self._opening:
                continue
            if layout.sizes[following] <= SMALL and self._batches:
                continue  # read in a batch when it comes
            if self.crcs[following] >= 0 or self.known[following] is not None:
                if following <= index + fetch:
                    opened = _OpenFile(self.sources, following, source)
                    opening = asyncio.ensure_future(blocking(opened.open))
                    opening.add_done_callback(lambda t: t.cancelled() or t.exception())
                    self._opening[following] = (opened, opening)
                continue
            if following > index + LOOK_AHEAD:
                continue
            opened = _OpenFile(self.sources, following, source)
            task = asyncio.ensure_future(blocking(_crc_of, opened, self.chunk_size))
            # A failure surfaces when the entry is reached; if it never is, stay quiet.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._ahead[following] = (opened, task)

    async def _send_central(self, start: int, stop: int) -> None:
        layout = self.manifest.layout
        for index in layout.central_entries(start, stop):
            if self.crcs[index] < 0:  # not when its member was sent: a range that starts here
                await self._crc(index)
        for at in range(start, stop, BATCH):
            await self._write(layout.central(at, min(stop, at + BATCH), self.crcs))

    async def _send_body(self, index: int, offset: int, count: int) -> None:
        opened = await self._file(index)
        self._look_ahead(index)
        assert opened.file is not None
        if self.delay == 0:
            sent = await self.sink.send(opened.file, offset, count)
            self._log_chunk(sent)
            if sent != count:
                raise ArchiveChanged(f"{opened.source.version.name} shrank while being sent")
            return
        file, end = opened.file, offset + count  # with a per-chunk delay: chunk by chunk
        while offset < end:
            data = await blocking(file.read, offset, min(self.chunk_size, end - offset))
            if not data:
                raise ArchiveChanged(f"{opened.source.version.name} shrank while being sent")
            await self._write(data)
            offset += len(data)

    async def _write(self, data: bytes | bytearray) -> None:
        await self.sink.write(data)
        self._log_chunk(len(data))
        if self.delay:
            await asyncio.sleep(self.delay)

    def _log_chunk(self, size: int) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("Sending archive %s chunk %d bytes", self.manifest.label, size)
