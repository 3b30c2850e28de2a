"""Events are written to the outbox when they happen, whatever the endpoint does: a file
that expires is told too (its endpoint is down here, so the rows stay to be read)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from satchel.http.keys import FILESTORE
from tests.conftest import free_port

from .conftest import ClientFactory

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()


async def outbox(data_dir: Path) -> list[dict[str, object]]:
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT body FROM hook_outbox ORDER BY created_at"))).all()
    await engine.dispose()
    return [json.loads(row[0]) for row in rows]


async def test_an_expired_file_is_told(make_app_client: ClientFactory, data_dir: Path) -> None:
    down = f"http://127.0.0.1:{free_port()}/hooks"
    client = await make_app_client(hook_url=down, hook_secret=SECRET, hook_retry_seconds=60)
    stored = await (await client.post("/files/?name=a.txt", data=b"a")).json()
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE files SET expires_at = '2020-01-01 00:00:00'"))
    await engine.dispose()
    assert await client.app[FILESTORE].purge() == 1
    events = await outbox(data_dir)
    assert [e["type"] for e in events] == ["file.stored", "file.expired"]
    assert events[1]["data"] == {"id": stored["id"]}
