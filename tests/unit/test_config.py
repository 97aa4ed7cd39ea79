"""Settings: environment and `.env` are read (never written); a bad value is one clear line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from schwab_stream.config import Settings, load_settings
from schwab_stream.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No SCHWAB_* or REDIS_URL from the developer's shell, and a cwd without a `.env`."""
    for name in list(os.environ):
        if name.upper().startswith(("SCHWAB_", "REDIS_URL")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults() -> None:
    settings = load_settings()
    assert settings.callback_url == "https://127.0.0.1:8182"
    assert settings.api_base_url == "https://api.schwabapi.com"
    assert settings.token_refresh_margin == 300
    assert settings.redis_prefix == "schwab"


def test_env_file_is_read_and_left_byte_for_byte(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    content = b"SCHWAB_APP_KEY=key-from-file\nSCHWAB_APP_SECRET=secret-from-file\n# comment\n"
    env.write_bytes(content)
    settings = load_settings()
    assert settings.app_key == "key-from-file"
    assert settings.app_secret.get_secret_value() == "secret-from-file"
    assert "secret-from-file" not in repr(settings)
    assert env.read_bytes() == content
    assert sorted(p.name for p in tmp_path.iterdir()) == [".env"]


def test_environment_beats_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("SCHWAB_TOKEN_REFRESH_MARGIN=100\n")
    monkeypatch.setenv("SCHWAB_TOKEN_REFRESH_MARGIN", "200")
    assert load_settings().token_refresh_margin == 200


def test_trailing_slash_of_base_url_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHWAB_API_BASE_URL", "http://127.0.0.1:9999/")
    assert load_settings().api_base_url == "http://127.0.0.1:9999"


def test_callback_url_is_kept_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schwab compares it with the registered callback, trailing slash included (issue #14)."""
    for url in ("https://127.0.0.1:8182/", "https://127.0.0.1:8182/cb/", "https://127.0.0.1:8182"):
        monkeypatch.setenv("SCHWAB_CALLBACK_URL", url)
        assert load_settings().callback_url == url


def test_token_path_that_is_a_folder_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SCHWAB_TOKEN_PATH", str(tmp_path))
    with pytest.raises(ConfigError, match=r"SCHWAB_TOKEN_PATH: .* is a folder"):
        load_settings()


def test_bad_port_message_names_no_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:99999/0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert "hunter2" not in str(info.value)
    assert "REDIS_URL: has a port that is not a number from 1 to 65535" in str(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SCHWAB_TOKEN_REFRESH_MARGIN", "soon"),
        ("SCHWAB_TOKEN_REFRESH_MARGIN", "1800"),
        ("SCHWAB_TOKEN_REFRESH_MARGIN", "-1"),
        ("SCHWAB_API_BASE_URL", "ftp://example.com"),
        ("SCHWAB_CALLBACK_URL", "127.0.0.1:8182"),
        ("REDIS_URL", "http://localhost"),
        ("SCHWAB_METRICS_PORT", "70000"),
        ("SCHWAB_LOG_LEVEL", "LOUD"),
        ("SCHWAB_ACCT_ACTIVITY", "maybe"),
        # issue #14: each of these used to pass, then fail later in a traceback or a retry loop
        ("REDIS_URL", "redis://127.0.0.1:99999/0"),
        ("REDIS_URL", "redis://127.0.0.1:abc/0"),
        ("REDIS_URL", "redis://[::1:6379"),
        ("SCHWAB_API_BASE_URL", "http://127.0.0.1:abc"),
        ("SCHWAB_API_BASE_URL", "http://127.0.0.1:99999"),
        ("SCHWAB_CALLBACK_URL", "https://[::1:8182"),
        ("SCHWAB_TOKEN_PATH", ""),
        ("SCHWAB_TOKEN_PATH", "/"),
        ("SCHWAB_WATCHDOG_SECONDS", "inf"),
        ("SCHWAB_WATCHDOG_SECONDS", "1e400"),
        ("SCHWAB_WATCHDOG_SECONDS", "nan"),
        ("SCHWAB_WATCHDOG_SECONDS", "86400"),
        ("SCHWAB_COMMAND_TIMEOUT", "inf"),
        ("SCHWAB_RECONNECT_MAX_DELAY", "Infinity"),
        ("SCHWAB_EXPIRY_HOOK_TIMEOUT", "nan"),
        ("SCHWAB_TOKEN_REFRESH_MARGIN", "nan"),
        ("SCHWAB_LEASE_TTL", "inf"),
        ("SCHWAB_REDIS_UNHEALTHY_SECONDS", "0"),
        ("SCHWAB_REDIS_PREFIX", "x}{"),  # on a cluster: a stream and its latest key apart
        ("SCHWAB_REDIS_UNHEALTHY_SECONDS", "nan"),
        ("SCHWAB_STREAM_MAXLEN", "99999999999999999999"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert name in message
    assert "\n" not in message
    assert "Traceback" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_bad_value_in_env_file_is_named_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SCHWAB_STREAM_MAXLEN=ten\n")
    with pytest.raises(ConfigError, match="SCHWAB_STREAM_MAXLEN"):
        load_settings()


def test_two_bad_values_both_named_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHWAB_METRICS_PORT", "-5")
    monkeypatch.setenv("SCHWAB_WATCHDOG_SECONDS", "0")
    with pytest.raises(ConfigError) as info:
        load_settings()
    message = str(info.value)
    assert "SCHWAB_METRICS_PORT" in message and "SCHWAB_WATCHDOG_SECONDS" in message
    assert "\n" not in message


def test_settings_repr_hides_the_app_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHWAB_APP_SECRET", "very-secret-value")
    settings = Settings()
    assert "very-secret-value" not in repr(settings) + str(settings)


def test_unknown_schwab_names_in_env_and_dotenv_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from schwab_stream.config import unknown_setting_names

    for name in [n for n in os.environ if n.upper().startswith("SCHWAB_")]:
        monkeypatch.delenv(name)
    env_file = tmp_path / ".env"
    env_file.write_text("SCHWAB_LEVELONE_EQUITY=AAPL\nSCHWAB_APP_KEY=k\n")
    monkeypatch.setenv("SCHWAB_NASDAQ_BOOKS", "AAPL")
    monkeypatch.setenv("SCHWAB_NASDAQ_BOOK", "AAPL")
    monkeypatch.setenv("SCHWAB_STREAM_REDIS_SERVER", "/bin/true")
    assert unknown_setting_names(env_file) == ["SCHWAB_LEVELONE_EQUITY", "SCHWAB_NASDAQ_BOOKS"]


def test_keys_outside_their_services_format_are_named_with_the_right_one() -> None:
    """Every service's keys, not only options (#14: `ES`, `EURUSD`, `VOLUME` were accepted
    silently and never got data); the formats themselves: tests/unit/test_symbols.py."""
    from schwab_stream.config import key_problems

    subs = {
        "LEVELONE_OPTIONS": ["AAPL  261218C00200000", "AAPL"],
        "LEVELONE_EQUITIES": ["AAPL", "MSFT"],
        "LEVELONE_FUTURES": ["ES", "/ES"],
        "LEVELONE_FOREX": ["EURUSD"],
        "SCREENER_EQUITY": ["VOLUME"],
    }
    problems = key_problems(subs)
    assert len(problems) == 4
    assert [p.split(" key ")[0] for p in problems] == [
        "LEVELONE_OPTIONS",
        "LEVELONE_FUTURES",
        "LEVELONE_FOREX",
        "SCREENER_EQUITY",
    ]
    assert "/ES" in problems[1] and "EUR/USD" in problems[2]


def test_a_malformed_key_in_the_settings_stops_run_unless_key_check_is_warn(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from tests.env import clean_env

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "schwab_stream", "run"],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={
                **clean_env(),
                "SCHWAB_APP_KEY": "k",
                "SCHWAB_APP_SECRET": "s",
                "SCHWAB_TOKEN_PATH": str(tmp_path / "token.json"),
                "REDIS_URL": "redis://127.0.0.1:1/0",
                "SCHWAB_LEVELONE_FUTURES": "ES",
                **env,
            },
            timeout=60,
        )

    strict = run()
    assert strict.returncode == 2
    assert "LEVELONE_FUTURES key 'ES'" in strict.stderr and "/ES" in strict.stderr
    assert "SCHWAB_KEY_CHECK=warn" in strict.stderr and "Traceback" not in strict.stderr
    bad_setting = run(SCHWAB_KEY_CHECK="maybe")
    assert bad_setting.returncode == 2 and "SCHWAB_KEY_CHECK" in bad_setting.stderr


def test_max_frame_bytes_is_a_bounded_setting() -> None:
    base = {"app_key": "k", "app_secret": "s"}
    assert Settings(_env_file=None, **base).max_frame_bytes == 8 * 1024 * 1024  # type: ignore[arg-type]
    assert Settings(_env_file=None, max_frame_bytes=1 << 20, **base).max_frame_bytes == 1 << 20  # type: ignore[arg-type]
    for bad in (0, 1024, 1 << 40):
        with pytest.raises(ValidationError):
            Settings(_env_file=None, max_frame_bytes=bad, **base)  # type: ignore[arg-type]
