"""Upload locks as PostgreSQL advisory locks, for instances that share no filesystem.

Session-level advisory locks on one connection per process, kept open for its life:
a PATCH takes its upload's lock with ``pg_try_advisory_lock`` (never waiting: another
holder means 423), and gives it back with ``pg_advisory_unlock``. A process that dies,
SIGKILL included, closes its connection, and PostgreSQL releases its locks at once, so a
client resumes through another instance. The same session may take a lock twice, so the
process also remembers which keys it holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from satchel.errors import Locked
from satchel.storage.locks import Release

log = logging.getLogger("satchel.locks")


def lock_number(key: str) -> int:
    """The advisory lock's 64-bit key: from a hash, so keys never need a table."""
    digest = hashlib.sha256(b"satchel-upload:" + key.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class PgLocks:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None
        self._mutex = asyncio.Lock()  # one query at a time on the connection
        self._held: set[str] = set()
        self._undoing: set[asyncio.Task[None]] = set()

    async def acquire(self, key: str) -> Release:
        if key in self._held:
            raise Locked(retry_after=1)
        self._held.add(key)
        call = asyncio.ensure_future(self._ask("pg_try_advisory_lock", key))
        try:
            got = await asyncio.shield(call)
        except asyncio.CancelledError:
            call.add_done_callback(lambda call: self._give_back(key, call))
            raise
        except BaseException:
            self._held.discard(key)
            raise
        if not got:
            self._held.discard(key)
            raise Locked(retry_after=1)

        async def release() -> None:
            await asyncio.shield(self._unlock(key))

        return release

    async def _unlock(self, key: str) -> None:
        try:
            await self._ask("pg_advisory_unlock", key)
        except Exception:  # the connection is gone, and the lock with it
            log.exception("Could not release the lock of upload %s", key)
        finally:
            self._held.discard(key)

    def _give_back(self, key: str, call: asyncio.Future[bool]) -> None:
        """The lock a cancelled caller took, released as soon as it is known."""
        if call.cancelled() or call.exception() is not None or not call.result():
            self._held.discard(key)
            return
        task = asyncio.ensure_future(self._unlock(key))
        self._undoing.add(task)
        task.add_done_callback(self._undoing.discard)

    async def _ask(self, function: str, key: str) -> bool:
        async with self._mutex:
            if self._conn is None or self._conn.closed or self._conn.invalidated:
                conn = await self._engine.connect()
                self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            try:
                answer = await self._conn.execute(
                    text(f"SELECT {function}(:key)"), {"key": lock_number(key)}
                )
            except Exception:
                if lost := len(self._held - {key}):
                    log.error("The lock connection failed; %d upload locks ended with it", lost)
                await self._drop()
                raise
            return bool(answer.scalar())

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except Exception:
                log.debug("closing a broken lock connection failed", exc_info=True)

    async def close(self) -> None:
        """Release every lock (they end with the session)."""
        async with self._mutex:
            await self._drop()
