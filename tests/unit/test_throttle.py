"""The token bucket (pure, hypothesis), and limiters and shapers on virtual time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel.errors import ServiceUnavailable, TooManyRequests
from satchel.throttle import (
    MAX_SLICE,
    MIN_SLICE,
    SLACK,
    Limiter,
    Rates,
    Shaper,
    Throttle,
    TokenBucket,
)

# -- the bucket --------------------------------------------------------------------------

operations = st.lists(
    st.tuples(
        st.floats(0, 2, allow_nan=False),  # seconds since the previous operation
        st.integers(0, 5_000_000),  # bytes wanted
        st.floats(0, 1),  # share of the grant given back unused
    ),
    max_size=60,
)


@given(
    rate=st.integers(1024, 100 * 1024 * 1024),
    burst=st.integers(0, 10 * 1024 * 1024),
    ops=operations,
)
def test_no_window_lets_through_more_than_rate_times_window_plus_burst(
    rate: int, burst: int, ops: list[tuple[float, int, float]]
) -> None:
    now = 1000.0
    bucket = TokenBucket.start(rate, burst, now)
    events: list[tuple[float, int]] = []  # (time, bytes let through; negative: given back)
    for dt, want, unused in ops:
        now += dt
        granted = bucket.take(now, want)
        assert 0 <= granted <= want
        returned = math.floor(granted * unused)
        bucket.give_back(returned)
        events.append((now, granted - returned))
    for i, j in itertools.combinations_with_replacement(range(len(events)), 2):
        window = events[j][0] - events[i][0]
        through = sum(n for _, n in events[i : j + 1])
        assert through <= rate * window + bucket.capacity + 1e-6 * rate


@given(
    rate=st.integers(1024, 100 * 1024 * 1024),
    burst=st.integers(0, 1024 * 1024),
    drained=st.floats(0, 1),
    want=st.integers(1, 10 * 1024 * 1024),
)
def test_the_promised_delay_is_enough(rate: int, burst: int, drained: float, want: int) -> None:
    bucket = TokenBucket.start(rate, burst, 0.0)
    bucket.take(0.0, math.floor(bucket.capacity * drained))
    wait = bucket.delay(0.0, want)
    # float rounding may leave a fraction of a byte; the limiter asks again then
    assert bucket.take(wait + 1e-9, want) >= min(want, math.floor(bucket.capacity)) - 1


def test_slices_and_capacity_follow_the_rate() -> None:
    slow = TokenBucket.start(1024, 0, 0.0)
    assert (slow.tokens, slow.capacity) == (MIN_SLICE, MIN_SLICE + 1024 * SLACK)
    fast = TokenBucket.start(1024**3, 0, 0.0)
    assert (fast.tokens, fast.capacity) == (MAX_SLICE, MAX_SLICE + 1024**3 * SLACK)
    assert TokenBucket.start(1024, 10**6, 0.0).capacity == 10**6
    with pytest.raises(ValueError, match="positive"):
        TokenBucket.start(0, 0, 0.0)


# -- limiters on virtual time ------------------------------------------------------------


class VirtualTime:
    """A clock that jumps to the next sleeper's wake-up once every task is waiting."""

    def __init__(self) -> None:
        self.now = 0.0
        self._timers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._timers, (self.now + seconds, next(self._seq), future))
        await future

    async def run_until(self, end: float) -> None:
        while True:
            for _ in range(20):  # let every ready task run until it waits again
                await asyncio.sleep(0)
            if not self._timers or self._timers[0][0] > end:
                self.now = end
                return
            when, _, future = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)

    def limiter(self, rate: float, *, shared: bool = False) -> Limiter:
        return Limiter(rate, shared=shared, clock=self.clock, sleep=self.sleep)


async def _run(vt: VirtualTime, shapers: list[Shaper], seconds: float) -> list[int]:
    """Each shaper sends as fast as it may for ``seconds``; bytes each got."""
    got = [0] * len(shapers)

    async def transfer(i: int) -> None:
        while True:
            granted = await shapers[i].acquire(10**9)
            if vt.now <= seconds:
                got[i] += granted

    tasks = [asyncio.create_task(transfer(i)) for i in range(len(shapers))]
    await vt.run_until(seconds)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return got


@pytest.mark.parametrize("rate", [100 * 1024, 1024**2, 50 * 1024**2])
async def test_one_limiter_keeps_its_rate(rate: int) -> None:
    vt = VirtualTime()
    limiter = vt.limiter(rate)
    [got] = await _run(vt, [Shaper([limiter])], 10.0)
    assert rate * 10 <= got <= rate * 10 + limiter.slice


async def test_connections_of_one_client_share_its_limit_evenly() -> None:
    vt = VirtualTime()
    rate = 1024**2
    client = vt.limiter(rate, shared=True)
    got = await _run(vt, [Shaper([client]) for _ in range(10)], 10.0)
    share = rate * 10 / 10
    assert all(abs(g - share) <= client.slice for g in got), got
    assert rate * 10 <= sum(got) <= rate * 10 + client.slice


async def test_a_slower_connection_leaves_its_share_to_the_others() -> None:
    vt = VirtualTime()
    client = vt.limiter(1024**2, shared=True)
    slow = Shaper([vt.limiter(100 * 1024), client])
    fast = Shaper([vt.limiter(10 * 1024**2), client])
    got_slow, got_fast = await _run(vt, [slow, fast], 10.0)
    assert got_slow == pytest.approx(100 * 1024 * 10, rel=0.05)
    assert got_slow + got_fast == pytest.approx(1024**2 * 10, rel=0.03)


async def test_the_total_limit_binds_all_clients() -> None:
    vt = VirtualTime()
    total = vt.limiter(2 * 1024**2, shared=True)
    shapers = [Shaper([vt.limiter(1024**2), total]) for _ in range(4)]
    got = await _run(vt, shapers, 10.0)
    assert sum(got) == pytest.approx(2 * 1024**2 * 10, rel=0.03)
    assert max(got) - min(got) <= 2 * total.slice


async def test_bytes_given_back_are_not_charged() -> None:
    vt = VirtualTime()
    limiter = vt.limiter(1024**2)
    shaper = Shaper([limiter])
    granted = await shaper.acquire(10**9)
    shaper.give_back(granted)
    assert shaper.passed == 0
    assert limiter.bucket.tokens == limiter.slice


async def test_consume_pays_for_bytes_already_received() -> None:
    vt = VirtualTime()
    shaper = Shaper([vt.limiter(1024**2)])
    paying = asyncio.create_task(shaper.consume(5 * 1024**2))
    await vt.run_until(100.0)
    assert paying.done()
    assert shaper.passed == 5 * 1024**2
    assert shaper.waited == pytest.approx((5 * 1024**2 - 128 * 1024) / 1024**2, rel=0.01)


# -- admission ---------------------------------------------------------------------------


def test_requests_over_the_per_client_limit_get_429_and_leave_no_trace() -> None:
    throttle = Throttle(Rates(max_connections_per_client=2))
    with throttle.request("10.0.0.1"), throttle.request("10.0.0.1"):
        with pytest.raises(TooManyRequests) as caught, throttle.request("10.0.0.1"):
            pass
        assert caught.value.retry_after == 1  # the HTTP layer makes it Retry-After
        with throttle.request("10.0.0.2"):  # another client is not affected
            pass
    with throttle.request("10.0.0.1"):
        pass
    assert throttle.stats.rejected_client == 1
    assert not throttle._clients


def test_archive_streams_over_the_limit_get_503() -> None:
    throttle = Throttle(Rates(max_archive_streams=1))
    with throttle.archive_stream():
        with pytest.raises(ServiceUnavailable) as caught, throttle.archive_stream():
            pass
        assert caught.value.retry_after == 5
    with throttle.archive_stream():
        pass


def test_shapers_share_the_client_and_total_limiters() -> None:
    throttle = Throttle(
        Rates(download=4 * 1024**2, client_download=2 * 1024**2, total_download=8 * 1024**2)
    )
    assert throttle.shaper("upload", "a") is None
    with throttle.request("a"), throttle.request("b"):
        a1 = throttle.shaper("download", "a")
        a2 = throttle.shaper("download", "a", own_rate=512 * 1024)
        b = throttle.shaper("download", "b")
        assert a1 is not None and a2 is not None and b is not None
        assert [lim.bucket.rate for lim in a2.limiters] == [
            4 * 1024**2,
            512 * 1024,
            2 * 1024**2,
            8 * 1024**2,
        ]
        assert a1.limiters[0] is not a2.limiters[0]  # per connection
        assert a1.limiters[1] is a2.limiters[2]  # per client
        assert a1.limiters[1] is not b.limiters[1]
        assert a1.limiters[2] is b.limiters[2]  # per process
        assert a2.rate == 512 * 1024
