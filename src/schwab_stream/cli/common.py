"""What the commands share: an error becomes one stderr line and its exit code, the one-shot
commands' logging, the `--redis-url` check.

Exit codes come from the error itself (`SchwabStreamError.exit_code`, an `ExitCode`), never from
a literal in a command. Light on purpose: `run` imports this, and must start fast.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import click

from schwab_stream.errors import ExitCode, SchwabStreamError

if TYPE_CHECKING:
    from schwab_stream.config import Settings

P = ParamSpec("P")
R = TypeVar("R")

#: The codes of the one-shot commands (`login`, `token`): their documented contract is 0, 1, 3.
ONE_SHOT_EXIT_CODES: frozenset[ExitCode] = frozenset(
    {ExitCode.OK, ExitCode.FAILED, ExitCode.LOGIN_NEEDED}
)


def exit_code(exc: SchwabStreamError, allowed: Collection[ExitCode] | None = None) -> ExitCode:
    """`exc`'s exit code; one a command does not document (not in `allowed`) is FAILED."""
    code = exc.exit_code
    return code if allowed is None or code in allowed else ExitCode.FAILED


def report_error(
    exc: SchwabStreamError, command: str | None = None, allowed: Collection[ExitCode] | None = None
) -> ExitCode:
    """Say `exc` in one line on stderr; returns the code to exit with.

    With `command` the line is `schwab-stream COMMAND: message`; without, it starts with what it
    means for the person: `login needed: ...` (exit 3) or `error: ...` (the one-shot commands)."""
    code = exit_code(exc, allowed)
    if command is not None:
        prefix = f"schwab-stream {command}"
    else:
        prefix = "login needed" if code == ExitCode.LOGIN_NEEDED else "error"
    click.echo(f"{prefix}: {_one_line(str(exc))}", err=True)
    return code


def exits_on_error(
    command: str | None = None, allowed: Collection[ExitCode] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a click command: our own errors become `report_error`'s line and exit code,
    never a traceback. Anything else is a bug and keeps its traceback."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(func)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return func(*args, **kwargs)
            except SchwabStreamError as exc:
                raise click.exceptions.Exit(report_error(exc, command, allowed)) from None

        return wrapper

    return decorate


#: `login` and `token`: `login needed: ...` exits 3, every other error `error: ...` exits 1.
one_shot_errors = exits_on_error(allowed=ONE_SHOT_EXIT_CODES)


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text else text


def setup_one_shot_logging(settings: Settings) -> None:
    """Logs for the one-shot commands (`login`, `token`), which print their own result: only
    warnings and errors, as plain lines on stderr, whatever stderr is; SCHWAB_LOG_LEVEL=DEBUG
    shows everything. `run` keeps SCHWAB_LOG_FORMAT and SCHWAB_LOG_LEVEL as they are."""
    from schwab_stream.telemetry.logging import register_secret, setup_logging

    level = settings.log_level if settings.log_level in ("DEBUG", "ERROR") else "WARNING"
    setup_logging("console", level)
    register_secret(settings.app_secret.get_secret_value())
    if settings.log_level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)


def redis_url_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """click callback of `--redis-url`: a URL without a scheme is a usage error."""
    from schwab_stream.config import check_redis_url  # not for every command: pydantic is slow

    if value is None:
        return None
    try:
        return check_redis_url(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def redis_options(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """`--redis-url` and `--prefix` of a command that reaches the bridge's Redis (`what` it
    does there: "Redis to read")."""

    def decorate(func: Callable[P, R]) -> Callable[P, R]:
        func = click.option(
            "--prefix", help="The bridge's key prefix (default: SCHWAB_REDIS_PREFIX setting)."
        )(func)
        return click.option(
            "--redis-url",
            metavar="URL",
            callback=redis_url_option,
            help=f"{what} (default: REDIS_URL setting; redis://, redis+sentinel://, "
            "redis+cluster://).",
        )(func)

    return decorate


def redis_target(redis_url: str | None, prefix: str | None) -> tuple[str, str]:
    """The Redis URL and prefix: the options, else the settings (a bad setting is a usage
    error that says the options are a way around it)."""
    if redis_url is not None and prefix is not None:
        return redis_url, prefix
    from schwab_stream.config import load_settings  # (pydantic is slow: only when needed)

    try:
        settings = load_settings()
    except SchwabStreamError as exc:
        raise click.UsageError(f"{exc} (or pass --redis-url and --prefix)") from None
    return redis_url or settings.redis_url, prefix or settings.redis_prefix
