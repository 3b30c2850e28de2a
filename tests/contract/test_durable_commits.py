"""A 201 is sent after the row's commit: that commit must survive a power cut, as the
file's bytes do (they are fsynced, and their directory, before the insert)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_a_commit_is_on_stable_storage_when_it_returns(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # WAL with synchronous=FULL syncs the log at every commit; NORMAL would not
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar() == "wal"
            assert (await conn.execute(text("PRAGMA synchronous"))).scalar() == 2  # FULL
        else:
            assert (await conn.execute(text("SHOW synchronous_commit"))).scalar() == "on"
            assert (await conn.execute(text("SHOW fsync"))).scalar() == "on"
