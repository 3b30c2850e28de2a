"""Settings: command-line flags > SATCHEL_* environment > .env file > defaults.

Parsed and validated once at start; then passed explicitly. Nothing reads
``os.environ`` after this module has built a :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from satchel.cors import parse_origins
from satchel.errors import ConfigError
from satchel.hooks.rules import parse_secret
from satchel.links import MIN_SECRET
from satchel.peers import parse_networks
from satchel.storage.s3 import S3Location  # boto3 is imported only to make a client
from satchel.throttle import Rates

MiB = 1024 * 1024

Convert = Callable[[Any], Any]


def _setting(default: Any, convert: Convert, *, secret: bool = False) -> Any:
    return field(default=default, metadata={"convert": convert}, repr=not secret)


def _number(
    kind: type[int] | type[float],
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    size: bool = False,
    optional: bool = False,
) -> Convert:
    """A converter to ``kind`` within bounds; ``size`` takes 512K, 10M, 2G."""

    def convert(value: Any) -> int | float | None:
        if optional and value in (None, ""):
            return None
        if isinstance(value, str):
            text = value.strip()
            if size:
                value = parse_size(text)
            else:
                try:
                    value = kind(text)
                except ValueError:
                    what = "an integer" if kind is int else "a number"
                    raise ValueError(f"not {what}: {text!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"not a number: {value!r}")
        if kind is int and value != int(value):
            raise ValueError(f"not an integer: {value!r}")
        number = kind(value)
        if ge is not None and number < ge:
            raise ValueError(f"must be at least {ge:g}")
        if gt is not None and number <= gt:
            raise ValueError(f"must be more than {gt:g}")
        if le is not None and number > le:
            raise ValueError(f"must be at most {le:g}")
        return number

    return convert


def _text(value: Any) -> str:
    return str(value)


def _path(value: Any) -> Path:
    return Path(value)


def _optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE | _FALSE:
        return text in _TRUE
    raise ValueError(f"not a yes/no value: {value!r}")


def _choice(*choices: str) -> Convert:
    def convert(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}; not {value!r}")
        return text

    return convert


def _list(value: Any) -> tuple[str, ...]:
    """A comma-separated list (env, .env) or a sequence (flags)."""
    items = value.split(",") if isinstance(value, str) else value
    return tuple(t.strip() for t in items if t.strip())


def _hook_urls(value: Any) -> tuple[str, ...]:
    urls = _list(value)
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://: {url!r}")
    return urls


def _hook_secret(value: Any) -> str | None:
    if value in (None, ""):
        return None
    parse_secret(str(value))
    return str(value)


def _origins(value: Any) -> tuple[str, ...]:
    return parse_origins(_list(value))


def _networks(value: Any) -> tuple[str, ...]:
    networks = _list(value)
    parse_networks(networks)
    return networks


def _http_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    if not text.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return text.rstrip("/")


def _photos(value: Any) -> Path | S3Location:
    """A local photos root, or an S3 bucket and prefix (s3://BUCKET/PREFIX)."""
    if isinstance(value, str) and value.startswith("s3://"):
        return S3Location.parse(value)
    return Path(value)


def _storage(value: Any) -> S3Location | None:
    """Where stored files and resumable uploads live: None for --data, or s3://B/P."""
    if value in (None, ""):
        return None
    return S3Location.parse(str(value))


def _redis_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    text = str(value)
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("use redis://HOST:PORT/DB, rediss://… or unix:///PATH")
    return text


def _db_url(value: Any) -> str | None:
    if value in (None, ""):
        return None
    try:
        url = make_url(str(value))
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from exc
    if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise ValueError("use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB")
    return str(value)


_RATE = _number(int, ge=1024, size=True, optional=True)


@dataclass(frozen=True)
class Settings:
    """Every setting, its default and its rule. A plain dataclass: pydantic-settings cost
    the serving process 12 MiB of its 80 MB budget (bench/RESULTS.md)."""

    host: str = _setting("127.0.0.1", _text)
    port: int = _setting(8080, _number(int, ge=1, le=65535))
    photos: Path | S3Location = _setting(Path("photos"), _photos)
    data: Path = _setting(Path("data"), _path)
    db: str | None = _setting(None, _db_url, secret=True)
    # Stored files and resumable uploads in an S3 bucket instead of --data/files
    storage: S3Location | None = _setting(None, _storage)
    s3_endpoint: str | None = _setting(None, _http_url)  # default: the AWS chain, or AWS
    s3_part_size: int = _setting(8 * MiB, _number(int, ge=5 * MiB, le=5 * 1024**3, size=True))
    s3_redirect: bool = _setting(False, _flag)  # downloads answered by a presigned URL
    delay: float = _setting(0.0, _number(float, ge=0, le=60))
    chunk_size: int = _setting(MiB, _number(int, ge=4096, le=64 * MiB, size=True))
    verbose: bool = _setting(False, _flag)
    access_log: bool = _setting(True, _flag)
    log_format: str = _setting("text", _choice("text", "json"))
    log_file: Path | None = _setting(None, _optional_path)  # reopened on SIGHUP
    workers: int = _setting(1, _number(int, ge=1, le=64))
    sendfile: bool = _setting(True, _flag)
    # a local photos root: inotify tells that a folder did not change, which spares a scan
    watch_folders: bool = _setting(True, _flag)
    send_timeout: float = _setting(60.0, _number(float, gt=0, le=3600))
    event_loop: str = _setting("auto", _choice("auto", "asyncio", "uvloop"))
    metrics: bool = _setting(True, _flag)  # GET /metrics and the per-request counting
    # SIGTERM: transfers in progress have this long to finish before they are cut
    drain_timeout: float = _setting(30.0, _number(float, ge=0, le=3600))
    # File storage with links
    public_url: str | None = _setting(None, _http_url)  # default: the request's origin
    upload_token: tuple[str, ...] = _setting((), _list, secret=True)
    upload_token_file: Path | None = _setting(None, _optional_path)
    max_upload_size: int = _setting(10 * 1024**3, _number(int, ge=1, size=True))
    disk_reserve: int = _setting(256 * MiB, _number(int, ge=0, size=True))
    read_timeout: float = _setting(60.0, _number(float, gt=0, le=3600))
    default_max_days: int = _setting(7, _number(int, ge=1))
    max_days: int = _setting(30, _number(int, ge=1))
    default_max_downloads: int | None = _setting(None, _number(int, ge=1, optional=True))
    max_downloads: int | None = _setting(None, _number(int, ge=1, optional=True))
    purge_interval: float = _setting(60.0, _number(float, gt=0))
    tus_expiry_hours: float = _setting(24.0, _number(float, gt=0, le=24 * 365))
    # Signed, expiring links: secrets (the first signs, all verify) and whether folder
    # archives are served by signed links only
    link_secret: tuple[str, ...] = _setting((), _list, secret=True)
    link_secret_file: Path | None = _setting(None, _optional_path)
    require_signed_archives: bool = _setting(False, _flag)
    # Speed limits, bytes a second (None: no limit)
    download_rate: int | None = _setting(None, _RATE)
    upload_rate: int | None = _setting(None, _RATE)
    client_download_rate: int | None = _setting(None, _RATE)
    client_upload_rate: int | None = _setting(None, _RATE)
    total_download_rate: int | None = _setting(None, _RATE)
    total_upload_rate: int | None = _setting(None, _RATE)
    burst: int = _setting(0, _number(int, ge=0, size=True))
    # Webhooks: endpoints told of files stored, deleted and expired, and uploads started
    hook_url: tuple[str, ...] = _setting((), _hook_urls)
    hook_secret: str | None = _setting(None, _hook_secret, secret=True)
    hook_retry_seconds: float = _setting(10.0, _number(float, gt=0, le=3600))
    # Origins whose pages may call Satchel (CORS); "*": any origin, downloads only
    cors_origin: tuple[str, ...] = _setting((), _origins)
    trusted_proxy: tuple[str, ...] = _setting((), _networks)
    proxy_header: str = _setting("x-forwarded-for", _choice("x-forwarded-for", "forwarded"))
    max_connections_per_client: int | None = _setting(None, _number(int, ge=1, optional=True))
    max_archive_streams: int | None = _setting(None, _number(int, ge=1, optional=True))
    # Client and total limits shared by every instance through this Redis
    limits_redis: str | None = _setting(None, _redis_url, secret=True)

    def upload_tokens(self) -> frozenset[str]:
        """Tokens from --upload-token and --upload-token-file (one a line, # comments)."""
        return frozenset(self.upload_token + _values_in(self.upload_token_file))

    def link_secrets(self) -> tuple[bytes, ...]:
        """Secrets from --link-secret, then --link-secret-file (one a line, # comments)."""
        return tuple(s.encode() for s in self.link_secret + _values_in(self.link_secret_file))

    def rates(self) -> Rates:
        return Rates(
            download=self.download_rate,
            upload=self.upload_rate,
            client_download=self.client_download_rate,
            client_upload=self.client_upload_rate,
            total_download=self.total_download_rate,
            total_upload=self.total_upload_rate,
            burst=self.burst,
            max_connections_per_client=self.max_connections_per_client,
            max_archive_streams=self.max_archive_streams,
        )

    @property
    def db_url(self) -> str:
        if self.db is not None:
            return self.db
        return f"sqlite+aiosqlite:///{(self.data / 'satchel.sqlite3').resolve()}"

    @property
    def db_url_masked(self) -> str:
        return make_url(self.db_url).render_as_string(hide_password=True)


_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """'1048576', '512K', '10M', '2G' (binary multiples; a trailing B or iB is allowed)."""
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    number, suffix = (value[:-1], value[-1]) if value[-1:] in "KMGT" else (value, "")
    try:
        return int(float(number) * _SUFFIXES[suffix])
    except (ValueError, KeyError) as exc:
        raise ValueError(f"not a size: {text!r} (use e.g. 512K, 10M, 2G)") from exc


def load_settings(**overrides: Any) -> Settings:
    """Build settings; ``overrides`` (the flags given) win over SATCHEL_* in the
    environment, which wins over SATCHEL_* in ./.env, which wins over the defaults."""
    dotenv = _read_dotenv(Path(".env"))
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in dataclasses.fields(Settings):
        key = f"SATCHEL_{f.name.upper()}"
        given, source = overrides.get(f.name), flag(f.name)
        if given is None:
            given = os.environ.get(key, dotenv.get(key))
            where = "the environment" if key in os.environ else "./.env"
            source = f"{key} (in {where}; the flag {flag(f.name)})"
        if given is None:
            continue
        try:
            values[f.name] = f.metadata["convert"](given)
        except ValueError as exc:
            problems.append(f"{source}: {exc}")
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(Settings)})
    problems += [f"{flag(name)}: no such setting" for name in unknown]
    if problems:
        raise ConfigError("; ".join(problems))
    return Settings(**values)


def flag(name: str) -> str:
    """The command-line flag of a setting: what a person typed, or can."""
    return "--" + name.replace("_", "-")


def _read_dotenv(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines, # comments, `export ` and quotes allowed."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    pairs = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        else:
            value = value.split(" #")[0].strip()
        pairs[key.strip()] = value
    return pairs


def _values_in(path: Path | None) -> tuple[str, ...]:
    """The values of a tokens or secrets file: one a line, after ``#`` a comment."""
    if path is None:
        return ()
    lines = path.read_text().splitlines()
    return tuple(value for line in lines if (value := line.split("#")[0].strip()))


def check_link_secrets(settings: Settings) -> None:
    """The link secrets can be read, are long enough, and exist where required."""
    try:
        secrets = settings.link_secrets()
    except OSError as exc:
        raise ConfigError(f"--link-secret-file: cannot read it: {exc}") from exc
    if any(len(s) < MIN_SECRET for s in secrets):
        raise ConfigError(f"--link-secret: a secret needs at least {MIN_SECRET} characters")
    if settings.require_signed_archives and not secrets:
        raise ConfigError("--require-signed-archives needs --link-secret (or -file)")


def check_paths(settings: Settings) -> None:
    """Fail before binding when the folders or the settings cannot work."""
    if settings.default_max_days > settings.max_days:
        raise ConfigError("--default-max-days is larger than --max-days")
    if (
        settings.max_downloads is not None
        and settings.default_max_downloads is not None
        and settings.default_max_downloads > settings.max_downloads
    ):
        raise ConfigError("--default-max-downloads is larger than --max-downloads")
    if settings.upload_token_file is not None:
        try:
            settings.upload_tokens()
        except OSError as exc:
            raise ConfigError(f"--upload-token-file: cannot read it: {exc}") from exc
    check_link_secrets(settings)
    if settings.hook_url and settings.hook_secret is None:
        raise ConfigError("--hook-url needs --hook-secret (whsec_ and base64), to sign events")
    if settings.limits_redis is not None:
        import redis

        try:
            redis.Redis.from_url(settings.limits_redis, socket_connect_timeout=5).ping()
        except (redis.RedisError, OSError) as exc:
            raise ConfigError(f"--limits-redis: cannot reach it: {exc}") from exc
    if isinstance(settings.photos, S3Location):
        from satchel.storage.s3 import connect

        try:
            connect(settings.s3_endpoint).head_bucket(Bucket=settings.photos.bucket)
        except Exception as exc:
            raise ConfigError(f"--photos {settings.photos}: cannot reach it: {exc}") from exc
    elif not settings.photos.is_dir():
        raise ConfigError(f"--photos: {str(settings.photos)!r} does not exist or is not a folder")
    try:
        settings.data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--data: cannot create {str(settings.data)!r}: {exc}") from exc
    if settings.s3_redirect and settings.storage is None:
        raise ConfigError("--s3-redirect needs --storage s3://…: files under --data have no URL")
    if settings.storage is not None:
        from satchel.storage.s3 import open_s3

        try:
            open_s3(settings.storage, settings.s3_endpoint, settings.s3_part_size).check()
        except Exception as exc:
            raise ConfigError(f"--storage {settings.storage}: cannot reach it: {exc}") from exc
