"""Settings: flags > SATCHEL_* env > .env > defaults, validated once."""

from __future__ import annotations

from pathlib import Path

import pytest

from satchel.config import Settings, check_paths, load_settings
from satchel.errors import ConfigError


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings()
    assert (s.host, s.port, s.photos, s.delay, s.workers, s.sendfile) == (
        "127.0.0.1", 8080, Path("photos"), 0.0, 1, True,
    )  # fmt: skip
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path / 'data' / 'satchel.sqlite3'}"


def test_flags_beat_env_beat_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SATCHEL_PORT=7000\nSATCHEL_DELAY=0.5\nSATCHEL_WORKERS=3\n")
    monkeypatch.setenv("SATCHEL_PORT", "7100")
    monkeypatch.setenv("SATCHEL_DELAY", "0.25")
    s = load_settings(port=7200)
    assert (s.port, s.delay, s.workers) == (7200, 0.25, 3)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"port": 70000}, "port"),
        ({"delay": -1}, "delay"),
        ({"chunk_size": 10}, "chunk_size"),
        ({"workers": 0}, "workers"),
        ({"db": "mysql://x"}, "db"),
        ({"db": "::nonsense::"}, "db"),
    ],
)
def test_bad_values_are_one_clear_error(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(**overrides)


def test_bad_env_value_names_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SATCHEL_PORT", "eighty")
    with pytest.raises(ConfigError, match="port"):
        load_settings()


def test_missing_photos_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        check_paths(load_settings(photos=tmp_path / "nope", data=tmp_path / "d"))


def test_database_password_is_masked(tmp_path: Path) -> None:
    s = load_settings(db="postgresql+asyncpg://u:secret@h/db")
    assert "secret" not in s.db_url_masked
    assert "secret" not in repr(s)


def test_settings_are_frozen() -> None:
    with pytest.raises(Exception, match="frozen"):
        Settings().port = 1  # type: ignore[misc]
