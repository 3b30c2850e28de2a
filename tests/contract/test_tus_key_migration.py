"""Upgrading to hashed upload keys keeps unfinished uploads resumable, on both databases."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.files.rules import new_id
from satchel.metadata.db import MIGRATIONS, create_engine, migrate
from satchel.metadata.tus import SqlUploadRepo
from satchel.storage.local import LocalStorage
from satchel.tus.rules import upload_key


def _to(revision: str) -> Callable[[Connection], None]:
    def run(conn: Connection) -> None:
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)

    return run


async def test_unfinished_uploads_survive_and_finished_ones_go(db_url: str, tmp_path: Path) -> None:
    engine = create_engine(db_url)
    try:
        await _upgrade_with_rows(engine, tmp_path)
    finally:
        await engine.dispose()


async def _upgrade_with_rows(engine: AsyncEngine, tmp_path: Path) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_to("0005"))
    unfinished, finished = new_id(), new_id()
    now = datetime.now(UTC)
    async with engine.begin() as conn:
        for upload_id, completed in ((unfinished, False), (finished, True)):
            await conn.execute(
                text(
                    "INSERT INTO tus_uploads (id, upload_length, upload_offset, metadata, "
                    "file_id, delete_token, max_days, created_at, expires_at, completed) "
                    "VALUES (:id, 10, 4, '{}', :file, 'clear-token', 7, :now, :later, :done)"
                ),
                {"id": upload_id, "file": new_id(), "now": now,
                 "later": now + timedelta(days=1), "done": completed},
            )  # fmt: skip
    (tmp_path / "tus").mkdir()
    (tmp_path / "tus" / unfinished).write_bytes(b"abcd")
    await migrate(engine)
    repo = SqlUploadRepo(engine)
    got = await repo.get(unfinished)
    assert got is not None and (got.offset, got.length) == (4, 10)
    assert await repo.get(finished) is None
    async with engine.connect() as conn:
        stored = repr((await conn.execute(text("SELECT * FROM tus_uploads"))).all())
    assert "clear-token" not in stored and unfinished not in stored
    LocalStorage(tmp_path)  # renames the bytes as the process starts
    assert (tmp_path / "tus" / upload_key(unfinished)).read_bytes() == b"abcd"
    assert not (tmp_path / "tus" / unfinished).exists()
