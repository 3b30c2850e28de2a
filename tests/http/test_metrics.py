"""GET /metrics: scraped as Prometheus does, counters moving as requests are made."""

from __future__ import annotations

import os
import time
import urllib.request
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import serving
from tests.helpers import make_folder, random_files

from .conftest import ClientFactory

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]

TUS = {"Tus-Resumable": "1.0.0"}


def parse(text: str) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: TestClient[Any, Any]) -> Samples:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=")
    return parse(await resp.text())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_counters_move_as_requests_are_made(
    make_app_client: ClientFactory, photos: Path
) -> None:
    client = await make_app_client()
    make_folder(photos, "trip", random_files(["a.jpg", "b.jpg", "c/d.jpg"]))
    before = await scrape(client)

    data = os.urandom(200_000)
    stored = await (await client.post("/files/", data=data)).json()
    got = await client.get(f"/files/{stored['id']}/")
    assert await got.read() == data
    for _ in range(3):
        assert (await client.get("/check/nothing-here")).status == 404
    first = await client.get("/archive/trip/")
    size = len(await first.read())
    assert (await client.get("/archive/trip/")).status == 200  # CRCs from the cache now
    tus = await client.post("/tus/", headers={**TUS, "Upload-Length": "5"})
    patch = await client.patch(
        "/tus/" + tus.headers["Location"].rsplit("/", 1)[1],
        data=b"hello",
        headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"},
    )
    assert patch.status == 204
    after = await scrape(client)

    requests = "satchel_http_requests_total"
    assert moved(before, after, requests, route="/check/{id}", method="GET", status="4xx") == 3
    assert moved(before, after, requests, route="/files/", method="POST", status="2xx") == 1
    assert (
        moved(before, after, requests, route="/archive/{folder}/", method="GET", status="2xx") == 2
    )
    assert moved(before, after, requests, route="/tus/{id}", method="PATCH", status="2xx") == 1
    duration = "satchel_http_request_duration_seconds_count"
    assert moved(before, after, duration, route="/check/{id}") == 3
    assert moved(before, after, "satchel_sent_bytes_total", kind="file") == len(data)
    assert moved(before, after, "satchel_sent_bytes_total", kind="archive") == 2 * size
    assert moved(before, after, "satchel_received_bytes_total", kind="upload") == len(data)
    assert moved(before, after, "satchel_received_bytes_total", kind="tus") == 5
    assert moved(before, after, "satchel_crc_cache_misses_total") == 3
    assert moved(before, after, "satchel_crc_cache_hits_total") == 3
    assert moved(before, after, "satchel_files_stored_total") == 2  # the upload, the tus file
    for kind in ("archive", "file", "upload", "tus"):
        assert value(after, "satchel_transfers_in_progress", kind=kind) == 0

    delete = await client.delete(
        f"/files/{stored['id']}/", headers={"X-Delete-Token": stored["delete_token"]}
    )
    assert delete.status == 204, await delete.text()
    assert moved(after, await scrape(client), "satchel_files_deleted_total") == 1


async def test_archive_plans_are_counted_by_how_they_were_had(
    make_app_client: ClientFactory, photos: Path
) -> None:
    """What tells an operator whether folders are watched: with the watch, an unchanged
    folder's archives are planned without a scan; without it, every one scans."""
    folder = make_folder(photos, "trip", random_files(["a.jpg", "c/d.jpg"]))
    plans = "satchel_archive_plans_total"
    for watch, unscanned, reused in ((True, 1, 1), (False, 0, 2)):
        client = await make_app_client(watch_folders=watch)
        before = await scrape(client)
        for _ in range(2):
            assert (await client.head("/archive/trip/")).status == 200
        st = os.stat(folder / "a.jpg")  # its times set again as they were: no new version
        os.utime(folder / "a.jpg", ns=(st.st_atime_ns, st.st_mtime_ns))
        assert (await client.head("/archive/trip/")).status == 200
        (folder / "c" / "new.jpg").write_bytes(b"new")
        assert (await client.head("/archive/trip/")).status == 200
        after = await scrape(client)
        assert moved(before, after, plans, how="planned") == 2  # the first, and after new.jpg
        assert moved(before, after, plans, how="unscanned") == unscanned
        assert moved(before, after, plans, how="reused") == reused
        (folder / "c" / "new.jpg").unlink()


async def test_free_space_and_refusals(make_app_client: ClientFactory) -> None:
    client = await make_app_client(disk_reserve="1000000T")
    before = await scrape(client)
    assert (await client.post("/files/", data=b"x" * 1000)).status == 507
    after = await scrape(client)
    refused = "satchel_refused_total"
    assert moved(before, after, refused, status="507", reason="insufficient_storage") == 1
    assert (
        0 < value(after, "satchel_storage_free_bytes") < value(after, "satchel_disk_reserve_bytes")
    )
    assert value(after, "satchel_draining") == 0
    assert value(after, "satchel_build_info", version="0.1.0") == 1


async def test_waits_on_speed_limits_are_counted(make_app_client: ClientFactory) -> None:
    client = await make_app_client(download_rate="64K", burst="16K")
    stored = await (await client.post("/files/", data=os.urandom(48 * 1024))).json()
    before = await scrape(client)
    await (await client.get(f"/files/{stored['id']}/")).read()
    waited = moved(
        before, await scrape(client), "satchel_limit_wait_seconds_total", direction="download"
    )
    assert 0.3 < waited < 2  # 32 KiB past the burst at 64 KiB/s


async def test_labels_never_hold_what_a_client_sent(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    await client.request("PROPFIND", "/some/path/of/a/client")
    await client.get("/files/abcdefghijklmnopqrstuv/")
    text = await (await client.get("/metrics")).text()
    after = parse(text)
    assert value(
        after, "satchel_http_requests_total", route="unrouted", method="other", status="4xx"
    )
    assert value(
        after, "satchel_http_requests_total", route="/files/{id}/", method="GET", status="4xx"
    )
    assert "PROPFIND" not in text and "/some/path" not in text and "abcdefghij" not in text


async def test_no_metrics_turns_it_off(make_app_client: ClientFactory) -> None:
    client = await make_app_client(metrics=False)
    assert (await client.get("/metrics")).status == 404


def test_every_worker_is_counted(photos: Path, data_dir: Path, tmp_path: Path) -> None:
    """--workers 2: requests land on both processes (SO_REUSEPORT), and a scrape counts
    all of them, whichever process answers it."""
    with serving(photos, data_dir, tmp_path, "--workers", "2", "--no-access-log") as server:

        def get(path: str) -> bytes:
            with urllib.request.urlopen(server.url + path, timeout=5) as resp:
                return bytes(resp.read())

        def checks() -> float:
            labels = {"route": "/readyz", "method": "GET", "status": "2xx"}
            return value(parse(get("/metrics").decode()), "satchel_http_requests_total", **labels)

        start = checks()
        for _ in range(40):  # a new connection each: the kernel spreads them
            get("/readyz")
        time.sleep(1.5)  # each worker hands its counts over once a second
        # whichever worker answers a scrape (a new connection each), it says 40
        assert {checks() - start for _ in range(8)} == {40.0}
