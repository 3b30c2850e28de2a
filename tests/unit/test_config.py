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
        ({"chunk_size": 10}, "--chunk-size"),
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
    s = load_settings(db="postgresql+asyncpg://u:hunter2pw@h/db")
    assert "hunter2pw" not in s.db_url_masked
    assert "hunter2pw" not in repr(s)


def test_settings_are_frozen() -> None:
    with pytest.raises(AttributeError, match="cannot assign"):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("512K", 512 * 1024), ("10M", 10 * 2**20), ("2G", 2 * 2**30),
     ("1.5g", 3 * 2**29), ("64KiB", 64 * 1024), ("1MB", 2**20)],
)  # fmt: skip
def test_sizes_take_binary_suffixes(text: str, size: int) -> None:
    assert load_settings(max_upload_size=text).max_upload_size == size


def test_a_bad_size_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="not a size"):
        load_settings(max_upload_size="lots")


def test_upload_tokens_from_flags_env_and_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# CMS\nalpha\n\nbeta  # backup job\n")
    monkeypatch.setenv("SATCHEL_UPLOAD_TOKEN", "gamma,delta")
    assert load_settings(upload_token_file=tokens).upload_tokens() == {
        "alpha", "beta", "gamma", "delta",
    }  # fmt: skip
    assert load_settings(upload_token=("only",)).upload_tokens() == {"only"}
    assert load_settings(upload_token=["a", "b"]).upload_token == ("a", "b")  # as argparse gives
    assert "gamma" not in repr(load_settings())


def test_webhooks_need_a_secret_to_sign_with(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    settings = load_settings(photos=tmp_path / "p", hook_url="http://127.0.0.1:9/hooks")
    with pytest.raises(ConfigError, match="--hook-secret"):
        check_paths(settings)


def test_cors_origins_are_kept_as_browsers_send_them() -> None:
    settings = load_settings(cors_origin="HTTPS://CMS.Example:8443/, *")
    assert settings.cors_origin == ("https://cms.example:8443", "*")


def test_default_retention_must_fit_the_maximum(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    with pytest.raises(ConfigError, match="--default-max-days"):
        check_paths(load_settings(photos=tmp_path / "p", default_max_days=40, max_days=30))


def test_speed_limits_take_suffixes_and_lists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SATCHEL_TRUSTED_PROXY", "10.0.0.1, 192.168.0.0/16")
    monkeypatch.setenv("SATCHEL_CLIENT_UPLOAD_RATE", "2M")
    s = load_settings(download_rate="100K", total_download_rate="1G", burst="64K")
    rates = s.rates()
    assert (rates.download, rates.client_upload, rates.total_download, rates.burst) == (
        100 * 1024, 2 * 1024**2, 1024**3, 64 * 1024,
    )  # fmt: skip
    assert rates.upload is None and rates.max_connections_per_client is None
    assert s.trusted_proxy == ("10.0.0.1", "192.168.0.0/16")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"download_rate": "fast"}, "--download-rate"),
        ({"upload_rate": "100"}, "--upload-rate"),  # below 1 KiB/s
        ({"trusted_proxy": ("10.0.0.0/33",)}, "10.0.0.0/33"),
        ({"max_connections_per_client": 0}, "--max-connections-per-client"),
        ({"proxy_header": "x-real-ip"}, "--proxy-header"),
        ({"cors_origin": ("https://cms.example/path",)}, "--cors-origin"),
        ({"hook_url": ("ftp://h/",)}, "--hook-url"),
        ({"hook_secret": "whsec_c2hvcnQ="}, "--hook-secret"),  # 5 bytes
    ],
)
def test_bad_limits_are_refused(overrides: dict[str, object], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        load_settings(**overrides)


def test_dotenv_syntax_and_yes_no_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "# Satchel\n\nexport SATCHEL_HOST=0.0.0.0\nSATCHEL_PUBLIC_URL='https://f.example/'\n"
        'SATCHEL_SENDFILE="off"\nSATCHEL_ACCESS_LOG=no  # quiet\nSATCHEL_MAX_DOWNLOADS=\n'
    )
    s = load_settings()
    assert (s.host, s.public_url, s.sendfile, s.access_log, s.max_downloads) == (
        "0.0.0.0", "https://f.example", False, False, None,
    )  # fmt: skip
    monkeypatch.setenv("SATCHEL_SENDFILE", "maybe")
    with pytest.raises(
        ConfigError,
        match=r"SATCHEL_SENDFILE \(in the environment; the flag --sendfile\): not a yes/no value",
    ):
        load_settings()


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(ConfigError, match="--port: .*; --workers: .*; --colour: no such setting"):
        load_settings(port="eighty", workers=0, colour="blue")


def test_link_secrets_from_flags_and_file_are_checked(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    secrets = tmp_path / "secrets"
    secrets.write_text("# rotated 2026-12\nnew-secret-0123456789\nold-secret-0123456789\n")
    settings = load_settings(photos=tmp_path / "p", link_secret_file=secrets)
    assert settings.link_secrets() == (b"new-secret-0123456789", b"old-secret-0123456789")
    assert "new-secret" not in repr(load_settings(link_secret=("new-secret-0123456789",)))
    check_paths(settings)
    with pytest.raises(ConfigError, match="at least 16 characters"):
        check_paths(load_settings(photos=tmp_path / "p", link_secret=("short",)))
    with pytest.raises(ConfigError, match="--require-signed-archives needs --link-secret"):
        check_paths(load_settings(photos=tmp_path / "p", require_signed_archives=True))
    with pytest.raises(ConfigError, match="--link-secret-file: cannot read it"):
        check_paths(load_settings(photos=tmp_path / "p", link_secret_file=tmp_path / "none"))
