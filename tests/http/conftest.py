from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from satchel.app import create_app
from satchel.config import load_settings
from satchel.http.body import SERVER_OPTIONS
from satchel.storage.base import Storage
from satchel.zipstream import Limits

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(params=[True, False], ids=["sendfile", "reads"])
def sendfile(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def _factory(aiohttp_client: Any, photos: Path, data_dir: Path, **fixed: Any) -> ClientFactory:
    async def factory(
        limits: Limits = Limits(),
        backend: Callable[[Path], Storage] | None = None,
        **overrides: Any,
    ) -> TestClient[Any, Any]:
        data_dir.mkdir(parents=True, exist_ok=True)
        settings = load_settings(**{"photos": photos, "data": data_dir, **fixed, **overrides})
        server = TestServer(create_app(settings, limits=limits, storage=backend))
        await server.start_server(**SERVER_OPTIONS)  # as `satchel serve` runs it
        client: TestClient[Any, Any] = await aiohttp_client(server)
        return client

    return factory


@pytest.fixture
def make_client(aiohttp_client: Any, photos: Path, data_dir: Path, sendfile: bool) -> ClientFactory:
    """A client of an app with these settings; each test runs with sendfile and with reads."""
    return _factory(aiohttp_client, photos, data_dir, sendfile=sendfile)


@pytest.fixture
def make_app_client(aiohttp_client: Any, photos: Path, data_dir: Path) -> ClientFactory:
    """The same, run once: for what does not depend on how responses are sent."""
    return _factory(aiohttp_client, photos, data_dir)
