"""Settings: command-line flags > SATCHEL_* environment > .env file > defaults.

Parsed and validated once at start; then passed explicitly. Nothing reads
``os.environ`` after this module has built a :class:`Settings`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from satchel.errors import ConfigError

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
    workers: int = Field(1, ge=1, le=64)
    sendfile: bool = True
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"

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

    @property
    def db_url(self) -> str:
        if self.db is not None:
            return self.db
        return f"sqlite+aiosqlite:///{(self.data / 'satchel.sqlite3').resolve()}"

    @property
    def db_url_masked(self) -> str:
        return make_url(self.db_url).render_as_string(hide_password=True)


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
    """Fail before binding when the folders cannot work."""
    if not settings.photos.is_dir():
        raise ConfigError(
            f"photos folder {str(settings.photos)!r} does not exist or is not a folder"
        )
    try:
        settings.data.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create data folder {str(settings.data)!r}: {exc}") from exc
