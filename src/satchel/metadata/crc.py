"""CRC cache repository over SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.archive.manifest import CrcEntry
from satchel.metadata.tables import crc_cache
from satchel.storage.base import FileVersion


class SqlCrcRepo:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self, folder: str) -> dict[FileVersion, int]:
        query = select(
            crc_cache.c.name,
            crc_cache.c.size,
            crc_cache.c.mtime_ns,
            crc_cache.c.inode,
            crc_cache.c.crc32,
        ).where(crc_cache.c.folder == folder)
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return {FileVersion(r.name, r.size, r.mtime_ns, r.inode): r.crc32 for r in rows}

    async def save(self, folder: str, entries: Sequence[CrcEntry]) -> None:
        if not entries:
            return
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(crc_cache)
        stmt = stmt.on_conflict_do_update(
            index_elements=[crc_cache.c.folder, crc_cache.c.name],
            set_={c: stmt.excluded[c] for c in ("size", "mtime_ns", "inode", "crc32")},
        )
        rows = [
            {
                "folder": folder,
                "name": e.version.name,
                "size": e.version.size,
                "mtime_ns": e.version.mtime_ns,
                "inode": e.version.inode,
                "crc32": e.crc,
            }
            for e in entries
        ]
        async with self._engine.begin() as conn:
            await conn.execute(stmt, rows)
