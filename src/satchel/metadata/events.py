"""Webhook events written in the transaction of the change they tell of (the outbox
pattern): a file's row and its ``file.stored`` event are committed together or not at
all, so an event is never lost to a crash between the two, nor told of a change that
was rolled back. One row an endpoint; ``Hooks`` sends them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from satchel.hooks.rules import event_body, new_message_id
from satchel.metadata.tables import hook_outbox


class EventOutbox:
    """The endpoints events are written for (none: nothing is written), and what wakes
    this process's sender once a transaction with events has committed."""

    def __init__(self, urls: Sequence[str] = ()) -> None:
        self.urls = tuple(urls)
        self.written = asyncio.Event()

    async def write(
        self, conn: AsyncConnection, event_type: str, items: Sequence[dict[str, object]]
    ) -> None:
        """One ``event_type`` event for each of ``items`` (its data), inside ``conn``'s
        transaction; call ``committed`` after it."""
        if not self.urls or not items:
            return
        now = datetime.now(UTC)
        rows = [
            {
                "id": new_message_id(),
                "url": url,
                "body": event_body(event_type, data, now),
                "next_at": now,
                "created_at": now,
            }
            for data in items
            for url in self.urls
        ]
        await conn.execute(insert(hook_outbox), rows)

    def committed(self) -> None:
        if self.urls:
            self.written.set()


NO_EVENTS = EventOutbox()
