"""Every command reads its exit code from the error (`ExitCode`), says the error in one stderr line
and never shows a traceback; the one-shot commands fold what they do not document into 1."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from schwab_stream.cli import main
from schwab_stream.cli.common import ONE_SHOT_EXIT_CODES, exits_on_error, one_shot_errors
from schwab_stream.errors import (
    AuthError,
    ConfigError,
    EmbeddedRedisError,
    ExitCode,
    LeaseLost,
    LoginRequiredError,
    SchwabStreamError,
    StreamStopped,
    TokenFileError,
)

ERRORS: list[SchwabStreamError] = [
    SchwabStreamError("it broke"),
    ConfigError("SCHWAB_X is bad"),
    TokenFileError("token file is corrupt"),
    LoginRequiredError("run `schwab-stream login`"),
    AuthError("Schwab did not answer"),
    StreamStopped("another session took over", code=12),
    LeaseLost("the lease is held by b"),
    EmbeddedRedisError("redis-server exited at start: Bad port"),
]


Decorator = Callable[[Callable[[], None]], Callable[[], None]]


def _command(exc: SchwabStreamError, decorate: Decorator) -> click.Command:
    @click.command()
    @decorate
    def failing() -> None:
        raise exc

    return failing


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: type(e).__name__)
def test_a_command_exits_with_the_errors_own_code_in_one_line(exc: SchwabStreamError) -> None:
    result = CliRunner().invoke(_command(exc, exits_on_error("run")), [])
    assert result.exit_code == exc.exit_code
    assert result.stderr == f"schwab-stream run: {exc}\n"
    assert isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("exc", ERRORS, ids=lambda e: type(e).__name__)
def test_one_shot_commands_exit_0_1_or_3_only(exc: SchwabStreamError) -> None:
    result = CliRunner().invoke(_command(exc, one_shot_errors), [])
    if isinstance(exc, LoginRequiredError):
        assert result.exit_code == ExitCode.LOGIN_NEEDED
        assert result.stderr == f"login needed: {exc}\n"
    elif isinstance(exc, StreamStopped):
        # ExitCode.TAKEN_OVER and LOGIN_NEEDED are one value (3); a one-shot command never
        # streams, so it never meets this error.
        assert result.exit_code == 3
    else:
        assert result.exit_code == ExitCode.FAILED
        assert result.stderr == f"error: {exc}\n"
    assert result.exit_code in ONE_SHOT_EXIT_CODES


def test_a_multi_line_message_is_still_one_line() -> None:
    exc = SchwabStreamError("first\nsecond")
    result = CliRunner().invoke(_command(exc, exits_on_error("demo")), [])
    assert result.stderr == "schwab-stream demo: first second\n"


def test_a_bug_keeps_its_traceback() -> None:
    @click.command()
    @exits_on_error("run")
    def buggy() -> None:
        raise KeyError("x")

    result = CliRunner().invoke(buggy, [])
    assert isinstance(result.exception, KeyError)


@pytest.fixture
def no_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty folder (no .env) and no SCHWAB_ or REDIS_ variables."""
    for name in list(os.environ):
        if name.upper().startswith(("SCHWAB_", "REDIS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_run_with_a_bad_setting_exits_2_in_one_line(
    no_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHWAB_TOKEN_REFRESH_MARGIN", "soon")
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == ExitCode.BAD_SETTINGS == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("schwab-stream run: ")
    assert "SCHWAB_TOKEN_REFRESH_MARGIN" in lines[0]


def test_run_without_an_app_key_exits_2_in_one_line_before_any_warning(
    no_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing to subscribe either: the missing key is still the one line (found by a
    fresh-clone trial, where a warning came first and the error was a log line)."""
    monkeypatch.delenv("SCHWAB_APP_KEY", raising=False)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == ExitCode.BAD_SETTINGS
    assert result.stderr.splitlines() == [
        "schwab-stream run: SCHWAB_APP_KEY is not set: put your Schwab app key in .env"
    ]


def test_token_refresh_with_a_bad_setting_exits_1_in_one_line(
    no_settings: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHWAB_TOKEN_REFRESH_MARGIN", "soon")
    result = CliRunner().invoke(main, ["token", "refresh"])
    assert result.exit_code == ExitCode.FAILED == 1  # token documents 0, 1 and 3 only
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")


def test_sim_on_a_busy_port_exits_2_in_one_line() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["sim", "--port", str(port)])
    assert result.exit_code == ExitCode.BAD_SETTINGS == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"schwab-stream sim: cannot listen on 127.0.0.1:{port}"
    )
