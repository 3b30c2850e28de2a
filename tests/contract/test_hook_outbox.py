"""The webhook outbox, against SQLite and the real PostgreSQL: events written in a
transaction are there only if it commits; due deliveries claimed once, a claim
lapsing, a failed try due again later, a sent one gone."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.metadata.events import EventOutbox
from satchel.metadata.hooks import SqlHookOutbox

LEASE = timedelta(seconds=60)


async def write(engine: AsyncEngine, items: list[dict[str, object]]) -> datetime:
    """``file.stored`` events for ``items``, for one endpoint; a time when they are due."""
    events = EventOutbox(["http://h/"])
    async with engine.begin() as conn:
        await events.write(conn, "file.stored", items)
    return datetime.now(UTC) + timedelta(seconds=1)


async def test_events_of_a_rolled_back_transaction_are_not_kept(engine: AsyncEngine) -> None:
    events = EventOutbox(["http://a/", "http://b/"])
    with pytest.raises(RuntimeError):
        async with engine.begin() as conn:
            await events.write(conn, "file.stored", [{"id": "lost"}])
            raise RuntimeError("the change failed")
    async with engine.begin() as conn:
        await events.write(conn, "file.stored", [{"id": "kept"}])
        await EventOutbox().write(conn, "file.stored", [{"id": "nowhere"}])  # no endpoint
    now = datetime.now(UTC) + timedelta(seconds=1)
    kept = await SqlHookOutbox(engine).claim(now, now + LEASE, 10)
    assert sorted(d.url for d in kept) == ["http://a/", "http://b/"]  # one an endpoint
    assert {json.loads(d.body)["data"]["id"] for d in kept} == {"kept"}


async def test_racing_claimers_share_the_due_deliveries_without_overlap(
    engine: AsyncEngine,
) -> None:
    now = await write(engine, [{"n": n} for n in range(30)])
    outbox = SqlHookOutbox(engine)
    claims = await asyncio.gather(*(outbox.claim(now, now + LEASE, 10) for _ in range(5)))
    claimed = [json.loads(d.body)["data"]["n"] for claim in claims for d in claim]
    assert sorted(claimed) == list(range(30))  # each once
    assert await outbox.claim(now, now + LEASE, 10) == []  # all claimed
    lapsed = await outbox.claim(now + LEASE + timedelta(seconds=1), now + 2 * LEASE, 100)
    assert len(lapsed) == 30  # a claimer that died: the lease runs out


async def test_a_failed_try_is_due_again_later_and_a_sent_one_is_gone(
    engine: AsyncEngine,
) -> None:
    now = await write(engine, [{"n": "a"}, {"n": "b"}])
    outbox = SqlHookOutbox(engine)
    first = {json.loads(d.body)["data"]["n"]: d for d in await outbox.claim(now, now + LEASE, 10)}
    assert first["a"].tries == 0 and json.loads(first["a"].body)["type"] == "file.stored"
    await outbox.delivered(first["b"].id)
    await outbox.retry(first["a"].id, 1, now + timedelta(seconds=20), "HTTP 500")
    assert await outbox.claim(now + timedelta(seconds=10), now + LEASE, 10) == []
    [again] = await outbox.claim(now + timedelta(seconds=21), now + LEASE, 10)
    assert again.id == first["a"].id and again.tries == 1


async def test_the_sender_stops_when_told_to_as_an_event_is_written(engine: AsyncEngine) -> None:
    """A shutdown that comes as an event wakes the sender must still end it: on Python
    3.11, ``asyncio.wait_for`` let the wake-up win and the loop ran on (a test's
    teardown, or a server's, then waited for ever)."""
    from satchel.hooks.service import Hooks

    written = asyncio.Event()
    sender = asyncio.create_task(Hooks(SqlHookOutbox(engine), b"k" * 32, written).run())
    await asyncio.sleep(0.2)  # in its wait between rounds: nothing is due
    written.set()
    sender.cancel()
    await asyncio.wait([sender], timeout=5)  # which cancels nothing more
    ended = sender.done()
    sender.cancel()  # a second time, if the first was lost
    with pytest.raises(asyncio.CancelledError):
        await sender
    assert ended, "the sender ran on after it was cancelled"
