"""Shares over SQL (SQLite or PostgreSQL): the shares table, and its files' rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.files.rules import StoredFile
from satchel.metadata.events import NO_EVENTS, EventOutbox
from satchel.metadata.files import CLAIM_LEASE, claim, end_claim, record_of, utc
from satchel.metadata.tables import files, shares
from satchel.shares.rules import Share


def _share(row: Any) -> Share:
    return Share(
        id=row.id,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at),
        max_downloads=row.max_downloads,
        downloads=row.downloads,
        password=row.password,
        closed_at=None if row.closed_at is None else utc(row.closed_at),
    )


def _closed(share_id: str, reason: str) -> dict[str, object]:
    return {"id": share_id, "reason": reason}


class SqlShareRepo:
    """Shares' rows; ``share.closed`` is written to ``events`` with the change."""

    def __init__(self, engine: AsyncEngine, events: EventOutbox = NO_EVENTS) -> None:
        self._engine = engine
        self._events = events

    async def insert(self, share: Share, owner_token_sha256: str) -> None:
        values = {
            "id": share.id,
            "owner_token_sha256": owner_token_sha256,
            "password": share.password,
            "created_at": share.created_at,
            "expires_at": share.expires_at,
            "max_downloads": share.max_downloads,
        }
        async with self._engine.begin() as conn:
            await conn.execute(insert(shares).values(**values))

    async def get(self, share_id: str) -> Share | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(select(shares).where(shares.c.id == share_id))).first()
        return None if row is None else _share(row)

    async def expiry(self, share_id: str) -> datetime | None:
        query = select(shares.c.expires_at).where(shares.c.id == share_id)
        async with self._engine.connect() as conn:
            found = (await conn.execute(query)).scalar()
        return None if found is None else utc(found)

    async def owns(self, share_id: str, owner_token_sha256: str) -> bool:
        query = select(shares.c.id).where(
            shares.c.id == share_id, shares.c.owner_token_sha256 == owner_token_sha256
        )
        async with self._engine.connect() as conn:
            return (await conn.execute(query)).first() is not None

    async def update(self, share: Share, *, closing: bool = False) -> None:
        """Keep the share's settings; its files expire with it. ``closing``: it was
        open until now."""
        values = {
            "expires_at": share.expires_at,
            "max_downloads": share.max_downloads,
            "password": share.password,
            "closed_at": share.closed_at,
        }
        async with self._engine.begin() as conn:
            await conn.execute(update(shares).where(shares.c.id == share.id).values(**values))
            await conn.execute(
                update(files).where(files.c.share == share.id).values(expires_at=share.expires_at)
            )
            if closing:
                await self._events.write(conn, "share.closed", [_closed(share.id, "closed")])
        self._events.committed()

    async def files(self, share_id: str) -> list[StoredFile]:
        """The share's files, oldest first."""
        query = (
            select(files).where(files.c.share == share_id).order_by(files.c.created_at, files.c.id)
        )
        async with self._engine.connect() as conn:
            return [record_of(row) for row in await conn.execute(query)]

    async def count_files(self, share_id: str) -> int:
        query = select(func.count()).select_from(files).where(files.c.share == share_id)
        async with self._engine.connect() as conn:
            return int((await conn.execute(query)).scalar() or 0)

    async def delete(self, share_id: str, reason: str) -> bool:
        """Forget the share (its files' rows are the file store's to remove); ``reason``
        goes into its ``share.closed`` event."""
        stmt = delete(shares).where(shares.c.id == share_id).returning(shares.c.id)
        async with self._engine.begin() as conn:
            deleted = (await conn.execute(stmt)).first() is not None
            if deleted:
                await self._events.write(conn, "share.closed", [_closed(share_id, reason)])
        self._events.committed()
        return deleted

    async def claim_download(self, share_id: str, now: datetime) -> bool:
        return await claim(self._engine, shares, share_id, now)

    async def end_download(self, share_id: str, *, completed: bool, claimed: bool) -> None:
        await end_claim(self._engine, shares, share_id, completed=completed, claimed=claimed)

    async def ended(self, now: datetime) -> list[Share]:
        """Shares expired or used up, for the purge; stale claims let go."""
        stale = update(shares).where(shares.c.claims > 0, shares.c.claimed_at < now - CLAIM_LEASE)
        query = select(shares).where(
            or_(shares.c.expires_at <= now, shares.c.downloads >= shares.c.max_downloads)
        )
        async with self._engine.begin() as conn:
            await conn.execute(stale.values(claims=0))
            return [_share(row) for row in await conn.execute(query)]
