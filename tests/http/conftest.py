from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from satchel.app import create_app
from satchel.config import load_settings
from satchel.zipstream import Limits

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


@pytest.fixture(params=[True, False], ids=["sendfile", "reads"])
def sendfile(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


@pytest.fixture
def make_client(aiohttp_client: Any, photos: Path, data_dir: Path, sendfile: bool) -> ClientFactory:
    async def factory(limits: Limits = Limits(), **overrides: Any) -> TestClient[Any, Any]:
        data_dir.mkdir(parents=True, exist_ok=True)
        settings = load_settings(photos=photos, data=data_dir, sendfile=sendfile, **overrides)
        client: TestClient[Any, Any] = await aiohttp_client(create_app(settings, limits=limits))
        return client

    return factory
