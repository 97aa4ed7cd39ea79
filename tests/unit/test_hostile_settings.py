"""Hostile input (issue #14): token files and settings values that are nested, huge, non-finite or
of the wrong type. Each is reported once, in one line, with a documented exit code: never a
traceback (RecursionError, OverflowError, OSError), never accepted to fail later."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schwab_stream.auth.token_store import REFRESH_TOKEN_LIFETIME, TokenStore, import_schwab_py
from schwab_stream.cli import main
from schwab_stream.config import load_settings
from schwab_stream.errors import ConfigError, ExitCode, TokenFileError
from schwab_stream.telemetry import logging as tlog

DEEP = "[" * 1000 + "]" * 1000
DEEPER = "[" * 100_000 + "]" * 100_000


@pytest.fixture(autouse=True)
def _forget_generated_secrets() -> Iterator[None]:
    """Tokens read from the generated files ("_tok", "grant", ...) are registered as secrets
    for redaction, process-wide; they must not mask words in later tests' log lines."""
    saved, pattern = set(tlog._secrets), tlog._secret_re
    yield
    with tlog._secrets_lock:
        tlog._secrets.clear()
        tlog._secrets.update(saved)
        tlog._secret_re = pattern


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in list(os.environ):
        if name.upper().startswith(("SCHWAB_", "REDIS_URL")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SCHWAB_APP_KEY", "key")
    monkeypatch.setenv("SCHWAB_APP_SECRET", "secret")
    # Nothing answers here: a refresh that got as far as the network would fail differently.
    monkeypatch.setenv("SCHWAB_API_BASE_URL", "http://127.0.0.1:9")
    return tmp_path


def ours(**changes: object) -> str:
    """Our token file's JSON text, with `changes` spliced in as raw JSON text."""
    now = time.time()
    fields: dict[str, str] = {
        "format": '"schwab-stream-token"',
        "version": "1",
        "access_token": '"AT"',
        "refresh_token": '"RT"',
        "access_expires_at": repr(now + 1800),
        "login_at": repr(now),
        "refresh_expires_at": repr(now + REFRESH_TOKEN_LIFETIME),
        **{key: str(value) for key, value in changes.items()},
    }
    return "{" + ", ".join(f'"{key}": {value}' for key, value in fields.items()) + "}"


def schwab_py(created: str = repr(time.time()), expires_at: str = repr(time.time() + 1800)) -> str:
    token = f'{{"access_token": "AT", "refresh_token": "RT", "expires_at": {expires_at}}}'
    return f'{{"creation_timestamp": {created}, "token": {token}}}'


HOSTILE_FILES: dict[str, str] = {
    "nested_1000": DEEP,
    "nested_100000": DEEPER,
    "nested_field": ours(scope=DEEP),
    "nested_version": ours(version=DEEP),
    "infinity": ours(refresh_expires_at="Infinity"),
    "nan": ours(access_expires_at="NaN"),
    "minus_infinity": ours(login_at="-Infinity"),
    "huge": ours(refresh_expires_at="1e20"),
    "negative": ours(login_at="-1e18"),
    "overflowing_int": ours(access_expires_at="9" * 400),
    "too_long_int": ours(access_expires_at="9" * 5000),
    "bool_time": ours(login_at="true"),
    "list_time": ours(login_at="[1]"),
    "string_inf": ours(refresh_expires_at='"inf"'),
}

SCHWAB_PY_FILES: dict[str, str] = {
    "nested": DEEP,
    "created_infinity": schwab_py(created="Infinity"),
    "created_huge": schwab_py(created="1e20"),
    "created_negative": schwab_py(created="-1e18"),
    "created_huge_int": schwab_py(created="9" * 400),
    "expires_nan": schwab_py(expires_at="NaN"),
    "expires_huge": schwab_py(expires_at="1e20"),
}


def one_line(result: Result) -> str:
    assert "Traceback" not in result.output + result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("content", HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
def test_a_hostile_token_file_is_a_token_file_error_naming_the_file(
    tmp_path: Path, content: str
) -> None:
    """`run` reads the file through TokenStore.load too: a TokenFileError is how it reports any
    token-file problem."""
    store = TokenStore(tmp_path / "token.json")
    store.path.write_text(content)
    with pytest.raises(TokenFileError) as info:
        store.load()
    message = str(info.value)
    assert str(store.path) in message
    assert "\n" not in message and len(message) < 400


@pytest.mark.parametrize("content", HOSTILE_FILES.values(), ids=HOSTILE_FILES.keys())
@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["refresh"]])
def test_token_commands_say_a_hostile_file_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, command: list[str]
) -> None:
    path = tmp_path / "token.json"
    path.write_text(content)
    monkeypatch.setenv("SCHWAB_TOKEN_PATH", str(path))
    result = CliRunner().invoke(main, ["token", *command])
    if command == ["status", "--json"]:
        assert "Traceback" not in result.output + result.stderr
        assert json.loads(result.stdout)["login_needed"] is True
    else:
        assert str(path) in one_line(result)
    # `token status` says a login is needed (3); `token refresh` that it failed (1)
    expected = ExitCode.FAILED if command == ["refresh"] else ExitCode.LOGIN_NEEDED
    assert result.exit_code == expected


@pytest.mark.parametrize("content", SCHWAB_PY_FILES.values(), ids=SCHWAB_PY_FILES.keys())
def test_token_import_says_a_hostile_schwab_py_file_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    source = tmp_path / "schwab-py.json"
    source.write_text(content)
    with pytest.raises(TokenFileError):
        import_schwab_py(source)
    monkeypatch.setenv("SCHWAB_TOKEN_PATH", str(tmp_path / "ours.json"))
    result = CliRunner().invoke(main, ["token", "import", str(source)])
    assert str(source) in one_line(result)
    assert result.exit_code == ExitCode.FAILED
    assert not (tmp_path / "ours.json").exists()


# --- generated: any JSON value in any field of the token file ------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # with inf and nan: json.dumps writes Infinity / NaN, as a hostile file would
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
FIELDS = (
    "version",
    "access_token",
    "refresh_token",
    "access_expires_at",
    "login_at",
    "refresh_expires_at",
    "token_type",
    "scope",
    "id_token",
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(field=st.sampled_from(FIELDS), value=json_values, depth=st.sampled_from([0, 0, 2000]))
def test_any_value_in_any_field_loads_or_is_one_token_file_error(
    tmp_path: Path, field: str, value: object, depth: int
) -> None:
    text = json.dumps(value)
    text = "[" * depth + text + "]" * depth
    store = TokenStore(tmp_path / "generated.json")
    store.path.write_text(ours(**{field: text}))
    try:
        record = store.load()
    except TokenFileError as exc:
        assert "\n" not in str(exc) and str(store.path) in str(exc)
        return
    for when in (record.access_expires_at, record.login_at, record.refresh_expires_at):
        assert 0 <= when <= 1e10  # every time a loaded record holds can be formatted


# --- settings ---------------------------------------------------------------------------------

FLOAT_SETTINGS = (
    "SCHWAB_WATCHDOG_SECONDS",
    "SCHWAB_COMMAND_TIMEOUT",
    "SCHWAB_RECONNECT_MAX_DELAY",
    "SCHWAB_EXPIRY_HOOK_TIMEOUT",
    "SCHWAB_TOKEN_REFRESH_MARGIN",
    "SCHWAB_LEASE_TTL",
    "SCHWAB_REDIS_UNHEALTHY_SECONDS",
)
INT_SETTINGS = ("SCHWAB_STREAM_MAXLEN", "SCHWAB_QUEUE_SIZE", "SCHWAB_METRICS_PORT")
hostile_numbers = (
    st.sampled_from(
        [
            "inf",
            "-inf",
            "Infinity",
            "nan",
            "NaN",
            "1e400",
            "-1e400",
            "1e20",
            "99999999999999999999",
            "9" * 5000,
            "-1",
            "0x10",
            "",
            " ",
            "[1]",
            "true",
            "1_000",
            "١٢",
            "\x00",
        ]
    )
    | st.floats().map(repr)
    | st.integers().map(str)
    | st.text(max_size=8)
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=st.sampled_from(FLOAT_SETTINGS + INT_SETTINGS), value=hostile_numbers)
def test_a_number_setting_is_sane_or_one_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    if "\x00" in value:
        return  # the environment cannot hold a NUL
    with monkeypatch.context() as patched:  # one example's value never leaks into the next
        patched.setenv(name, value)
        try:
            loaded = load_settings(_env_file=None)
        except ConfigError as exc:
            assert "\n" not in str(exc)
            assert str(exc).startswith(f"invalid settings: {name}: ") and ";" not in str(exc)
            return
    field = name.removeprefix("SCHWAB_").lower()
    number = getattr(loaded, field)
    assert number == number and abs(number) < 1e10, (name, value, number)  # finite and sane


#: A bad value of each kind the review tried: a URL's port or IPv6 literal, an empty or folder
#: token path, a number past its range.
HOSTILE_SETTINGS = [
    ("REDIS_URL", "redis://127.0.0.1:99999"),
    ("REDIS_URL", "redis://[::1:6379"),
    ("SCHWAB_TOKEN_PATH", ""),
    ("SCHWAB_TOKEN_PATH", "/"),
    ("SCHWAB_API_BASE_URL", "http://127.0.0.1:abc"),
    ("SCHWAB_STREAM_MAXLEN", "99999999999999999999"),
]


@pytest.mark.parametrize(("name", "value"), [*HOSTILE_SETTINGS, ("SCHWAB_WATCHDOG_SECONDS", "inf")])
@pytest.mark.parametrize(
    "command", [["token", "status"], ["token", "refresh"], ["login", "--manual"]]
)
def test_a_hostile_setting_is_one_line_from_every_command(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, command: list[str]
) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, command, input="")
    line = one_line(result)
    assert name in line
    # A bad setting: `run` exits 2; the one-shot commands fold it into their documented 1.
    assert result.exit_code == ExitCode.FAILED


@pytest.mark.parametrize(
    ("name", "value"),
    [
        *HOSTILE_SETTINGS,
        ("SCHWAB_WATCHDOG_SECONDS", "1e400"),
        ("SCHWAB_COMMAND_TIMEOUT", "nan"),
    ],
)
def test_run_refuses_a_hostile_setting_with_exit_2(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["run"])
    line = one_line(result)
    assert line.startswith(f"schwab-stream run: invalid settings: {name}: ")
    assert result.exit_code == ExitCode.BAD_SETTINGS
