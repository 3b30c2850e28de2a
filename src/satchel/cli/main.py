"""`satchel serve | admin demo` — the command line."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import faulthandler
import io
import logging
import multiprocessing
import multiprocessing.connection
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from satchel import __version__
from satchel.config import Settings, check_link_secrets, check_paths, load_settings
from satchel.errors import ConfigError
from satchel.http.drain import GRACE

log = logging.getLogger("satchel")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="satchel", description="Asynchronous file delivery.")
    parser.add_argument("--version", action="version", version=f"satchel {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind (default 8080)")
    serve.add_argument(
        "--photos", "--dir", dest="photos", help="photos root or s3://BUCKET/PREFIX (./photos)"
    )
    serve.add_argument("--data", help="data folder: SQLite file, later uploads (default ./data)")
    serve.add_argument("--db", help="database URL (default SQLite under --data)")
    serve.add_argument(
        "--storage", metavar="s3://BUCKET/PREFIX", help="stored files and uploads in S3"
    )
    serve.add_argument("--s3-endpoint", metavar="URL", help="S3 server (default: AWS chain)")
    serve.add_argument("--s3-part-size", help="multipart part size, at least 5M (default 8M)")
    serve.add_argument(
        "--s3-redirect",
        action="store_const",
        const=True,
        help="answer downloads of files without Max-Downloads with a presigned S3 URL",
    )
    serve.add_argument("--delay", type=float, help="pause in seconds after each chunk (debug)")
    serve.add_argument("--chunk-size", type=int, help="bytes per read (default 1 MiB)")
    serve.add_argument(
        "-v",
        "--verbose",
        "--logs",
        dest="verbose",
        nargs="?",
        const=1,
        type=int,
        help="debug logs, one line per chunk (seed 000's `--logs 1` works too)",
    )
    serve.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    serve.add_argument(
        "--no-access-log", dest="access_log", action="store_const", const=False,
        help="no line per request (for very high request rates)",
    )  # fmt: skip
    serve.add_argument("--log-format", choices=["text", "json"], help="log lines (text)")
    serve.add_argument(
        "--log-file", metavar="PATH", help="log here, not to stderr; reopened on SIGHUP"
    )
    serve.add_argument(
        "--no-metrics", dest="metrics", action="store_const", const=False,
        help="no GET /metrics and no per-request counting",
    )  # fmt: skip
    serve.add_argument(
        "--drain-timeout", type=float, metavar="SECONDS",
        help="on SIGTERM, transfers in progress have this long to finish (30)",
    )  # fmt: skip
    serve.add_argument(
        "--no-sendfile", dest="sendfile", action="store_const", const=False, help="never sendfile"
    )
    serve.add_argument(
        "--no-watch-folders", dest="watch_folders", action="store_const", const=False,
        help="scan a folder for every archive, never trust inotify that it did not change",
    )  # fmt: skip
    serve.add_argument("--event-loop", choices=["auto", "asyncio", "uvloop"])
    serve.add_argument(
        "--send-timeout", type=float, help="cut off a client that takes no bytes this long (60)"
    )
    files = serve.add_argument_group("files behind links")
    files.add_argument("--public-url", help="base URL for links (default: the request's origin)")
    files.add_argument(
        "--upload-token", action="append", help="token for uploads and deletes (repeatable)"
    )
    files.add_argument("--upload-token-file", help="file of upload tokens, one a line")
    hooks = serve.add_argument_group("webhooks")
    hooks.add_argument("--hook-url", action="append", help="POST events here (repeatable)")
    hooks.add_argument("--hook-secret", help="whsec_<base64>: the key events are signed with")
    hooks.add_argument(
        "--hook-retry-seconds", type=float, help="first wait before trying again, doubling (10)"
    )
    files.add_argument(
        "--cors-origin", action="append", metavar="ORIGIN",
        help="let pages of this origin call Satchel (repeatable); * : any, downloads only",
    )  # fmt: skip
    files.add_argument("--max-upload-size", help="largest upload, e.g. 10G (default 10G)")
    files.add_argument("--disk-reserve", help="free space to keep, e.g. 256M (default 256M)")
    files.add_argument("--read-timeout", type=float, help="drop an upload stalled this long (60)")
    files.add_argument("--default-max-days", type=int, help="days a file is kept by default (7)")
    files.add_argument("--max-days", type=int, help="most days a client may ask for (30)")
    files.add_argument("--default-max-downloads", type=int, help="downloads allowed by default")
    files.add_argument("--max-downloads", type=int, help="most downloads a client may ask for")
    files.add_argument(
        "--tus-expiry-hours", type=float, help="an unfinished resumable upload is kept (24)"
    )

    limits = serve.add_argument_group(
        "speed limits", "bytes a second with K/M/G suffixes (binary), each off by default"
    )
    for name, what in (
        ("download-rate", "each download (per connection)"),
        ("upload-rate", "each upload (per connection)"),
        ("client-download-rate", "all downloads of one client, shared evenly"),
        ("client-upload-rate", "all uploads of one client, shared evenly"),
        ("total-download-rate", "all downloads of this process"),
        ("total-upload-rate", "all uploads of this process"),
    ):
        limits.add_argument(f"--{name}", metavar="RATE", help=what)
    limits.add_argument(
        "--burst", help="bytes a limit may bank while idle (default: about 0.4 s of its rate)"
    )
    limits.add_argument(
        "--trusted-proxy", action="append", metavar="ADDR[/BITS]",
        help="believe X-Forwarded-For from this proxy (repeatable)",
    )  # fmt: skip
    limits.add_argument(
        "--limits-redis", metavar="URL", help="share client and total limits through Redis"
    )
    limits.add_argument("--proxy-header", choices=["x-forwarded-for", "forwarded"])
    limits.add_argument(
        "--max-connections-per-client", type=int, metavar="N",
        help="requests one client may run at once; more get 429",
    )  # fmt: skip
    limits.add_argument(
        "--max-archive-streams", type=int, metavar="N",
        help="archive downloads this process runs at once; more get 503",
    )  # fmt: skip

    _client_commands(commands)

    admin = commands.add_parser("admin", help="administration")
    admin_commands = admin.add_subparsers(dest="admin_command", required=True)
    demo = admin_commands.add_parser("demo", help="create demo folders if the photos root is empty")
    demo.add_argument("--photos", "--dir", dest="photos")
    sign = admin_commands.add_parser("sign", help="print a signed, expiring link")
    sign.add_argument("link", help="/archive/<hash>/ or /files/<id>/ (or a whole URL)")
    sign.add_argument("--ttl", type=int, default=3600, help="seconds it is valid (3600)")
    sign.add_argument("--link-secret", action="append", help="secret (default: the setting)")
    sign.add_argument("--link-secret-file")
    sign.add_argument("--public-url", help="base URL to print it under")
    migrate = admin_commands.add_parser("migrate", help="bring the database schema up to date")
    migrate.add_argument("--data", help="data folder holding the default SQLite file")
    migrate.add_argument("--db", help="database URL")
    return parser


def _client_commands(commands: Any) -> None:
    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--server", help="Satchel's URL (default $SATCHEL_SERVER or :8080)")
        parser.add_argument("--json", action="store_true", help="machine-readable output")
        parser.add_argument("--chunk-size", type=int, default=1024 * 1024)

    def resumes(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--retries",
            type=int,
            default=5,
            help="network failures in a row to resume after (5); a rerun resumes too",
        )

    up = commands.add_parser("upload", help="upload files; prints their links")
    up.add_argument("files", nargs="+", type=Path)
    up.add_argument("--max-downloads", type=int)
    up.add_argument("--max-days", type=int)
    up.add_argument("--token", help="upload token (default $SATCHEL_TOKEN)")
    common(up)
    resumes(up)
    down = commands.add_parser("download", help="download a file by URL or id, resuming")
    down.add_argument("target", metavar="URL|ID")
    down.add_argument("-o", "--output", type=Path)
    down.add_argument("--force", action="store_true", help="replace the output if it exists")
    common(down)
    resumes(down)
    chk = commands.add_parser("check", help="a stored file's status")
    chk.add_argument("id")
    common(chk)
    rm = commands.add_parser("delete", help="delete a stored file")
    rm.add_argument("id")
    rm.add_argument("--delete-token", "--token", dest="delete_token", required=True)
    rm.add_argument("--upload-token", dest="token", help="if the server requires one")
    common(rm)
    arc = commands.add_parser("archive", help="download a folder's ZIP, resuming; checks CRCs")
    arc.add_argument("hash")
    arc.add_argument("-o", "--output", type=Path)
    arc.add_argument("--force", action="store_true", help="replace the output if it exists")
    common(arc)
    resumes(arc)


def _run_client(args: argparse.Namespace) -> int:
    from satchel.cli import client

    opts = client.Options(
        server=(args.server or client.server_default()).rstrip("/"),
        token=getattr(args, "token", None) or os.environ.get("SATCHEL_TOKEN"),
        json=args.json,
        chunk_size=args.chunk_size,
    )
    match args.command:
        case "upload":
            missing = [str(p) for p in args.files if not p.is_file()]
            if missing:
                print(f"satchel: not a file: {', '.join(missing)}", file=sys.stderr)
                return 2
            return client.run(
                client.upload(opts, args.files, args.max_downloads, args.max_days, args.retries)
            )
        case "download":
            url = client.file_url(opts, args.target)
            return client.run(
                client.fetch(opts, url, args.output, retries=args.retries, force=args.force)
            )
        case "check":
            return client.run(client.check(opts, args.id))
        case "delete":
            return client.run(client.delete(opts, args.id, args.delete_token))
        case _:
            url = f"{opts.server}/archive/{args.hash}/"
            output = args.output or Path(f"{args.hash}.zip")
            return client.run(
                client.fetch(
                    opts, url, output, verify_zip=True, retries=args.retries, force=args.force
                )
            )


_DASHED_ID = re.compile(r"-[A-Za-z0-9_-]{21}")
_VALUED = {"-o", "--output", "--server", "--chunk-size", "--token", "--delete-token",
           "--upload-token"}  # fmt: skip
_OPTIONS = _VALUED | {"--json", "-h", "--help"}


def _dashes_kept(argv: list[str]) -> list[str]:
    """Ids and tokens are URL-safe base64, and 1 in 64 begins with "-", which argparse
    takes for an option. For the client commands, such a value is joined to its option
    ("--token=-x…"), and for those that take one id, such an id moves behind "--"."""
    if not argv or argv[0] not in ("upload", "download", "check", "delete", "archive"):
        return argv
    takes_id = argv[0] in ("download", "check", "delete")
    out: list[str] = [argv[0]]
    ids: list[str] = []
    for at, arg in enumerate(argv[1:], start=1):
        if arg == "--":
            return [*out, "--", *ids, *argv[at + 1 :]]
        if arg.startswith("-") and arg not in _OPTIONS:
            if out[-1] in _VALUED:
                out[-1] = f"{out[-1]}={arg}"
                continue
            if takes_id and _DASHED_ID.fullmatch(arg):
                ids.append(arg)
                continue
        out.append(arg)
    return [*out, "--", *ids] if ids else out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(_dashes_kept(sys.argv[1:] if argv is None else argv))
    if args.command in ("upload", "download", "check", "delete", "archive"):
        return _run_client(args)
    own = ("command", "admin_command", "link", "ttl")  # not settings
    flags = {k: v for k, v in vars(args).items() if k not in own}
    if flags.get("verbose") is not None:
        flags["verbose"] = bool(flags["verbose"])
    try:
        settings = load_settings(**flags)
        if args.command == "admin" and args.admin_command == "demo":
            return _demo(settings)
        if args.command == "admin" and args.admin_command == "sign":
            return _sign(settings, args.link, args.ttl)
        if args.command == "serve":
            check_paths(settings)
        loop_factory = _loop_factory(settings)
    except ConfigError as exc:
        print(f"satchel: {exc.message}", file=sys.stderr)
        return 2
    _setup_logging(settings)
    if args.command == "admin":  # migrate
        _migrate_here(settings)
        return 0
    try:  # before the database is opened, migrated or purged
        sock = _listen(settings)
    except ConfigError as exc:
        print(f"satchel: {exc.message}", file=sys.stderr)
        return 2
    if settings.workers > 1:
        sock.close()  # a probe: each worker listens on the port itself
    if not _migrate(settings):  # once, before any worker binds
        return 2
    if settings.host not in ("127.0.0.1", "::1", "localhost") and not settings.upload_tokens():
        log.warning(
            "Listening on %s with no --upload-token: ANYONE who can reach this address can "
            "upload and delete files. Set --upload-token (or SATCHEL_UPLOAD_TOKEN).",
            settings.host,
        )
    if settings.workers == 1:
        _serve(settings, loop_factory, sock)
        return 0
    return _serve_many(settings)


def _listen(settings: Settings) -> socket.socket:
    """The listening socket, so that a port in use is one line and exit 2, before
    anything else happens."""
    try:
        return socket.create_server(
            (settings.host, settings.port),
            backlog=1024,  # bursts of connections (a thousand downloads at once) are not refused
            reuse_port=settings.workers > 1,
        )
    except OSError as exc:
        raise ConfigError(
            f"--port {settings.port}: cannot listen on {settings.host}:{settings.port}: "
            f"{exc.strerror or exc}"
        ) from exc


def _migrate(settings: Settings) -> bool:
    """Bring the schema up to date in a child process (`satchel admin migrate`), so the
    serving processes never import Alembic (~8 MiB of RSS). The database URL goes by
    environment, not by command line, where a password would show in `ps`."""
    env = {**os.environ, "SATCHEL_DB": settings.db_url, "SATCHEL_DATA": str(settings.data)}
    child = subprocess.run([sys.executable, "-m", "satchel", "admin", "migrate"], env=env)
    return child.returncode == 0


def _migrate_here(settings: Settings) -> None:
    from satchel.metadata.db import create_engine, migrate

    async def run() -> None:
        settings.data.mkdir(parents=True, exist_ok=True)
        engine = create_engine(settings.db_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        print(
            f"satchel: cannot prepare the database {settings.db_url_masked}: {exc}", file=sys.stderr
        )
        raise SystemExit(2) from exc


def _demo(settings: Settings) -> int:
    from satchel.demo import ensure_demo

    if not isinstance(settings.photos, Path):
        print("satchel: admin demo fills a local photos folder, not a bucket", file=sys.stderr)
        return 2
    if ensure_demo(settings.photos):
        print(f"satchel: created demo folders in {settings.photos} (try /archive/7kna/)")
    return 0


def _sign(settings: Settings, link: str, ttl: int) -> int:
    """`satchel admin sign`: the link with ``?expires=…&sig=…``, made with the first
    secret; under --public-url when it is set."""
    from satchel.links import canonical, signed_query

    path = canonical(link)
    if path is None:
        raise ConfigError(f"{link!r}: give /archive/<hash>/ or /files/<id>/")
    if ttl < 1:
        raise ConfigError("--ttl: must be at least 1 second")
    check_link_secrets(settings)
    secrets = settings.link_secrets()
    if not secrets:
        raise ConfigError("no link secret: set --link-secret or SATCHEL_LINK_SECRET")
    query = signed_query(secrets[0], path, int(time.time()) + ttl)
    print(f"{settings.public_url or ''}{path}?{query}")
    return 0


def _loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop]:
    """`auto`: uvloop when installed. Bodies go out by our own os.sendfile on either
    loop, so uvloop keeps zero-copy; it answered /check 28% faster (bench/RESULTS.md)."""
    if settings.event_loop == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError as exc:
        if settings.event_loop == "uvloop":
            raise ConfigError("--event-loop uvloop: uvloop is not installed") from exc
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def _setup_logging(settings: Settings) -> None:
    from satchel import logs

    logs.setup(
        verbose=settings.verbose,
        json_lines=settings.log_format == "json",
        log_file=settings.log_file,
    )
    for noisy in ("sqlalchemy", "alembic", "asyncio", "aiosqlite"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_quiet_malformed_requests)


def _quiet_malformed_requests(record: logging.LogRecord) -> bool:
    """aiohttp answers a malformed request with 400 but logs an ERROR with a traceback;
    any client could flood the error log that way. Keep one INFO line instead."""
    exc = record.exc_info[1] if record.exc_info else None
    if isinstance(exc, HttpProcessingError):
        record.levelno, record.levelname = logging.INFO, "INFO"
        record.msg, record.args = "Rejected a malformed request: %s", (exc.message,)
        record.exc_info = record.exc_text = None
    return True


def _serve(
    settings: Settings,
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    sock: socket.socket | None = None,
) -> None:
    """Serve on ``sock``, or (a worker of several) on a socket of its own, until
    SIGTERM (or, but for a worker, SIGINT) begins the drain; a second one ends it."""
    from satchel.app import create_app
    from satchel.http.accesslog import access_log_class
    from satchel.http.body import SERVER_OPTIONS
    from satchel.http.keys import TRUSTED_PROXIES

    _tame_malloc()
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    _install_stack_dumps(loop)
    log_file = settings.log_file
    if log_file is not None:  # until the running loop takes it over (_take_signals)
        signal.signal(signal.SIGHUP, lambda _signum, _frame: _reopen_log(log_file))
    else:  # nothing to reopen; and a HUP does not stop a server
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    log.info(
        "Satchel %s: photos %s, database %s, loop %s, sendfile %s",
        __version__,
        settings.photos if not isinstance(settings.photos, Path) else settings.photos.resolve(),
        settings.db_url_masked,
        type(loop).__module__.split(".")[0],
        "on" if settings.sendfile else "off",
    )
    app = create_app(settings)
    app.on_startup.append(lambda _app: _take_signals(settings))
    web.run_app(
        app,
        sock=sock or _listen(settings),
        access_log_class=access_log_class(
            app[TRUSTED_PROXIES], settings.proxy_header, json_lines=settings.log_format == "json"
        ),
        access_log=logging.getLogger("satchel.access") if settings.access_log else None,
        print=(lambda *_: None) if settings.workers > 1 else print,
        loop=loop,
        handle_signals=False,
        shutdown_timeout=GRACE,  # for requests that are not transfers; see Drain
        **SERVER_OPTIONS,
    )
    log.info("Stopped")


async def _take_signals(settings: Settings) -> None:
    """The loop's own handlers, set once it runs: uvloop left a signal that came between
    add_signal_handler and the loop's start unhandled until the next one came."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM,) if settings.workers > 1 else (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _graceful_exit, signum)
    if settings.log_file is not None:
        loop.add_signal_handler(signal.SIGHUP, _reopen_log, settings.log_file)
    log.info("Ready (pid %d); SIGTERM drains", os.getpid())


def _reopen_log(path: Path) -> None:
    """SIGHUP: logrotate moved the log file away; write to a new one at its path."""
    from satchel import logs

    logs.reopen(path)
    log.info("Reopened the log file %s", path)


def _graceful_exit(signum: int) -> None:
    """Leave the loop's run: aiohttp then stops listening, drains and cleans up."""
    log.info("%s: stopping", signal.Signals(signum).name)
    raise web.GracefulExit()


def _install_stack_dumps(loop: asyncio.AbstractEventLoop) -> None:
    """kill -USR1 <pid>: every thread's stack; kill -USR2 <pid>: every asyncio task's."""
    faulthandler.register(signal.SIGUSR1, all_threads=True)

    def dump_tasks() -> None:
        for task in asyncio.all_tasks(loop):
            buffer = io.StringIO()
            task.print_stack(file=buffer)
            log.warning("Task %s:\n%s", task.get_name(), buffer.getvalue())

    loop.add_signal_handler(signal.SIGUSR2, dump_tasks)


def _worker(settings: Settings) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent hands it on as SIGTERM
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # a HUP must not stop it while it starts
    _die_with_parent()
    _setup_logging(settings)
    _serve(settings, _loop_factory(settings))


def _tame_malloc() -> None:
    """glibc: a fixed mmap threshold (128 KiB) and two arenas. By default a freed 1 MiB
    read raises the threshold, later reads come from per-thread arenas and stay there:
    200 downloads from S3 left a process at 162 MB; with these, 137 MB at the peak and
    119 MB after (bench/RESULTS.md)."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):
        return  # not glibc


def _die_with_parent() -> None:
    """Linux: have the kernel send us SIGTERM when the parent dies, even by SIGKILL,
    so no orphaned worker keeps serving."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent's SIGTERM handler still stops us
    if os.getppid() == 1:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _serve_many(settings: Settings) -> int:
    """Start the workers, hand them SIGTERM (or SIGINT) to drain, and wait for them.

    A second signal kills them. With metrics, the workers count into files in a
    folder of their own (prometheus-client's multiprocess mode), removed at the end.
    """
    folder = tempfile.mkdtemp(prefix="satchel-metrics-") if settings.metrics else None
    if folder is not None:  # the workers' prometheus-client reads it as it is imported
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    ctx = multiprocessing.get_context("spawn")
    workers: list[Any] = [
        ctx.Process(target=_worker, args=(settings,), name=f"satchel-{n}")
        for n in range(settings.workers)
    ]
    signals = 0

    def stop(_signum: int, _frame: object) -> None:
        nonlocal signals
        signals += 1
        for w in workers:
            if w.is_alive():
                os.kill(w.pid, signal.SIGTERM if signals == 1 else signal.SIGKILL)

    def reopen(_signum: int, _frame: object) -> None:
        if settings.log_file is None:
            return  # nothing to reopen
        _reopen_log(settings.log_file)
        for w in workers:
            if w.is_alive():
                os.kill(w.pid, signal.SIGHUP)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reopen)
    for w in workers:
        w.start()
    url = f"http://{settings.host}:{settings.port}"
    print(f"======== Running on {url} ({settings.workers} workers) ========")
    try:
        for pid in _reaped(workers, settings.drain_timeout + 2 * GRACE + 10, lambda: signals > 0):
            if folder is not None:  # its in-progress gauges no longer count
                from prometheus_client.multiprocess import mark_process_dead

                mark_process_dead(pid, folder)  # type: ignore[no-untyped-call]
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if signals else 1


def _reaped(workers: list[Any], deadline: float, stopping: Callable[[], bool]) -> Iterator[int]:
    """The pid of each worker as it exits; those still running ``deadline`` s after a
    signal asked them to stop are killed. A worker that dies on its own leaves the
    others serving."""
    running = {w.sentinel: w for w in workers}
    asked: float | None = None
    while running:
        if asked is None and stopping():
            asked = time.monotonic()
        if asked is not None and time.monotonic() > asked + deadline:
            for w in running.values():
                w.kill()
        for sentinel in multiprocessing.connection.wait(list(running), timeout=1.0):
            gone = running.pop(sentinel)
            gone.join()
            yield gone.pid
