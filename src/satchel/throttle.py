"""Speed limits: a pure token bucket, and the waiting built on it.

:class:`TokenBucket` is arithmetic on clock readings it is given: no IO, no
sleeping. :class:`Limiter` adds waiting: its lock hands out slices of the bucket
in FIFO turns, so the transfers that share a bucket (one client's connections,
or the whole process) share it evenly. :class:`Shaper` chains the limiters that
apply to one transfer, narrowest first. :class:`Throttle` owns the shared
buckets of a process and admits requests (connections per client, archive
streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

from satchel.errors import ServiceUnavailable, TooManyRequests

log = logging.getLogger("satchel.throttle")

MIN_SLICE = 1024
MAX_SLICE = 256 * 1024
# Seconds of its rate a bucket banks beyond one slice: a transfer that waits its
# turn at a shared bucket (or wakes up late) loses none of its own rate meanwhile.
SLACK = 0.25
MIN_WAIT = 0.001  # a wait for a fraction of a byte is still a wait (and timers are that coarse)


def slice_for(rate: float) -> int:
    """Bytes handed out per turn: an eighth of a second, within [1 KiB, 256 KiB].

    Smaller slices are smoother and fairer; larger ones cost fewer wake-ups
    (1,000 connections at 100 KB/s wake about 8,000 times a second).
    """
    return int(min(MAX_SLICE, max(MIN_SLICE, rate / 8)))


@dataclass
class TokenBucket:
    """``rate`` bytes a second, at most ``capacity`` banked; starts with one slice.

    Over any window of ``w`` seconds it lets through at most ``rate * w + capacity``
    bytes (what was taken minus what was given back).
    """

    rate: float
    capacity: float
    tokens: float
    stamp: float

    @classmethod
    def start(cls, rate: float, burst: float, now: float) -> TokenBucket:
        if rate <= 0:
            raise ValueError("rate must be positive")
        first = slice_for(rate)
        return cls(rate, max(float(burst), first + rate * SLACK), first, now)

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float, want: int) -> int:
        """Take up to ``want`` whole bytes' worth, as many as there are now."""
        self._refill(now)
        granted = max(0, min(want, math.floor(self.tokens)))
        self.tokens -= granted
        return granted

    def delay(self, now: float, want: int) -> float:
        """Seconds until ``want`` bytes (at most the capacity) can be taken at once."""
        self._refill(now)
        missing = min(float(want), math.floor(self.capacity)) - self.tokens
        return max(0.0, missing / self.rate)

    def give_back(self, count: int) -> None:
        """Return unused bytes of an earlier take."""
        self.tokens = min(self.capacity, self.tokens + count)


class Limiter:
    """A bucket that waits: ``acquire`` returns bytes once the bucket has a slice.

    A ``shared`` limiter (a client's, the process's) hands out at most one slice
    a turn, so its users take equal turns. A transfer's own limiter hands out
    all it has banked: a transfer that waited for a shared turn catches up.
    """

    def __init__(
        self,
        rate: float,
        burst: float = 0,
        *,
        shared: bool = False,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self._sleep = sleep
        self.bucket = TokenBucket.start(rate, burst, clock())
        self.slice = slice_for(rate)
        self.shared = shared
        self._turn = asyncio.Lock()  # FIFO: waiters are served in arrival order

    async def acquire(self, want: int) -> int:
        """Wait for this transfer's turn and for a slice (or ``want``, if less)."""
        need = min(want, self.slice)
        async with self._turn:
            while (wait := self.bucket.delay(self.clock(), need)) > 0:
                await self._sleep(max(wait, MIN_WAIT))
            return self.bucket.take(self.clock(), need if self.shared else want)

    def give_back(self, count: int) -> None:
        self.bucket.give_back(count)


class Shaper:
    """The limiters one transfer obeys, narrowest first; counts what it passed."""

    def __init__(self, limiters: Sequence[Limiter]) -> None:
        if not limiters:
            raise ValueError("a shaper needs at least one limiter")
        self.limiters = tuple(limiters)
        self.passed = 0
        self.waited = 0.0

    @property
    def rate(self) -> float:
        return min(limiter.bucket.rate for limiter in self.limiters)

    async def acquire(self, want: int) -> int:
        """Bytes this transfer may send now (at least 1, at most ``want``); waits."""
        clock = self.limiters[0].clock
        started = clock()
        granted = want
        taken: list[Limiter] = []
        try:
            for limiter in self.limiters:
                got = await limiter.acquire(granted)
                for earlier in taken:
                    earlier.give_back(granted - got)
                taken.append(limiter)
                granted = got
        except BaseException:
            for limiter in taken:
                limiter.give_back(granted)
            raise
        self.waited += clock() - started
        self.passed += granted
        return granted

    def give_back(self, count: int) -> None:
        """Return bytes acquired but not sent."""
        if count:
            self.passed -= count
            for limiter in self.limiters:
                limiter.give_back(count)

    async def consume(self, count: int) -> None:
        """Pay for ``count`` bytes already received; waits until paid."""
        while count > 0:
            count -= await self.acquire(count)


@dataclass(frozen=True)
class Rates:
    """Bytes a second; None: no limit."""

    download: int | None = None
    upload: int | None = None
    client_download: int | None = None
    client_upload: int | None = None
    total_download: int | None = None
    total_upload: int | None = None
    burst: int = 0
    max_connections_per_client: int | None = None
    max_archive_streams: int | None = None

    @property
    def per_client(self) -> bool:
        """Whether any limit needs to know who the client is."""
        return (
            self.client_download is not None
            or self.client_upload is not None
            or self.max_connections_per_client is not None
        )


@dataclass
class _Client:
    requests: int = 0
    limiters: dict[str, Limiter] = field(default_factory=dict)  # by direction


@dataclass
class Stats:
    rejected_client: int = 0
    rejected_streams: int = 0
    shaped: dict[str, int] = field(default_factory=lambda: {"download": 0, "upload": 0})


RETRY_CLIENT = 1  # seconds; a connection of the same client is likely to end soon
RETRY_STREAMS = 5


Shared = Callable[[float, str], Limiter]  # a shared limiter of ``rate`` under a name


class Throttle:
    """The shared buckets and admission counts of one process. ``shared`` makes the
    limiters that many transfers share (a client's, the total), by rate and name: by
    default buckets of this process; through Redis, of every instance."""

    def __init__(
        self,
        rates: Rates,
        *,
        clock: Callable[[], float] = time.monotonic,
        shared: Shared | None = None,
    ) -> None:
        self.rates = rates
        self.clock = clock
        self.stats = Stats()
        self._clients: dict[str, _Client] = {}
        self._archive_streams = 0
        self._shared = shared or (
            lambda rate, _name: Limiter(rate, rates.burst, shared=True, clock=clock)
        )
        self._total = {
            direction: None if rate is None else self._shared(rate, f"{direction}:total")
            for direction, rate in (
                ("download", rates.total_download),
                ("upload", rates.total_upload),
            )
        }

    def _limiter(self, rate: int | None) -> Limiter | None:
        """A transfer's own limiter."""
        if rate is None:
            return None
        return Limiter(rate, self.rates.burst, shared=False, clock=self.clock)

    @contextlib.contextmanager
    def request(self, client: str) -> Iterator[None]:
        """Count one request of ``client`` while it runs; 429 over the per-client limit."""
        state = self._clients.setdefault(client, _Client())
        limit = self.rates.max_connections_per_client
        if limit is not None and state.requests >= limit:  # so state.requests > 0: kept
            self.stats.rejected_client += 1
            log.debug(
                "429 for %s: %d requests running (limit %d); %d rejected so far",
                client,
                state.requests,
                limit,
                self.stats.rejected_client,
            )
            raise TooManyRequests(
                f"This client already has {limit} requests running; "
                "wait for one to finish, then retry.",
                retry_after=RETRY_CLIENT,
            )
        state.requests += 1
        try:
            yield
        finally:
            state.requests -= 1
            if not state.requests:
                del self._clients[client]

    @contextlib.contextmanager
    def archive_stream(self) -> Iterator[None]:
        """Hold one of the process's archive streams; 503 when all are taken."""
        limit = self.rates.max_archive_streams
        if limit is not None and self._archive_streams >= limit:
            self.stats.rejected_streams += 1
            log.debug(
                "503: %d archive streams running (limit %d); %d rejected so far",
                self._archive_streams,
                limit,
                self.stats.rejected_streams,
            )
            raise ServiceUnavailable(
                f"All {limit} archive streams of this server are busy; retry shortly.",
                retry_after=RETRY_STREAMS,
            )
        self._archive_streams += 1
        try:
            yield
        finally:
            self._archive_streams -= 1

    def shaper(self, direction: str, client: str, own_rate: int | None = None) -> Shaper | None:
        """The limiters for one transfer ("download" or "upload") of ``client``.

        ``own_rate`` lowers this transfer's limit further (a client's ?kbps=).
        None when no limit applies: the transfer runs at full speed.
        """
        rates = self.rates
        per_connection = rates.download if direction == "download" else rates.upload
        per_client = rates.client_download if direction == "download" else rates.client_upload
        limiters = [
            limiter
            for rate in (per_connection, own_rate)
            if (limiter := self._limiter(rate)) is not None
        ]
        if per_client is not None:
            # a client not counted by request() (no HTTP request) gets a limiter of its own
            state = self._clients.get(client) or _Client()
            if direction not in state.limiters:
                name = f"{direction}:client:{client}"
                state.limiters[direction] = self._shared(per_client, name)
            limiters.append(state.limiters[direction])
        total = self._total[direction]
        if total is not None:
            limiters.append(total)
        return Shaper(limiters) if limiters else None

    def finished(self, direction: str, client: str, shaper: Shaper | None) -> None:
        """Log a shaped transfer at debug level and add it to the counts."""
        if shaper is None:
            return
        self.stats.shaped[direction] += shaper.passed
        log.debug(
            "Shaped %s of %s: %d bytes at ≤ %d B/s, %.2f s waiting; %d bytes shaped in all",
            direction,
            client,
            shaper.passed,
            shaper.rate,
            shaper.waited,
            self.stats.shaped[direction],
        )
