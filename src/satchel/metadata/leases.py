"""Database leases: one instance at a time does a piece of shared work."""

from __future__ import annotations

import os
import secrets
import socket
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.metadata.tables import leases


def holder_name() -> str:
    """This process, as a lease names it (for people reading the table, and unique)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class SqlLeases:
    def __init__(self, engine: AsyncEngine, holder: str | None = None) -> None:
        self._engine = engine
        self.holder = holder or holder_name()

    async def take(self, name: str, seconds: float) -> bool:
        """Hold ``name`` for ``seconds`` from now: renewed if we hold it, taken if nobody
        does or the holder's time ran out; False while another holds it."""
        now = datetime.now(UTC)
        until = now + timedelta(seconds=seconds)
        async with self._engine.begin() as conn:
            moved = await conn.execute(
                update(leases)
                .where(leases.c.name == name)
                .where(or_(leases.c.holder == self.holder, leases.c.until < now))
                .values(holder=self.holder, until=until)
            )
            if moved.rowcount == 1:
                return True
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(leases).values(name=name, holder=self.holder, until=until)
                )
        except IntegrityError:  # it exists, and another holds it
            return False
        return True
