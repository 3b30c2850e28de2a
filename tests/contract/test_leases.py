"""Leases, against SQLite and the real PostgreSQL: one holder at a time, renewed by it,
taken over once its time runs out."""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.metadata.leases import SqlLeases
from satchel.metadata.tables import leases


async def test_one_holder_renews_and_another_takes_over_after_it_lapses(
    engine: AsyncEngine,
) -> None:
    a, b = SqlLeases(engine, "a"), SqlLeases(engine, "b")
    assert await a.take("sweep", 0.3)
    assert not await b.take("sweep", 0.3)
    assert await a.take("sweep", 0.3)  # renewed
    assert await b.take("other", 60)  # other work is free
    await asyncio.sleep(0.4)
    assert await b.take("sweep", 60)
    assert not await a.take("sweep", 60)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(leases.c.name, leases.c.holder))).all()
    assert sorted(map(tuple, rows)) == [("other", "b"), ("sweep", "b")]


async def test_racing_takers_get_one_lease(engine: AsyncEngine) -> None:
    takers = [SqlLeases(engine, f"h{i}") for i in range(8)]
    got = await asyncio.gather(*(t.take("sweep", 60) for t in takers), return_exceptions=True)
    assert got.count(True) == 1 and all(g is False for g in got if g is not True)
