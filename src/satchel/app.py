"""create_app(settings) -> the aiohttp application; cleanup_ctx owns resources."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from importlib import resources
from pathlib import Path

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from satchel.archive.service import Archives, Selections
from satchel.blocking import blocking
from satchel.config import Settings
from satchel.cors import Cors
from satchel.files.service import FileStore, UploadLimits
from satchel.hooks.rules import parse_secret
from satchel.hooks.service import Hooks
from satchel.http import cors as http_cors
from satchel.http.checks import CheckCache
from satchel.http.drain import Drain
from satchel.http.keys import (
    ARCHIVES,
    CHECKS,
    DELETE_HTML,
    DRAIN,
    ENGINE,
    FILESTORE,
    INDEX_HTML,
    LINK_SECRETS,
    OPENAPI_JSON,
    PAGE_JS,
    SELECTIONS,
    SETTINGS,
    SHARE_HTML,
    SHARE_JS,
    SHARES,
    TALLIES,
    THROTTLE,
    TRUSTED_PROXIES,
    TUSSTORE,
    UPLOAD_TOKENS,
)
from satchel.http.routes import setup_routes
from satchel.metadata.crc import SqlCrcRepo
from satchel.metadata.db import create_engine, migrate
from satchel.metadata.events import EventOutbox
from satchel.metadata.files import SqlFileRepo
from satchel.metadata.hooks import SqlHookOutbox
from satchel.metadata.leases import SqlLeases
from satchel.metadata.locks import PgLocks
from satchel.metadata.selections import SqlSelectionRepo
from satchel.metadata.shares import SqlShareRepo
from satchel.metadata.tus import SqlUploadRepo
from satchel.metrics import Tallies
from satchel.peers import parse_networks
from satchel.shares.rules import Bounds
from satchel.shares.service import Shares
from satchel.space import Ballast, Space
from satchel.storage.base import Folders, Storage, UploadLocks
from satchel.storage.folders import LocalFolders
from satchel.storage.local import LocalStorage
from satchel.storage.locks import FileLocks, Locks, Threaded
from satchel.throttle import Rates, Throttle
from satchel.tus.service import TusStore
from satchel.zipstream import Limits

log = logging.getLogger("satchel")


def create_app(
    settings: Settings,
    *,
    limits: Limits = Limits(),
    storage: Callable[[Path], Storage] | None = None,
) -> web.Application:
    """The whole service. ``limits`` shrinks ZIP64 thresholds (tests only); ``storage``
    makes the storage of uploaded bytes from the data folder (tests only): by default
    what --storage says, local files under --data unless it names an S3 bucket."""
    rates = settings.rates()
    app = web.Application()
    app[SETTINGS] = settings
    app[THROTTLE] = _throttle(app, settings.limits_redis, rates)
    app[TRUSTED_PROXIES] = parse_networks(settings.trusted_proxy)
    app[DRAIN] = drain = Drain()
    app[TALLIES] = tallies = Tallies()
    if (cors := Cors.of(settings.cors_origin)) is not None:
        http_cors.install(app, cors)

    async def drained(_app: web.Application) -> None:  # after SIGTERM, before cleanup
        await drain.wait(settings.drain_timeout)

    app.on_shutdown.append(drained)

    reserve = settings.disk_reserve

    async def resources_ctx(app: web.Application) -> AsyncIterator[None]:
        await blocking(settings.data.mkdir, parents=True, exist_ok=True)
        engine = create_engine(settings.db_url)
        try:
            await migrate(engine)
            app[ENGINE] = engine
            folders = await blocking(open_folders, settings)
            photos_room = Space(folders.free_bytes, reserve)
            app[ARCHIVES] = archives = Archives(folders, SqlCrcRepo(engine), limits, photos_room)
            events = EventOutbox(settings.hook_url if settings.hook_secret else ())
            uploads = SqlUploadRepo(engine, events)
            backend = await blocking(
                storage or (lambda _data: open_storage(settings)), settings.data
            )
            share_repo = SqlShareRepo(engine, events)
            app[FILESTORE] = store = FileStore(
                SqlFileRepo(engine, events),
                backend,
                UploadLimits(settings.max_upload_size, reserve, settings.read_timeout),
                space=Space(
                    backend.free_bytes,
                    reserve,
                    uploads.unfinished_rest,
                    Ballast(settings.data / "ballast"),
                ),
                shares=share_repo,
            )
            await store.space.refill()
            app[CHECKS] = CheckCache(store)
            expiry = timedelta(hours=settings.tus_expiry_hours)
            locks = upload_locks(settings, backend, engine)
            app[TUSSTORE] = tus = TusStore(uploads, store, locks, expiry)
            app[UPLOAD_TOKENS] = await blocking(settings.upload_tokens)
            app[LINK_SECRETS] = await blocking(settings.link_secrets)
            app[SELECTIONS] = selections = Selections(
                archives, SqlSelectionRepo(engine), store.repo, backend
            )
            app[SHARES] = shares = Shares(share_repo, store, _bounds(settings), limits)

            async def purge() -> None:
                await tus.purge()
                await shares.purge()
                await store.purge()
                await selections.purge()
                await archives.purge()

            sweeping = _sweeping(settings, engine)
            if await sweeping():
                await purge()
                await store.sweep_orphans()
            app[INDEX_HTML] = await blocking(_read_page, "index.html")
            app[DELETE_HTML] = (await blocking(_read_page, "delete.html")).decode()
            app[SHARE_HTML] = (await blocking(_read_page, "share.html")).decode()
            app[SHARE_JS] = await blocking(_read_page, "share.js")
            app[OPENAPI_JSON] = await blocking(_read_page, "openapi.json")
            app[PAGE_JS] = await blocking(_read_page, "satchel.js")
            background = [
                asyncio.create_task(
                    _purge_every(purge, store.space, sweeping, settings.purge_interval)
                )
            ]
            if events.urls:
                hooks = _hooks(settings, engine, events)
                background.append(asyncio.create_task(hooks.run()))
            yield
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if isinstance(locks, PgLocks):
                await locks.close()
            if isinstance(folders, LocalFolders):
                folders.close()
        finally:
            await engine.dispose()

    app.cleanup_ctx.append(resources_ctx)
    if settings.metrics:
        app.cleanup_ctx.append(lambda _app: _flushing(tallies))
    setup_routes(app, per_client=rates.per_client, metrics=settings.metrics)
    return app


def _bounds(settings: Settings) -> Bounds:
    return Bounds(
        settings.default_max_days,
        settings.max_days,
        settings.default_max_downloads,
        settings.max_downloads,
    )


def _throttle(app: web.Application, redis_url: str | None, rates: Rates) -> Throttle:
    """Speed limits: a client's and the total shared by every instance through Redis
    with --limits-redis, else by this process."""
    if redis_url is None:
        return Throttle(rates)
    from satchel.shared_limits import LeasedLimiter, RedisBuckets

    buckets = RedisBuckets(redis_url)

    async def close(_app: web.Application) -> None:
        await buckets.close()

    app.on_cleanup.append(close)
    return Throttle(
        rates,
        shared=lambda rate, name: LeasedLimiter(
            buckets, f"satchel:limit:{name}", rate, rates.burst
        ),
    )


def open_storage(settings: Settings) -> Storage:
    """Local files under --data, or the S3 bucket of --storage."""
    if settings.storage is None:
        return LocalStorage(settings.data)
    from satchel.storage.s3 import open_s3  # boto3 only when it is used

    return open_s3(settings.storage, settings.s3_endpoint, settings.s3_part_size)


def open_folders(settings: Settings) -> Folders:
    """The photos root: a local folder, or a bucket and prefix."""
    if isinstance(settings.photos, Path):
        return LocalFolders(settings.photos, watch=settings.watch_folders)
    from satchel.storage.s3 import connect
    from satchel.storage.s3_folders import S3Folders

    return S3Folders(connect(settings.s3_endpoint), settings.photos, settings.s3_part_size)


def upload_locks(settings: Settings, backend: Storage, engine: AsyncEngine) -> Locks:
    """The storage's own locks (local files: ``flock``); else PostgreSQL's advisory locks,
    which instances that share no filesystem share; else lock files in the data folder
    (one instance, any number of workers)."""
    if isinstance(backend, UploadLocks):
        return Threaded(backend)
    if engine.dialect.name == "postgresql":
        return PgLocks(engine)
    return Threaded(FileLocks(settings.data / "locks"))


def _sweeping(settings: Settings, engine: AsyncEngine) -> Callable[[], Awaitable[bool]]:
    """Whether this instance sweeps expired files now: always, with storage of its own;
    with a storage that instances share (S3), only while it holds the database lease,
    so that the sweep runs once, not once per instance. A holder that dies is replaced
    after three intervals."""
    if settings.storage is None:
        return _always
    leases = SqlLeases(engine)
    name, seconds = f"sweep {settings.storage}", 3 * settings.purge_interval
    return lambda: leases.take(name, seconds)


def _hooks(settings: Settings, engine: AsyncEngine, events: EventOutbox) -> Hooks:
    assert settings.hook_secret is not None  # config.py requires it with --hook-url
    key = parse_secret(settings.hook_secret)
    return Hooks(SqlHookOutbox(engine), key, events.written, settings.hook_retry_seconds)


async def _always() -> bool:
    return True


async def _purge_every(
    purge: Callable[[], Awaitable[None]],
    space: Space,
    sweeping: Callable[[], Awaitable[bool]],
    seconds: float,
) -> None:
    while True:
        await asyncio.sleep(seconds)
        try:
            if await sweeping():
                await purge()
            await space.refill()
        except Exception:
            log.exception("Purging expired files failed; trying again in %g s", seconds)


async def _flushing(tallies: Tallies) -> AsyncIterator[None]:
    """Hand the request counts to the metrics once a second, and at the end."""

    async def every_second() -> None:
        while True:
            await asyncio.sleep(1)
            tallies.flush()

    task = asyncio.create_task(every_second())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    tallies.flush()


def _read_page(name: str) -> bytes:
    return resources.files("satchel.web").joinpath(name).read_bytes()
