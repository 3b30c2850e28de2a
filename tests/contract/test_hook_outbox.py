"""The webhook outbox, against SQLite and the real PostgreSQL: due deliveries claimed
once, a claim lapsing, a failed try due again later, a sent one gone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.metadata.hooks import SqlHookOutbox

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)


async def test_racing_claimers_share_the_due_deliveries_without_overlap(
    engine: AsyncEngine,
) -> None:
    outbox = SqlHookOutbox(engine)
    await outbox.add([(f"msg_{n}", "http://h/", "{}") for n in range(30)], NOW)
    claims = await asyncio.gather(*(outbox.claim(NOW, NOW + LEASE, 10) for _ in range(5)))
    ids = [d.id for claim in claims for d in claim]
    assert sorted(ids) == sorted(f"msg_{n}" for n in range(30))  # each once
    assert await outbox.claim(NOW, NOW + LEASE, 10) == []  # all claimed
    lapsed = await outbox.claim(NOW + LEASE + timedelta(seconds=1), NOW + 2 * LEASE, 100)
    assert len(lapsed) == 30  # a claimer that died: the lease runs out


async def test_a_failed_try_is_due_again_later_and_a_sent_one_is_gone(
    engine: AsyncEngine,
) -> None:
    outbox = SqlHookOutbox(engine)
    await outbox.add([("msg_a", "http://h/", '{"a":1}'), ("msg_b", "http://h/", "{}")], NOW)
    first = {d.id: d for d in await outbox.claim(NOW, NOW + LEASE, 10)}
    assert first["msg_a"].body == '{"a":1}' and first["msg_a"].tries == 0
    await outbox.delivered("msg_b")
    await outbox.retry("msg_a", 1, NOW + timedelta(seconds=20), "HTTP 500")
    assert await outbox.claim(NOW + timedelta(seconds=10), NOW + LEASE, 10) == []
    [again] = await outbox.claim(NOW + timedelta(seconds=21), NOW + LEASE, 10)
    assert again.id == "msg_a" and again.tries == 1
