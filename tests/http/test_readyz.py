"""GET /readyz: whether this instance should get traffic, and if not, why."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from satchel.http.keys import DRAIN
from tests.conftest import _pg_admin

from .conftest import ClientFactory


async def test_a_healthy_instance_is_ready(make_app_client: ClientFactory) -> None:
    client = await make_app_client()
    resp = await client.get("/readyz")
    assert resp.status == 200 and resp.headers["Cache-Control"] == "no-store"
    body = await resp.json()
    checks = {"draining": "ok", "database": "ok", "storage": "ok", "space": "ok"}
    assert body == {"ready": True, "checks": checks}
    assert (await client.head("/readyz")).status == 200


async def test_free_space_below_the_reserve_is_not_ready(make_app_client: ClientFactory) -> None:
    client = await make_app_client(disk_reserve="1000000T")
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["ready"] is False and "--disk-reserve" in body["checks"]["space"]
    assert body["checks"]["database"] == body["checks"]["storage"] == "ok"


async def test_a_storage_folder_gone_is_not_ready(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    client = await make_app_client()
    shutil.rmtree(data_dir / "files")
    body = await (await client.get("/readyz")).json()
    assert body["ready"] is False and "files" in body["checks"]["storage"]
    assert (await client.get("/healthz")).status == 200  # alive: only not ready


async def test_a_database_gone_is_not_ready(make_app_client: ClientFactory, pg_url: str) -> None:
    client = await make_app_client(db=pg_url)
    assert (await client.get("/readyz")).status == 200
    await _pg_admin(f'DROP DATABASE "{pg_url.rsplit("/", 1)[1]}" WITH (FORCE)')
    resp = await client.get("/readyz")
    assert resp.status == 503
    body = await resp.json()
    assert body["checks"]["database"] != "ok" and body["checks"]["storage"] == "ok"


async def test_a_draining_instance_is_not_ready(make_app_client: ClientFactory) -> None:
    """Between SIGTERM and the end of the transfers, on a connection still open."""
    client = await make_app_client()
    drain, release = client.app[DRAIN], asyncio.Event()

    async def transfer() -> None:
        with drain.running():
            await release.wait()

    running = asyncio.create_task(transfer())
    await asyncio.sleep(0)
    waiting = asyncio.create_task(drain.wait(30))
    await asyncio.sleep(0)
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert (await resp.json())["checks"]["draining"] == "shutting down after SIGTERM"
    assert "satchel_draining 1.0" in await (await client.get("/metrics")).text()
    release.set()
    await asyncio.wait_for(waiting, 5)
    await running
