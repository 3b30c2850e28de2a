"""GET /check/<id> answers from a short per-process cache of the encoded JSON.

Another worker's download or delete shows here within ``ttl``; this process's own show
at once (the handlers ``forget`` the id); downloads themselves always read the database.
"""

from __future__ import annotations

import asyncio
import functools
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from satchel.errors import FileNotFound
from satchel.files.rules import ID_RE, StoredFile, describe
from satchel.files.service import FileStore
from satchel.http.answers import dumps

_SIZE = 10_000


@dataclass
class _Checked:
    """A cache entry: the record's lookup, and its JSON per base URL."""

    until: float  # time.monotonic(): look again after this
    lookup: asyncio.Future[StoredFile | None]
    bodies: dict[str, bytes] = field(default_factory=dict)
    expires: float = 0.0  # time.time() of the record's expiry, once it is known available


class CheckCache:
    def __init__(self, store: FileStore, ttl: float = 1.0) -> None:
        self._store = store
        self.ttl = ttl
        self._checked: dict[str, _Checked] = {}

    def fresh(self, file_id: str, base: str) -> bytes | None:
        """The answer if the cache holds a fresh one; else ask ``answer``.

        The fast path of the hottest request: no coroutine, no datetime (bench/RESULTS.md).
        """
        entry = self._checked.get(file_id)
        if entry is None or entry.until < time.monotonic() or entry.expires <= time.time():
            return None
        return entry.bodies.get(base)

    async def answer(self, file_id: str, base: str) -> bytes:
        now = time.monotonic()
        entry = self._checked.get(file_id)
        if entry is None or entry.until < now:
            if not ID_RE.fullmatch(file_id):
                raise FileNotFound()
            if len(self._checked) >= _SIZE:
                self._checked.clear()
            entry = _Checked(now + self.ttl, asyncio.ensure_future(self._store.repo.get(file_id)))
            entry.lookup.add_done_callback(functools.partial(self._forget_failed, file_id, entry))
            self._checked[file_id] = entry
        lookup = entry.lookup
        # Shared: when an entry expires under load, every request for that id waits for
        # one lookup instead of each taking a connection of its own (bench/RESULTS.md).
        # Shielded: a client that leaves does not cancel the others' lookup.
        record = lookup.result() if lookup.done() else await asyncio.shield(lookup)
        if record is None or record.share is not None or not record.available(datetime.now(UTC)):
            raise FileNotFound()  # a share's file is checked through its share
        entry.expires = record.expires_at.timestamp()
        body = entry.bodies.get(base)
        if body is None:
            body = entry.bodies[base] = dumps(describe(record, base)).encode()
        return body

    def forget(self, file_id: str) -> None:
        """This process downloaded or deleted the file: the next answer looks again."""
        self._checked.pop(file_id, None)

    def _forget_failed(
        self, file_id: str, entry: _Checked, lookup: asyncio.Future[StoredFile | None]
    ) -> None:
        """A lookup that failed is not an answer to keep: the next request asks again."""
        failed = lookup.cancelled() or lookup.exception() is not None
        if failed and self._checked.get(file_id) is entry:
            del self._checked[file_id]
