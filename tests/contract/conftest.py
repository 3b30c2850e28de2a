from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.metadata.db import create_engine, migrate


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """A migrated database: SQLite, then the real PostgreSQL."""
    engine = create_engine(db_url)
    await migrate(engine)
    yield engine
    await engine.dispose()
