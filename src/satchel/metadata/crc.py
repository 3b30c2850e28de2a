"""CRC cache repository over SQL (SQLite or PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import LargeBinary, case, delete, func, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.archive.manifest import CrcEntry
from satchel.archive.snapshot import Snapshot
from satchel.metadata.tables import crc_cache, crc_snapshots
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

    async def snapshot(self, key: str, etag: str) -> Snapshot | None:
        table = crc_snapshots.c
        versions = case((table.etag == etag, literal(b"", LargeBinary)), else_=table.versions)
        query = select(table.etag, table.crcs, versions.label("versions"))
        query = query.where(table.label == key)
        async with self._engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else Snapshot(row.etag, bytes(row.crcs), bytes(row.versions))

    async def keep_snapshot(self, key: str, snapshot: Snapshot) -> None:
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        stmt = dialect.insert(crc_snapshots).values(
            label=key, etag=snapshot.etag, crcs=snapshot.crcs, versions=snapshot.versions
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[crc_snapshots.c.label],
            set_={
                "etag": stmt.excluded.etag,
                "crcs": stmt.excluded.crcs,
                "versions": stmt.excluded.versions,
                "saved_at": func.now(),
            },
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)

    async def prune_snapshots(self, before: datetime) -> int:
        stmt = delete(crc_snapshots).where(crc_snapshots.c.saved_at < before)
        async with self._engine.begin() as conn:
            return int((await conn.execute(stmt)).rowcount)
