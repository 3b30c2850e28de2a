"""Speed limits shared through the real Redis: two instances' limiters draw from one
bucket; without Redis each falls back to its own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from satchel.shared_limits import LeasedLimiter, RedisBuckets
from satchel.throttle import Limiter


@pytest.fixture
async def buckets(redis_url: str) -> AsyncIterator[RedisBuckets]:
    buckets = RedisBuckets(redis_url)
    yield buckets
    await buckets.close()


async def drain(limiter: Limiter, seconds: float) -> int:
    """Bytes a greedy transfer gets through ``limiter`` in ``seconds``."""
    got, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        got += await limiter.acquire(1 << 20)
    return got


async def test_two_instances_share_one_rate(buckets: RedisBuckets) -> None:
    rate, seconds = 4_000_000, 1.5
    key = f"satchel:test:{uuid.uuid4().hex}"
    # two instances' limiters, each with two transfers
    a, b = LeasedLimiter(buckets, key, rate), LeasedLimiter(buckets, key, rate)
    started = time.monotonic()
    got = await asyncio.gather(*(drain(limiter, seconds) for limiter in (a, a, b, b)))
    elapsed = time.monotonic() - started
    allowed = rate * elapsed + a.bucket.capacity  # and the burst
    assert rate * elapsed * 0.9 <= sum(got) <= allowed
    assert min(got[0] + got[1], got[2] + got[3]) >= 0.3 * sum(got)  # both get a share


async def test_without_redis_each_instance_keeps_its_own_limit() -> None:
    unreachable = RedisBuckets("redis://127.0.0.1:1/0")
    try:
        limiter = LeasedLimiter(unreachable, "satchel:test:nowhere", 2_000_000)
        started = time.monotonic()
        got = await drain(limiter, 0.5)
        rate = got / (time.monotonic() - started)
        assert 0.5 * 2_000_000 <= rate <= 2_000_000 + limiter.bucket.capacity / 0.5
    finally:
        await unreachable.close()


async def test_a_take_grants_all_or_says_how_long_to_wait(buckets: RedisBuckets) -> None:
    key = f"satchel:test:{uuid.uuid4().hex}"
    assert await buckets.take(key, 1000, 2000, 1000, want=800) == (800, 0.0)  # of ``first``
    granted, wait = await buckets.take(key, 1000, 2000, 1000, want=700)
    assert granted == 0 and 0 < wait <= 0.5  # 200 left: about 0.5 s until 700
