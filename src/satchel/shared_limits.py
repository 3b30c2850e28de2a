"""Speed limits that instances share, through Redis (``--limits-redis URL``).

A shared limit (a client's, or the total) is one token bucket in Redis, refilled at the
limit's rate by a Lua script that reads Redis's own clock, so every instance draws from
the same bytes. An instance does not ask Redis per chunk: it leases one slice (an eighth of
a second of the rate, at most 256 KiB) when its turn comes, FIFO, as a local limiter
hands them out. Every instance asks for the same, so none gets ahead of the others by
needing less. Per-connection limits stay local. If Redis cannot be reached, the limit holds per
instance (the local bucket) and the failure is logged, once a minute at most.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

from satchel.throttle import MIN_WAIT, Limiter

log = logging.getLogger("satchel.throttle")

IDLE_MS = 60_000  # a bucket nobody took from for this long is dropped by Redis

# KEYS[1]: the bucket. ARGV: rate, capacity, first (a new bucket's tokens), want, idle
# ms. Returns {granted, seconds to wait (a string: Redis turns Lua numbers into
# integers)}: ``want`` if the bucket holds it, else nothing and how long until it does.
_TAKE = """
local rate, capacity, first = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local want, idle = tonumber(ARGV[4]), tonumber(ARGV[5])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
local tokens, stamp = tonumber(state[1]), tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens, stamp = first, now
end
if now > stamp then
  tokens = math.min(capacity, tokens + (now - stamp) * rate)
  stamp = now
end
local granted, wait = 0, 0
if tokens >= want then
  granted = want
  tokens = tokens - want
else
  wait = (want - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'stamp', tostring(stamp))
redis.call('PEXPIRE', KEYS[1], idle)
return {granted, tostring(wait)}
"""


class Unreachable(Exception):
    """Redis did not answer."""


class RedisBuckets:
    """Token buckets in Redis, taken from atomically."""

    def __init__(self, url: str) -> None:
        import redis.asyncio  # imported only with --limits-redis
        from redis.exceptions import RedisError

        self._redis: Any = redis.asyncio.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._take = self._redis.register_script(_TAKE)
        self._failures = (RedisError, OSError)
        self._complained = 0.0

    async def take(
        self, key: str, rate: float, capacity: float, first: float, want: int
    ) -> tuple[int, float]:
        """Bytes granted (all of ``want``, or none), and seconds to wait if none."""
        try:
            granted, wait = await self._take(
                keys=[key], args=[rate, capacity, first, want, IDLE_MS]
            )
        except self._failures as exc:
            raise Unreachable(str(exc)) from exc
        return int(granted), float(wait)

    def complain(self, exc: BaseException) -> None:
        """Log that Redis failed, once a minute at most."""
        now = time.monotonic()
        if now - self._complained >= 60:
            self._complained = now
            log.error("Redis is unreachable; speed limits hold per instance meanwhile: %s", exc)

    async def close(self) -> None:
        await self._redis.aclose()


class LeasedLimiter(Limiter):
    """A shared limiter whose bytes are leased from a bucket in Redis."""

    def __init__(
        self,
        buckets: RedisBuckets,
        key: str,
        rate: float,
        burst: float = 0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(rate, burst, shared=True, clock=clock)
        self._buckets = buckets
        self.key = key
        self._leased = 0  # bytes leased from Redis, not yet handed out (given back)
        self._first = float(self.bucket.tokens)

    async def acquire(self, want: int) -> int:
        need = min(want, self.slice)
        async with self._turn:
            while self._leased < need:
                try:
                    granted, wait = await self._buckets.take(
                        self.key, self.bucket.rate, self.bucket.capacity, self._first,
                        need - self._leased,
                    )  # fmt: skip
                except Unreachable as exc:
                    self._buckets.complain(exc)
                    return await self._local(need)
                self._leased += granted
                if self._leased < need:
                    # Waiters of other instances wake for the same bytes: a random share
                    # more makes the first to ask again a draw, not always the same one.
                    await self._sleep(max(wait, MIN_WAIT) * random.uniform(1.0, 1.5))
            self._leased -= need
            return need

    async def _local(self, need: int) -> int:
        """Without Redis: this instance's own bucket (the turn is held)."""
        while (wait := self.bucket.delay(self.clock(), need)) > 0:
            await self._sleep(max(wait, MIN_WAIT))
        return self.bucket.take(self.clock(), need)

    def give_back(self, count: int) -> None:
        """Unused bytes stay leased here, for the next turn."""
        self._leased += count
