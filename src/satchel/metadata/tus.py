"""Resumable-upload metadata over SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.metadata.events import NO_EVENTS, EventOutbox
from satchel.metadata.files import utc
from satchel.metadata.tables import tus_uploads
from satchel.tus.rules import Upload, started_event, upload_key


def _upload(row: Any, upload_id: str) -> Upload:
    return Upload(
        id=upload_id,
        length=row.upload_length,
        offset=row.upload_offset,
        metadata=json.loads(row.metadata),
        file_id=row.file_id,
        max_downloads=row.max_downloads,
        max_days=row.max_days,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at),
        completed=bool(row.completed),
        concat=row.upload_concat,
    )


class SqlUploadRepo:
    """Uploads' rows; ``upload.started`` is written to ``events`` with the row."""

    def __init__(self, engine: AsyncEngine, events: EventOutbox = NO_EVENTS) -> None:
        self._engine = engine
        self._events = events

    async def insert(self, upload: Upload) -> None:
        values = {
            "id": upload.key,
            "upload_length": upload.length,
            "upload_offset": upload.offset,
            "metadata": json.dumps(upload.metadata, ensure_ascii=False),
            "file_id": upload.file_id,
            "max_downloads": upload.max_downloads,
            "max_days": upload.max_days,
            "created_at": upload.created_at,
            "expires_at": upload.expires_at,
            "completed": upload.completed,
            "upload_concat": upload.concat,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(tus_uploads).values(**values))
            await self._events.write(conn, "upload.started", [started_event(upload)])
        self._events.committed()

    async def get(self, upload_id: str) -> Upload | None:
        query = select(tus_uploads).where(tus_uploads.c.id == upload_key(upload_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else _upload(row, upload_id)

    async def advance(
        self, upload_id: str, offset: int, length: int | None, expires_at: datetime
    ) -> None:
        values: dict[str, Any] = {"upload_offset": offset, "expires_at": expires_at}
        if length is not None:
            values["upload_length"] = length
        stmt = update(tus_uploads).where(tus_uploads.c.id == upload_key(upload_id)).values(**values)
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def complete(self, upload_id: str) -> None:
        key = upload_key(upload_id)
        stmt = update(tus_uploads).where(tus_uploads.c.id == key).values(completed=True)
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def delete(self, upload_id: str) -> bool:
        key = upload_key(upload_id)
        stmt = delete(tus_uploads).where(tus_uploads.c.id == key).returning(tus_uploads.c.id)
        async with self._engine.begin() as conn:
            return (await conn.execute(stmt)).first() is not None

    async def expired(self, now: datetime) -> list[str]:
        stmt = (
            delete(tus_uploads).where(tus_uploads.c.expires_at <= now).returning(tus_uploads.c.id)
        )
        async with self._engine.begin() as conn:
            return [row.id for row in await conn.execute(stmt)]

    async def unfinished_rest(self) -> int:
        """Bytes still to come of the unfinished, unexpired uploads of known length."""
        rest = tus_uploads.c.upload_length - tus_uploads.c.upload_offset
        query = select(func.coalesce(func.sum(rest), 0)).where(
            tus_uploads.c.completed.is_(False),
            tus_uploads.c.upload_length.is_not(None),
            tus_uploads.c.expires_at > datetime.now(UTC),
        )
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())
