"""Prometheus metrics: what Satchel counts, and the text a scrape reads.

The counts live in prometheus-client's objects. Under ``--workers N`` each process
writes them to files of its own in one folder (the library's multiprocess mode: the
parent makes the folder and names it in ``PROMETHEUS_MULTIPROC_DIR`` before the
workers start), and a scrape, whichever worker answers it, adds up every process.

No label takes its value from a request: a route is the pattern it was registered
with, a method one of a fixed set, a status its class ("2xx").

Requests are counted in plain numbers first and handed to those objects once a
second (:class:`Tallies`): in multiprocess mode a count costs 0.8 µs and a histogram
observation 1.6 µs, and counting each request there took 18% of /check's CPU
(bench/RESULTS.md). A scrape sees the other workers' last second a second late.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import REGISTRY, Collector

from satchel import __version__

CONTENT_TYPE = CONTENT_TYPE_LATEST

REQUESTS = Counter(
    "satchel_http_requests_total",
    "Requests answered, by route pattern, method and status class; 'cut' for an answer "
    "that had begun when the request ended by an error (a cancellation).",
    ["route", "method", "status"],
)
BUCKETS = (0.001, 0.005, 0.025, 0.1, 0.25, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0, 1800.0)
DURATION = Histogram(
    "satchel_http_request_duration_seconds",
    "Time from the handler's start to its end, by route pattern; for a download, the "
    "whole transfer.",
    ["route"],
    buckets=BUCKETS,
)
SENT = Counter("satchel_sent_bytes_total", "Body bytes sent, by kind.", ["kind"])
RECEIVED = Counter("satchel_received_bytes_total", "Body bytes received, by kind.", ["kind"])
TRANSFERS = Gauge(
    "satchel_transfers_in_progress",
    "Archive streams, file downloads and uploads running now, by kind.",
    ["kind"],
    multiprocess_mode="livesum",
)
CRC_HITS = Counter(
    "satchel_crc_cache_hits_total", "Archive members whose CRC-32 came from the cache."
)
CRC_MISSES = Counter(
    "satchel_crc_cache_misses_total",
    "Archive members whose CRC-32 was computed (read, or taken from S3's checksum).",
)
ARCHIVE_PLANS = Counter(
    "satchel_archive_plans_total",
    "Folder plans had, for a folder's archive or the members a selection names, by how: "
    "'unscanned' (the kept plan, the folder's watch reporting no change), 'reused' (the "
    "kept plan, a scan finding the same files), 'planned' (afresh).",
    ["how"],
)
LIMIT_WAIT = Counter(
    "satchel_limit_wait_seconds_total",
    "Seconds transfers waited for the speed limits, by direction.",
    ["direction"],
)
REFUSED = Counter(
    "satchel_refused_total",
    "Requests turned away for want of capacity (429, 503, 507), by status and error code.",
    ["status", "reason"],
)
FILES_STORED = Counter("satchel_files_stored_total", "Files stored behind links.")
FILES_EXPIRED = Counter(
    "satchel_files_expired_total", "Stored files removed by expiry or download limit."
)
FILES_DELETED = Counter("satchel_files_deleted_total", "Stored files deleted by their link.")

REFUSALS = frozenset({429, 503, 507})
_METHODS = {m: m for m in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")}
_CLASSES = ("cut", "1xx", "2xx", "3xx", "4xx", "5xx")


class RouteTally:
    """One route's requests since the last flush: counts by method and status class,
    and durations by bucket."""

    __slots__ = ("_buckets", "_counts", "_route", "_sum")

    def __init__(self, route: str) -> None:
        self._route = route
        self._counts: dict[tuple[str, int], int] = {}  # aiohttp's parser knows ~35 methods
        self._buckets = [0] * (len(BUCKETS) + 1)  # the last: +Inf
        self._sum = 0.0

    def observe(self, method: str, status: int, seconds: float) -> None:
        """``status``: the answer's, or 0 for an answer cut by an error."""
        key = (method, status // 100)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._buckets[bisect_left(BUCKETS, seconds)] += 1  # le: bucket i holds <= BUCKETS[i]
        self._sum += seconds

    def flush(self) -> None:
        counts, self._counts = self._counts, {}
        for (method, klass), count in counts.items():
            label = _CLASSES[klass] if klass < len(_CLASSES) else "5xx"
            REQUESTS.labels(self._route, _METHODS.get(method, "other"), label).inc(count)
        if not counts:
            return
        # prometheus-client has no observe-many: its histogram's own values, as observe
        # updates them (its bucket i counts what is <= bound i, as here)
        histogram = DURATION.labels(self._route)
        histogram._sum.inc(self._sum)
        for value, count in zip(histogram._buckets, self._buckets, strict=True):
            if count:
                value.inc(count)
        self._buckets = [0] * len(self._buckets)
        self._sum = 0.0


class Tallies:
    """The tallies of one application's routes."""

    def __init__(self) -> None:
        self._tallies: list[RouteTally] = []

    def route(self, route: str) -> RouteTally:
        tally = RouteTally(route)
        self._tallies.append(tally)
        return tally

    def flush(self) -> None:
        """Hand every count to prometheus-client: once a second, and before a scrape."""
        for tally in self._tallies:
            tally.flush()


@dataclass(frozen=True)
class Snapshot:
    """What a scrape reads of this process's state beside the counters."""

    free_bytes: int | None  # of the storage of uploaded files; None on S3 (no limit)
    reserve_bytes: int
    draining: bool


def exposition(snapshot: Snapshot, *, multiprocess: bool) -> bytes:
    """The text a scrape gets: every process's counters, and this one's snapshot.
    Blocking (it reads the processes' files): call it in a thread."""
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        registry.register(_Registered())
    registry.register(_Now(snapshot))
    return generate_latest(registry)


class _Registered(Collector):
    """The one process's own metrics (with its process_* and python_* ones)."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


class _Now(Collector):
    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        now = self._snapshot
        info = GaugeMetricFamily(
            "satchel_build_info", "Satchel's version; always 1.", labels=["version"]
        )
        info.add_metric([__version__], 1)
        yield info
        if now.free_bytes is not None:
            yield GaugeMetricFamily(
                "satchel_storage_free_bytes",
                "Free bytes where uploaded files are stored.",
                value=now.free_bytes,
            )
        yield GaugeMetricFamily(
            "satchel_disk_reserve_bytes",
            "Free space uploads leave (--disk-reserve); below it they get 507.",
            value=now.reserve_bytes,
        )
        yield GaugeMetricFamily(
            "satchel_draining",
            "1 while the answering process drains after SIGTERM.",
            value=int(now.draining),
        )
