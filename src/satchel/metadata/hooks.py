"""The webhook outbox over SQL (SQLite or PostgreSQL): deliveries claimed, sent, retried
(they are written by ``metadata/events.py``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.hooks.rules import Delivery
from satchel.metadata.files import utc
from satchel.metadata.tables import hook_outbox as outbox


class SqlHookOutbox:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def claim(self, now: datetime, until: datetime, limit: int) -> list[Delivery]:
        """Deliveries due now and claimed by nobody, now claimed until ``until``, in one
        statement: on PostgreSQL rows another instance is claiming are skipped, and a
        row claimed meanwhile fails the outer condition when it is re-read, so no
        delivery is claimed twice."""
        free = and_(
            outbox.c.next_at <= now,
            or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now),
        )
        due = (
            select(outbox.c.id)
            .where(free)
            .order_by(outbox.c.next_at)
            .limit(limit)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite has one writer anyway
        )
        stmt = (
            update(outbox)
            .where(outbox.c.id.in_(due.scalar_subquery()), free)
            .values(claimed_until=until)
            .returning(
                outbox.c.id, outbox.c.url, outbox.c.body, outbox.c.tries, outbox.c.created_at
            )
        )
        async with self._engine.begin() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Delivery(r.id, r.url, r.body, r.tries, utc(r.created_at)) for r in rows]

    async def delivered(self, delivery_id: str) -> None:
        """Sent (or given up): out of the outbox."""
        async with self._engine.begin() as conn:
            await conn.execute(delete(outbox).where(outbox.c.id == delivery_id))

    async def retry(self, delivery_id: str, tries: int, at: datetime, error: str) -> None:
        """A try failed: the next is due ``at``."""
        stmt = (
            update(outbox)
            .where(outbox.c.id == delivery_id)
            .values(tries=tries, next_at=at, claimed_until=None, last_error=error[:500])
        )
        async with self._engine.begin() as conn:
            await conn.execute(stmt)
