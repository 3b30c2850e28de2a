"""Settings: command-line flags > SATCHEL_* environment > .env file > defaults.

Parsed and validated once at start; then passed explicitly. Nothing reads
``os.environ`` after this module has built a :class:`Settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from satchel.clients import parse_networks
from satchel.errors import ConfigError
from satchel.throttle import Rates

MiB = 1024 * 1024


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SATCHEL_", env_file=".env", extra="ignore", frozen=True
    )

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    photos: Path = Path("photos")
    data: Path = Path("data")
    db: str | None = Field(None, repr=False)
    delay: float = Field(0.0, ge=0, le=60)
    chunk_size: int = Field(MiB, ge=4096, le=64 * MiB)
    verbose: bool = False
    access_log: bool = True
    workers: int = Field(1, ge=1, le=64)
    sendfile: bool = True
    send_timeout: float = Field(60.0, gt=0, le=3600)
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    # File storage with links
    public_url: str | None = None  # base for links; default: the request's own origin
    upload_token: Annotated[tuple[str, ...], NoDecode] = Field((), repr=False)
    upload_token_file: Path | None = None
    max_upload_size: int = Field(10 * 1024**3, ge=1)
    disk_reserve: int = Field(256 * MiB, ge=0)
    read_timeout: float = Field(60.0, gt=0, le=3600)
    default_max_days: int = Field(7, ge=1)
    max_days: int = Field(30, ge=1)
    default_max_downloads: int | None = Field(None, ge=1)
    max_downloads: int | None = Field(None, ge=1)
    purge_interval: float = Field(60.0, gt=0)
    tus_expiry_hours: float = Field(24.0, gt=0, le=24 * 365)
    # Speed limits, bytes a second (None: no limit)
    download_rate: int | None = Field(None, ge=1024)
    upload_rate: int | None = Field(None, ge=1024)
    client_download_rate: int | None = Field(None, ge=1024)
    client_upload_rate: int | None = Field(None, ge=1024)
    total_download_rate: int | None = Field(None, ge=1024)
    total_upload_rate: int | None = Field(None, ge=1024)
    burst: int = Field(0, ge=0)
    trusted_proxy: Annotated[tuple[str, ...], NoDecode] = ()
    proxy_header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for"
    max_connections_per_client: int | None = Field(None, ge=1)
    max_archive_streams: int | None = Field(None, ge=1)

    @field_validator(
        "max_upload_size",
        "disk_reserve",
        "chunk_size",
        "download_rate",
        "upload_rate",
        "client_download_rate",
        "client_upload_rate",
        "total_download_rate",
        "total_upload_rate",
        "burst",
        mode="before",
    )
    @classmethod
    def _size(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("upload_token", "trusted_proxy", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        return (
            tuple(t.strip() for t in value.split(",") if t.strip())
            if isinstance(value, str)
            else value
        )

    @field_validator("trusted_proxy")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_networks(value)
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/") if value else value

    @field_validator("db")
    @classmethod
    def _db_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {exc}") from exc
        if url.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
            raise ValueError("use sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DB")
        return value

    def upload_tokens(self) -> frozenset[str]:
        """Tokens from --upload-token and --upload-token-file (one a line, # comments)."""
        tokens = set(self.upload_token)
        if self.upload_token_file is not None:
            text = self.upload_token_file.read_text()
            tokens |= {t for line in text.splitlines() if (t := line.split("#")[0].strip())}
        return frozenset(tokens)

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
    """Build settings; ``overrides`` (the flags given) win over env and .env."""
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid setting: {problems}") from exc


def check_paths(settings: Settings) -> None:
    """Fail before binding when the folders or the settings cannot work."""
    if settings.default_max_days > settings.max_days:
        raise ConfigError("default_max_days is larger than max_days")
    if (
        settings.max_downloads is not None
        and settings.default_max_downloads is not None
        and settings.default_max_downloads > settings.max_downloads
    ):
        raise ConfigError("default_max_downloads is larger than max_downloads")
    if settings.upload_token_file is not None:
        try:
            settings.upload_tokens()
        except OSError as exc:
            raise ConfigError(f"cannot read upload token file: {exc}") from exc
    if not settings.photos.is_dir():
        raise ConfigError(
            f"photos folder {str(settings.photos)!r} does not exist or is not a folder"
        )
    try:
        settings.data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data folder {str(settings.data)!r}: {exc}") from exc
