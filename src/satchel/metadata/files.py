"""File metadata over SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, case, delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.files.rules import StoredFile, event_data
from satchel.metadata.events import NO_EVENTS, EventOutbox
from satchel.metadata.tables import files, tus_uploads

_BATCH = 500
# Claims this old, with none newer, were left by a process that died mid-download.
CLAIM_LEASE = timedelta(days=1)


def utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def record_of(row: Any) -> StoredFile:
    return StoredFile(
        id=row.id,
        name=row.name,
        size=row.size,
        content_type=row.content_type,
        sha256=row.sha256,
        crc32=row.crc32,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at),
        max_downloads=row.max_downloads,
        downloads=row.downloads,
        share=row.share,
    )


async def claim(engine: AsyncEngine, table: Table, key: str, now: datetime) -> bool:
    """Take one of the downloads left of a limited file or share (``table``'s row
    ``key``) for a whole download about to start. One statement, so racing downloads on
    any number of workers and instances claim exactly: PostgreSQL re-checks the WHERE
    under the row's lock, and SQLite runs one writer at a time."""
    stmt = (
        update(table)
        .where(
            table.c.id == key,
            table.c.expires_at > now,
            table.c.downloads + table.c.claims < table.c.max_downloads,
        )
        .values(claims=table.c.claims + 1, claimed_at=now)
        .returning(table.c.id)
    )
    async with engine.begin() as conn:
        return (await conn.execute(stmt)).first() is not None


async def end_claim(
    engine: AsyncEngine, table: Table, key: str, *, completed: bool, claimed: bool
) -> None:
    """A whole download ended: count it if ``completed``; give its claim back."""
    values: dict[str, Any] = {}
    if completed:
        values["downloads"] = table.c.downloads + 1
    if claimed:  # never below 0: a stale claim may have been let go meanwhile
        values["claims"] = case((table.c.claims > 0, table.c.claims - 1), else_=0)
    if values:
        async with engine.begin() as conn:
            await conn.execute(update(table).where(table.c.id == key).values(**values))


class SqlFileRepo:
    """Files' rows; ``file.stored``, ``file.deleted`` and ``file.expired`` are written to
    ``events`` in the same transactions."""

    def __init__(self, engine: AsyncEngine, events: EventOutbox = NO_EVENTS) -> None:
        self._engine = engine
        self._events = events

    async def insert(self, record: StoredFile, delete_token_sha256: str) -> None:
        values = {
            "id": record.id,
            "name": record.name,
            "size": record.size,
            "content_type": record.content_type,
            "sha256": record.sha256,
            "crc32": record.crc32,
            "created_at": record.created_at,
            "expires_at": record.expires_at,
            "max_downloads": record.max_downloads,
            "downloads": record.downloads,
            "delete_token_sha256": delete_token_sha256,
            "share": record.share,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(files).values(**values))
            await self._events.write(conn, "file.stored", [event_data(record)])
        self._events.committed()

    async def get(self, file_id: str) -> StoredFile | None:
        query = select(files).where(files.c.id == file_id)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else record_of(row)

    async def get_many(self, ids: Sequence[str]) -> dict[str, StoredFile]:
        found: dict[str, StoredFile] = {}
        async with self._engine.connect() as conn:
            for at in range(0, len(ids), _BATCH):
                query = select(files).where(files.c.id.in_(ids[at : at + _BATCH]))
                found.update((row.id, record_of(row)) for row in await conn.execute(query))
        return found

    async def claim_download(self, file_id: str, now: datetime) -> bool:
        return await claim(self._engine, files, file_id, now)

    async def end_download(self, file_id: str, *, completed: bool, claimed: bool) -> None:
        await end_claim(self._engine, files, file_id, completed=completed, claimed=claimed)

    async def owns(self, file_id: str, delete_token_sha256: str) -> bool:
        query = select(files.c.id).where(
            files.c.id == file_id, files.c.delete_token_sha256 == delete_token_sha256
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def delete(self, file_id: str, delete_token_sha256: str) -> bool:
        stmt = (
            delete(files)
            .where(files.c.id == file_id, files.c.delete_token_sha256 == delete_token_sha256)
            .returning(files.c.id)
        )
        async with self._engine.begin() as conn:
            deleted = (await conn.execute(stmt)).first() is not None
            if deleted:
                await self._events.write(conn, "file.deleted", [{"id": file_id}])
        self._events.committed()
        return deleted

    async def remove(self, ids: Sequence[str]) -> None:
        async with self._engine.begin() as conn:
            for at in range(0, len(ids), _BATCH):
                batch = delete(files).where(files.c.id.in_(ids[at : at + _BATCH]))
                gone = [row.id for row in await conn.execute(batch.returning(files.c.id))]
                await self._events.write(conn, "file.deleted", [{"id": i} for i in gone])
        self._events.committed()

    async def purge(self, now: datetime) -> list[str]:
        stale = update(files).where(files.c.claims > 0, files.c.claimed_at < now - CLAIM_LEASE)
        stmt = (
            delete(files)
            .where(
                or_(
                    files.c.expires_at <= now,
                    files.c.downloads >= files.c.max_downloads,
                )
            )
            .returning(files.c.id)
        )
        async with self._engine.begin() as conn:
            await conn.execute(stale.values(claims=0))  # left by a process that died
            ids = [row.id for row in await conn.execute(stmt)]
            await self._events.write(conn, "file.expired", [{"id": i} for i in ids])
        self._events.committed()
        return ids

    async def known(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self._engine.connect() as conn:
            for at in range(0, len(ids), _BATCH):
                batch = ids[at : at + _BATCH]
                for query in (
                    select(files.c.id).where(files.c.id.in_(batch)),
                    # a resumable upload's bytes may be its file's before the file's row
                    select(tus_uploads.c.file_id).where(tus_uploads.c.file_id.in_(batch)),
                ):
                    found.update(row[0] for row in await conn.execute(query))
        return found
