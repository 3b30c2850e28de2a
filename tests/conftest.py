from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

PG_ADMIN_DSN = os.environ.get("SATCHEL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = bool(os.environ.get("CI"))


def require_tool(name: str) -> str:
    """The tool's path; in CI a missing tool fails the test, on a laptop it skips."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is not installed (CI must install it in .ci/run)")
        pytest.skip(f"{name} is not installed")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    root.mkdir()
    return root


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _create_pg_database() -> str:
    name = f"satchel_test_{uuid.uuid4().hex[:12]}"
    try:
        await _pg_admin(f'CREATE DATABASE "{name}"')
    except (TimeoutError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"PostgreSQL is not reachable at {PG_ADMIN_DSN}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable: {exc}")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def _drop_pg_database(url: str) -> None:
    await _pg_admin(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')


@pytest.fixture
async def pg_url() -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database for one test."""
    url = await _create_pg_database()
    yield url
    await _drop_pg_database(url)


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    """The same, for code outside an event loop (a module's live server)."""
    url = asyncio.run(_create_pg_database())
    try:
        yield url
    finally:
        asyncio.run(_drop_pg_database(url))


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    if request.param == "sqlite":
        data_dir.mkdir(parents=True, exist_ok=True)
        return f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}"
    url: str = request.getfixturevalue("pg_url")
    return url


READY = {"User-Agent": "satchel-tests-ready"}  # the readiness probe, known in logs


class LiveServer:
    def __init__(self, url: str, process: subprocess.Popen[bytes], log: Path) -> None:
        self.url = url
        self.process = process
        self.log = log


def start_server(
    photos: Path, data: Path, tmp_path: Path, port: int | None = None, *extra: str
) -> LiveServer:
    """`satchel serve` as a real process on a loopback port; returns once it accepts."""
    port = port or free_port()
    log = tmp_path / "server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "satchel", "serve", "--port", str(port),
             "--photos", str(photos), "--data", str(data), *extra],
            stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path,
        )  # fmt: skip
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        # Ready when it answers: the port accepts connections (into its backlog) as
        # soon as it is bound, before the database is migrated and opened.
        try:
            ready = urllib.request.Request(f"http://127.0.0.1:{port}/healthz", headers=READY)
            with urllib.request.urlopen(ready, timeout=1) as ok:
                if ok.status == 200:
                    return LiveServer(f"http://127.0.0.1:{port}", process, log)
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {log.read_text()}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stop_server(server: LiveServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@contextlib.contextmanager
def serving(photos: Path, data: Path, tmp_path: Path, *extra: str) -> Iterator[LiveServer]:
    """A live server for a block, which must not have logged an unhandled error."""
    server = start_server(photos, data, tmp_path, None, *extra)
    try:
        yield server
    finally:
        stop_server(server)
    assert "Error handling request" not in server.log.read_text()


@pytest.fixture
def live_server(photos: Path, data_dir: Path, tmp_path: Path) -> Iterator[LiveServer]:
    server = start_server(photos, data_dir, tmp_path)
    yield server
    stop_server(server)


DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


@contextlib.contextmanager
def deployed_nginx(tmp_path: Path, upstreams: list[str]) -> Iterator[str]:
    """nginx running deploy/nginx.conf in front of ``upstreams`` (host:port); its URL.
    Only what a local run must change is changed: the two upstream servers, the listen
    address, and where nginx keeps its pid and temporary files."""
    nginx = "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else require_tool("nginx")
    port = free_port()
    conf = (DEPLOY / "nginx.conf").read_text()
    local = {
        "        server satchel-a:8080;\n": f"        server {upstreams[0]};\n",
        "        server satchel-b:8080;\n": f"        server {upstreams[1]};\n",
        "        listen 80;\n": f"        listen 127.0.0.1:{port};\n",
        "http {\n": (
            f"http {{\n    client_body_temp_path {tmp_path}/body;\n"
            f"    proxy_temp_path {tmp_path}/proxy;\n"
        ),
        "access_log /dev/stdout satchel;": f"access_log {tmp_path}/nginx-access.log satchel;",
    }
    for deployed, here in local.items():
        assert conf.count(deployed) == 1, f"deploy/nginx.conf no longer has {deployed!r}"
        conf = conf.replace(deployed, here)
    path = tmp_path / "nginx.conf"
    path.write_text(conf)
    directives = f"daemon off; pid {tmp_path}/nginx.pid;"
    balancer = subprocess.Popen(
        [nginx, "-c", str(path), "-e", str(tmp_path / "nginx-error.log"), "-g", directives]
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if balancer.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        balancer.terminate()
        balancer.wait(10)


S3_BUCKET = os.environ.get("SATCHEL_TEST_S3_BUCKET", "satchel-test")


@pytest.fixture(scope="session")
def s3_client() -> Any:
    """A client of the S3 server the tests use (SeaweedFS, started by .ci/run with
    .ci/s3-server-setup.sh; its settings come from the AWS environment)."""
    if not os.environ.get("AWS_ACCESS_KEY_ID") or not os.environ.get("AWS_ENDPOINT_URL_S3"):
        reason = "no S3 server configured (AWS_ENDPOINT_URL_S3, AWS_ACCESS_KEY_ID)"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    from satchel.storage.s3 import connect

    client = connect(None)
    try:
        client.head_bucket(Bucket=S3_BUCKET)
    except Exception as exc:
        if IN_CI:
            pytest.fail(f"the S3 bucket {S3_BUCKET} is not reachable: {exc}")
        pytest.skip(f"the S3 bucket {S3_BUCKET} is not reachable: {exc}")
    return client


@pytest.fixture
def s3_url(s3_client: Any) -> Iterator[str]:
    """``s3://bucket/prefix`` under a fresh prefix, emptied afterwards."""
    prefix = f"t-{uuid.uuid4().hex[:12]}"
    yield f"s3://{S3_BUCKET}/{prefix}"
    empty_s3_prefix(s3_client, prefix + "/")


def s3_keys(client: Any, prefix: str) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    return [item["Key"] for page in pages for item in page.get("Contents", [])]


def empty_s3_prefix(client: Any, prefix: str) -> None:
    pages = client.get_paginator("list_multipart_uploads").paginate(Bucket=S3_BUCKET, Prefix=prefix)
    for page in pages:
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=S3_BUCKET, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for key in s3_keys(client, prefix):
        client.delete_object(Bucket=S3_BUCKET, Key=key)


REDIS_URL = os.environ.get("SATCHEL_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture
def redis_url() -> str:
    """The Redis the tests use (127.0.0.1:6379; override with SATCHEL_TEST_REDIS)."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except (redis.RedisError, OSError) as exc:
        if IN_CI:
            pytest.fail(f"Redis is not reachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis is not reachable: {exc}")
    return REDIS_URL
