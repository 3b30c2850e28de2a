"""Selections, against SQLite and the real PostgreSQL: kept by a hash of their id, with
their entries' settled names; deleted; forgotten once long expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.archive.selection import Entry, Selection
from satchel.metadata.selections import SqlSelectionRepo
from satchel.metadata.tables import selections

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def selection(selection_id: str, expires_at: datetime) -> Selection:
    entries = (
        Entry("3bea29cc", "sub/IMG_2.jpg", "best/2.jpg"),
        Entry(None, "A" * 22, "речь.txt"),
        Entry("f", "a.jpg", "a.jpg"),
    )
    return Selection(selection_id, "свадьба", entries, NOW, expires_at)


async def test_kept_read_back_and_deleted(engine: AsyncEngine) -> None:
    repo = SqlSelectionRepo(engine)
    kept = selection("Sel_id-0123456789abcdef", NOW + timedelta(hours=1))
    await repo.insert(kept)
    assert await repo.get(kept.id) == kept
    assert await repo.get("Sel_id-0123456789abcdeX") is None
    async with engine.connect() as conn:
        keys = (await conn.execute(select(selections.c.id))).scalars().all()
    assert len(keys) == 1 and kept.id not in keys[0]
    assert await repo.delete(kept.id)
    assert not await repo.delete(kept.id)
    assert await repo.get(kept.id) is None


async def test_purge_forgets_only_those_expired_before_the_cutoff(engine: AsyncEngine) -> None:
    repo = SqlSelectionRepo(engine)
    for n, hours in enumerate((-48, -1, 5)):
        await repo.insert(selection(f"{n}" * 22, NOW + timedelta(hours=hours)))
    assert await repo.purge(NOW - timedelta(days=1)) == 1
    assert await repo.get("0" * 22) is None
    assert await repo.get("1" * 22) is not None and await repo.get("2" * 22) is not None
