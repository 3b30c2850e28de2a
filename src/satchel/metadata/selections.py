"""Archives of a selection over SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.archive.selection import (
    Selection,
    entries_from_json,
    entries_json,
    selection_key,
)
from satchel.metadata.files import utc
from satchel.metadata.tables import selections


class SqlSelectionRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def insert(self, selection: Selection) -> None:
        values = {
            "id": selection_key(selection.id),
            "name": selection.name,
            "entries": entries_json(selection.entries),
            "created_at": selection.created_at,
            "expires_at": selection.expires_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(selections).values(**values))

    async def get(self, selection_id: str) -> Selection | None:
        """The selection, expired or not (the caller tells them apart)."""
        query = select(selections).where(selections.c.id == selection_key(selection_id))
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        if row is None:
            return None
        entries = entries_from_json(row.entries)
        return Selection(selection_id, row.name, entries, utc(row.created_at), utc(row.expires_at))

    async def delete(self, selection_id: str) -> bool:
        stmt = delete(selections).where(selections.c.id == selection_key(selection_id))
        async with self._engine.begin() as conn:
            return bool((await conn.execute(stmt)).rowcount)

    async def purge(self, before: datetime) -> int:
        stmt = delete(selections).where(selections.c.expires_at < before)
        async with self._engine.begin() as conn:
            return int((await conn.execute(stmt)).rowcount)
