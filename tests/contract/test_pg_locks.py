"""Upload locks in PostgreSQL, as two instances with no shared filesystem hold them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from satchel.errors import Locked
from satchel.metadata.db import create_engine
from satchel.metadata.locks import PgLocks

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two(pg_url: str) -> AsyncIterator[tuple[PgLocks, PgLocks]]:
    """Two instances' locks: each its own engine, as two processes have."""
    engines = [create_engine(pg_url), create_engine(pg_url)]
    locks = (PgLocks(engines[0]), PgLocks(engines[1]))
    yield locks
    for lock, engine in zip(locks, engines, strict=True):
        await lock.close()
        await engine.dispose()


async def test_one_writer_across_instances_and_within_one(two: tuple[PgLocks, PgLocks]) -> None:
    a, b = two
    release = await a.acquire("u1")
    with pytest.raises(Locked):
        await b.acquire("u1")
    with pytest.raises(Locked):  # the same session could take it again: the process says no
        await a.acquire("u1")
    other = await b.acquire("u2")  # other uploads are free
    await release()
    await (await b.acquire("u1"))()
    await other()
    await (await a.acquire("u2"))()


async def test_a_killed_instance_holds_nothing(pg_url: str, two: tuple[PgLocks, PgLocks]) -> None:
    """SIGKILL mid-PATCH: its connection closes, PostgreSQL releases the lock at once."""
    child = subprocess.Popen(
        [sys.executable, "-c", (
            "import asyncio, sys\n"
            "from satchel.metadata.db import create_engine\n"
            "from satchel.metadata.locks import PgLocks\n"
            "async def main():\n"
            "    await PgLocks(create_engine(sys.argv[1])).acquire('u1')\n"
            "    print('held', flush=True)\n"
            "    await asyncio.sleep(600)\n"
            "asyncio.run(main())\n"
        ), pg_url],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert child.stdout is not None
        assert await asyncio.to_thread(child.stdout.readline) == b"held\n"
        with pytest.raises(Locked):
            await two[0].acquire("u1")
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(30)
        assert child.stdout is not None
        child.stdout.close()
    for _ in range(100):
        try:
            await (await two[0].acquire("u1"))()
            return
        except Locked:
            await asyncio.sleep(0.05)
    pytest.fail("the killed process's lock was never released")


async def test_a_caller_cancelled_while_locking_leaves_nothing_held(
    two: tuple[PgLocks, PgLocks],
) -> None:
    a, b = two
    for _ in range(20):  # cancelled at different points of the query
        task = asyncio.ensure_future(a.acquire("u1"))
        await asyncio.sleep(0.001)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Locked):  # still being given back
            await (await task)()
    for _ in range(100):
        try:
            await (await b.acquire("u1"))()
            return
        except Locked:
            await asyncio.sleep(0.02)
    pytest.fail("a cancelled acquire left the lock held")


async def test_locks_come_back_after_the_connection_is_lost(
    pg_url: str, two: tuple[PgLocks, PgLocks]
) -> None:
    a, b = two
    await (await a.acquire("u1"))()
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:  # an administrator ends a's session
            await conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ))  # fmt: skip
    finally:
        await engine.dispose()
    with pytest.raises(Exception):  # noqa: B017 - the dead connection's own error
        await a.acquire("u1")
    release = await a.acquire("u1")  # a new connection
    with pytest.raises(Locked):
        await b.acquire("u1")
    await release()
