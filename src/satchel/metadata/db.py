"""Engine creation and migrations for SQLite (default) and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from satchel.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
HEAD = "0011"  # the newest revision in migrations/versions (a test keeps this true)
_PG_MIGRATION_LOCK = 0x5A7C4E1  # advisory lock id: one migrator at a time


def database_full(exc: BaseException) -> bool:
    """The database could not write for want of disk space (SQLITE_FULL, or
    PostgreSQL's disk_full 53100)."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return getattr(orig, "sqlite_errorcode", None) == _SQLITE_FULL or "53100" in (
        getattr(orig, "sqlstate", None),
        getattr(orig, "pgcode", None),
    )


_SQLITE_FULL = 13


def create_engine(url: str) -> AsyncEngine:
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30})
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: the log is synced at every commit. A 201 follows the row's commit, so with
    # NORMAL a power cut could take back a row whose file was fsynced. It costs about
    # 0.1-0.8 ms an upload here (bench/RESULTS.md).
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _upgrade(conn: Connection) -> None:
    # Imported here: Alembic costs ~8 MiB of RSS, needed only when the schema is behind.
    from alembic import command
    from alembic.config import Config

    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision (idempotent, safe to run concurrently)."""
    if await _current_revision(engine) == HEAD:
        return
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_upgrade)
    except OSError as exc:
        raise ConfigError(f"cannot reach the database: {exc}") from exc


async def _current_revision(engine: AsyncEngine) -> str | None:
    try:
        async with engine.connect() as conn:
            found = await conn.execute(text("SELECT version_num FROM alembic_version"))
            return found.scalar()
    except (DBAPIError, OSError):
        return None  # no schema yet, or unreachable: the upgrade path reports it
