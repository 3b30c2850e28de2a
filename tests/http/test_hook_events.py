"""Events are written to the outbox when they happen, whatever the endpoint does: a file
that expires is told too (its endpoint is down here, so the rows stay to be read)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from satchel.http.keys import FILESTORE, SHARES
from tests.conftest import free_port

from .conftest import ClientFactory

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef").decode()


async def outbox(data_dir: Path) -> list[dict[str, Any]]:
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


async def test_shares_tell_when_they_close_and_why(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    down = f"http://127.0.0.1:{free_port()}/hooks"
    client = await make_app_client(hook_url=down, hook_secret=SECRET, hook_retry_seconds=60)
    made = [await (await client.post("/shares/")).json() for _ in range(3)]
    owner = [{"Authorization": f"Bearer {s['owner_token']}"} for s in made]
    joining = {"Satchel-Share": made[1]["id"], "Satchel-Share-Token": made[1]["owner_token"]}
    inside = await (await client.post("/files/?name=a.txt", data=b"a", headers=joining)).json()
    assert (
        await client.patch(f"/shares/{made[0]['id']}", json={"closed": True}, headers=owner[0])
    ).status == 200
    assert (
        await client.patch(f"/shares/{made[0]['id']}", json={"max_days": 2}, headers=owner[0])
    ).status == 200
    assert (await client.delete(f"/shares/{made[1]['id']}", headers=owner[1])).status == 204
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE shares SET expires_at = '2020-01-01 00:00:00'"))
    await engine.dispose()
    await client.app[SHARES].purge()
    told = [(e["type"], e["data"]) for e in await outbox(data_dir)]
    closed = [d for kind, d in told if kind == "share.closed"]
    # once each: a later change of a closed share tells nothing; the purge's order is free
    assert closed[:2] == [
        {"id": made[0]["id"], "reason": "closed"},
        {"id": made[1]["id"], "reason": "deleted"},
    ]
    expired = [{"id": s["id"], "reason": "expired"} for s in (made[0], made[2])]
    assert sorted(closed[2:], key=str) == sorted(expired, key=str)
    assert ("file.deleted", {"id": inside["id"]}) in told


async def test_a_file_is_stored_only_with_its_event(
    make_app_client: ClientFactory, data_dir: Path
) -> None:
    """The row and its event commit together: an outbox that cannot be written fails
    the upload, and no file is left that the endpoints would never hear of."""
    down = f"http://127.0.0.1:{free_port()}/hooks"
    client = await make_app_client(hook_url=down, hook_secret=SECRET, hook_retry_seconds=60)
    engine = create_async_engine(f"sqlite+aiosqlite:///{data_dir / 'satchel.sqlite3'}")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TRIGGER refuse BEFORE INSERT ON hook_outbox "
                "BEGIN SELECT RAISE(ABORT, 'the outbox is broken'); END"
            )
        )
    resp = await client.post("/files/?name=a.txt", data=b"never told")
    assert resp.status == 500
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM files"))).scalar() == 0
        await conn.execute(text("DROP TRIGGER refuse"))
        await conn.commit()
    await engine.dispose()
    resp = await client.post("/files/?name=a.txt", data=b"told")
    assert resp.status == 201
    [event] = await outbox(data_dir)
    assert event["type"] == "file.stored" and event["data"]["id"] == (await resp.json())["id"]
