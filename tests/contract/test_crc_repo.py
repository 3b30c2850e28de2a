"""One suite for the CRC cache, run against SQLite and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.archive.manifest import CrcEntry
from satchel.archive.snapshot import Snapshot
from satchel.metadata.crc import SqlCrcRepo
from satchel.metadata.db import HEAD, migrate
from satchel.storage.base import FileVersion


async def test_saved_crcs_load_back_by_version(engine: AsyncEngine) -> None:
    store = SqlCrcRepo(engine)
    a = FileVersion("a.jpg", 10, 1_700_000_000_123_456_789, 42)
    b = FileVersion("фото/б.jpg", 0, 0, -(2**63))  # an inode past 2**63, stored signed
    await store.save("f1", [CrcEntry(a, 0xFFFFFFFF), CrcEntry(b, 0)])
    assert await store.load("f1") == {a: 0xFFFFFFFF, b: 0}
    assert await store.load("other") == {}


async def test_a_new_version_replaces_the_old_one(engine: AsyncEngine) -> None:
    store = SqlCrcRepo(engine)
    old = FileVersion("a.jpg", 10, 1, 7)
    new = FileVersion("a.jpg", 11, 2, 7)
    await store.save("f", [CrcEntry(old, 1)])
    await store.save("f", [CrcEntry(new, 2)])
    assert await store.load("f") == {new: 2}
    async with engine.connect() as conn:
        count = (await conn.execute(text("SELECT count(*) FROM crc_cache"))).scalar_one()
    assert count == 1


async def test_folders_are_separate(engine: AsyncEngine) -> None:
    store = SqlCrcRepo(engine)
    v = FileVersion("1.jpg", 1, 1, 1)
    await store.save("a", [CrcEntry(v, 10)])
    await store.save("a_", [CrcEntry(v, 20)])
    assert await store.load("a") == {v: 10}
    assert await store.load("a_") == {v: 20}


async def test_saving_nothing_keeps_what_was_there(engine: AsyncEngine) -> None:
    store = SqlCrcRepo(engine)
    v = FileVersion("1.jpg", 1, 1, 1)
    await store.save("f", [CrcEntry(v, 10)])
    await store.save("f", [])  # a download that computed no CRC saves an empty list
    assert await store.load("f") == {v: 10}


async def test_migrations_are_idempotent(engine: AsyncEngine) -> None:
    await migrate(engine)
    async with engine.connect() as conn:
        version = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    assert version == HEAD


def test_head_constant_is_the_newest_migration() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from satchel.metadata.db import HEAD, MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD


async def test_a_snapshot_reads_back_whole_and_is_replaced(engine: AsyncEngine) -> None:
    store = SqlCrcRepo(engine)
    first = Snapshot('"etag-1"', bytes(range(40)), b"\x00" * 24 + "фото.jpg".encode())
    await store.keep_snapshot("folder", first)
    assert await store.snapshot("folder", '"etag-0"') == first
    # the archive's ETag is the snapshot's: its versions are not needed, nor read
    assert await store.snapshot("folder", '"etag-1"') == Snapshot('"etag-1"', first.crcs, b"")
    assert await store.snapshot("other", '"etag-1"') is None
    changed = Snapshot('"etag-2"', b"\x00" * 8, b"\x01" * 24)  # the folder changed
    await store.keep_snapshot("folder", changed)
    assert await store.snapshot("folder", '"etag-1"') == changed


async def test_snapshots_not_kept_again_are_pruned(engine: AsyncEngine) -> None:
    store = SqlCrcRepo(engine)
    await store.keep_snapshot("old", Snapshot('"e"', b"1234", b""))
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE crc_snapshots SET saved_at = '2020-01-01 00:00:00+00'"))
    await store.keep_snapshot("new", Snapshot('"e"', b"5678", b""))
    assert await store.prune_snapshots(datetime(2021, 1, 1, tzinfo=UTC)) == 1
    assert await store.snapshot("old", '"e"') is None
    assert await store.snapshot("new", '"e"') is not None
