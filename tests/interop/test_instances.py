"""Several instances on one PostgreSQL and one S3 bucket, with no shared filesystem, behind
nginx round-robin: whatever lands through one is there through the others."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import (
    LiveServer,
    deployed_nginx,
    pg_database,
    start_server,
    stop_server,
)
from tests.helpers import call

pytestmark = [pytest.mark.interop, pytest.mark.postgres, pytest.mark.slow]

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


class Cluster:
    def __init__(self, instances: list[LiveServer], balancer: str) -> None:
        self.instances = instances
        self.balancer = balancer


@pytest.fixture
def cluster(tmp_path: Path, s3_url: str) -> Iterator[Cluster]:
    with running(tmp_path, s3_url) as instances:
        yield instances


@contextlib.contextmanager
def running(tmp_path: Path, s3_url: str, *extra: str) -> Iterator[Cluster]:
    """Two instances with ``extra`` settings, and nginx in front of them, as
    deploy/nginx.conf sets it up."""
    photos = tmp_path / "photos"
    photos.mkdir()
    with pg_database() as db:
        instances = []
        try:
            for name in ("a", "b"):
                home = tmp_path / name  # each its own data folder: nothing shared on disk
                home.mkdir()
                instances.append(start_server(
                    photos, home / "data", home, None, "--db", db, "--storage", s3_url,
                    "--s3-part-size", "5M", *extra,
                ))  # fmt: skip
            upstreams = [s.url.removeprefix("http://") for s in instances]
            with deployed_nginx(tmp_path, upstreams) as balancer:
                yield Cluster(instances, balancer)
        finally:
            for server in instances:
                if server.process.poll() is None:
                    stop_server(server)


def test_a_file_uploaded_through_one_is_checked_downloaded_and_deleted_through_the_other(
    cluster: Cluster,
) -> None:
    import json

    a, b = (s.url for s in cluster.instances)
    data = os.urandom(6 * MiB + 7)
    status, _, body = call("POST", f"{a}/files/", data, {"Max-Downloads": "5"})
    assert status == 201
    stored = json.loads(body)
    status, _, check = call("GET", f"{b}/check/{stored['id']}")
    assert status == 200 and json.loads(check)["size"] == len(data)
    status, headers, got = call("GET", f"{b}/files/{stored['id']}/")
    assert status == 200 and got == data
    _, _, part = call("GET", f"{a}/files/{stored['id']}/", headers={"Range": "bytes=5-9"})
    assert part == data[5:10]
    time.sleep(1.1)  # the /check cache of an instance lives for a second
    status, _, check = call("GET", f"{a}/check/{stored['id']}")
    assert json.loads(check)["downloads_left"] == 4  # counted, whoever served it
    token = stored["links"]["delete"].rsplit("token=", 1)[1]
    status, _, _ = call("DELETE", f"{b}/files/{stored['id']}/", headers={"X-Delete-Token": token})
    assert status == 204
    time.sleep(1.1)  # the /check cache of the other instance lives for a second
    for server in (a, b, cluster.balancer):
        assert call("GET", f"{server}/files/{stored['id']}/")[0] == 404
        assert call("GET", f"{server}/check/{stored['id']}")[0] == 404


def test_a_tus_upload_patched_alternately_through_two_instances(cluster: Cluster) -> None:
    a, b = (s.url for s in cluster.instances)
    data = os.urandom(12 * MiB + 3)
    status, headers, _ = call("POST", f"{a}/tus/", headers={**TUS, "Upload-Length": str(len(data))})
    assert status == 201
    path = "/tus/" + headers["Location"].rsplit("/", 1)[1]
    cuts = [0, 1, 3 * MiB, 5 * MiB + 1, 9 * MiB, len(data)]
    for n, (start, end) in enumerate(zip(cuts, cuts[1:], strict=False)):
        server = (a, b)[n % 2]
        status, headers, _ = call(
            "PATCH", server + path, data[start:end],
            {**TUS, "Content-Type": "application/offset+octet-stream",
             "Upload-Offset": str(start)},
        )  # fmt: skip
        assert status == 204, (server, start)
    file_id = headers["Satchel-File-Id"]
    status, _, got = call("GET", f"{cluster.balancer}/files/{file_id}/")
    assert status == 200 and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()


def test_an_instance_killed_mid_patch_loses_nothing_acknowledged(cluster: Cluster) -> None:
    a, b = cluster.instances
    data = os.urandom(14 * MiB)
    status, headers, _ = call(
        "POST", f"{a.url}/tus/", headers={**TUS, "Upload-Length": str(len(data))}
    )
    path = "/tus/" + headers["Location"].rsplit("/", 1)[1]
    patch = {**TUS, "Content-Type": "application/offset+octet-stream"}
    first = 6 * MiB + 5
    assert call("PATCH", a.url + path, data[:first], {**patch, "Upload-Offset": "0"})[0] == 204
    # the next PATCH reaches a, which dies with SIGKILL while bytes are still coming
    conn = http.client.HTTPConnection(a.url.removeprefix("http://"), timeout=30)
    conn.putrequest("PATCH", path)
    for name, value in {**patch, "Upload-Offset": str(first),
                        "Content-Length": str(len(data) - first)}.items():  # fmt: skip
        conn.putheader(name, value)
    conn.endheaders()
    conn.send(data[first : first + 6 * MiB])  # past a part boundary
    time.sleep(0.5)
    os.kill(a.process.pid, signal.SIGKILL)
    a.process.wait(10)
    conn.close()
    status, headers, _ = call("HEAD", b.url + path, headers=TUS)
    assert status == 200
    offset = int(headers["Upload-Offset"])
    assert offset == first  # what a acknowledged; nothing it had not is kept
    # the lock died with a's connection to PostgreSQL: b takes the upload at once
    status, headers, _ = call(
        "PATCH", b.url + path, data[offset:], {**patch, "Upload-Offset": str(offset)}
    )
    assert status == 204
    status, _, got = call("GET", f"{b.url}/files/{headers['Satchel-File-Id']}/")
    assert got == data


def test_max_downloads_stays_exact_across_instances(cluster: Cluster) -> None:
    import json

    a, b = (s.url for s in cluster.instances)
    data = os.urandom(2 * MiB)
    _, _, body = call("POST", f"{a}/files/", data, {"Max-Downloads": "3"})
    file_id = json.loads(body)["id"]

    def fetch(server: str) -> Any:
        status, _, got = call("GET", f"{server}/files/{file_id}/")
        return status, got == data

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(fetch, [a, b, cluster.balancer] * 4))
    whole = sum(1 for status, same in answers if status == 200 and same)
    assert whole <= 3
    assert {status for status, _ in answers} <= {200, 404, 409}
    while whole < 3 and (answer := fetch(b))[0] != 404:  # those refused while others ran
        whole += answer == (200, True)
    assert whole == 3
    assert fetch(a)[0] == fetch(b)[0] == 404


def test_a_total_limit_holds_across_instances_through_redis(
    tmp_path: Path, s3_url: str, redis_url: str
) -> None:
    """Four downloads, two through each instance, under one total limit: together they
    get that rate, not twice it (each instance alone would allow all of it)."""
    import json

    rate = 4 * MiB
    extra = ("--total-download-rate", str(rate), "--limits-redis", redis_url)
    with running(tmp_path, s3_url, *extra) as cluster:
        a, b = (s.url for s in cluster.instances)
        _, _, body = call("POST", f"{a}/files/", os.urandom(64 * MiB))
        file_id = json.loads(body)["id"]

        def fetch(server: str) -> int:
            """Bytes received in three seconds."""
            got = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "--max-time", "3", "-w", "%{size_download}",
                 f"{server}/files/{file_id}/"],
                capture_output=True, text=True,
            ).stdout  # fmt: skip
            return int(float(got))

        with ThreadPoolExecutor(4) as pool:
            received = sum(pool.map(fetch, [a, b, a, b]))
    measured = received / 3
    assert 0.8 * rate <= measured <= 1.2 * rate + 2 * MiB / 3  # the bench measures ±5%
