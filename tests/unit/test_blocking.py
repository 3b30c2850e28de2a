"""taken(): what a blocking call took is given back even when its caller is cancelled
while the call runs in its thread (a lock taken then would be held for ever)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from satchel.blocking import taken


async def test_a_caller_cancelled_mid_call_leaves_nothing_held() -> None:
    started, given_back = threading.Event(), asyncio.Event()
    held: list[str] = []

    def acquire() -> str:
        started.set()
        threading.Event().wait(0.3)  # the thread is still working when the caller leaves
        held.append("lock")
        return "lock"

    def release(what: str) -> None:
        held.remove(what)
        given_back.set()

    caller = asyncio.ensure_future(taken(release, acquire))
    await asyncio.to_thread(started.wait, 5)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    await asyncio.wait_for(given_back.wait(), 5)
    assert held == []


async def test_a_caller_that_waits_keeps_what_was_taken() -> None:
    given_back: list[str] = []
    assert await taken(given_back.append, lambda: "lock") == "lock"
    await asyncio.sleep(0.05)
    assert given_back == []


async def test_a_call_that_fails_has_nothing_to_give_back() -> None:
    given_back: list[object] = []

    def refuse() -> str:
        raise BlockingIOError("held by another writer")

    with pytest.raises(BlockingIOError):
        await taken(given_back.append, refuse)
    assert given_back == []
