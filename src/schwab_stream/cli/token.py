"""`schwab-stream token status|refresh|import`: the token file, headless.

Exit codes (for cron and scripts): 0 fine, 1 an error (bad setting, broken file, Schwab down),
3 a person must run `schwab-stream login`.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import click

from schwab_stream import telemetry
from schwab_stream.auth.client import SchwabAuthClient, format_duration, format_when
from schwab_stream.auth.token_store import TokenRecord, TokenStore, import_schwab_py
from schwab_stream.config import Settings, load_settings
from schwab_stream.errors import LoginRequiredError, SchwabStreamError, TokenFileError

EXIT_ERROR = 1
EXIT_LOGIN_NEEDED = 3
#: Refresh-token time left under which `token status` warns.
WARN_REFRESH_LEFT = 48 * 3600.0

P = ParamSpec("P")
R = TypeVar("R")


def friendly_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Our own errors become one line on stderr and an exit code, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LoginRequiredError as exc:
            click.echo(f"login needed: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_LOGIN_NEEDED) from None
        except SchwabStreamError as exc:
            click.echo(f"error: {exc}", err=True)
            raise click.exceptions.Exit(EXIT_ERROR) from None

    return wrapper


def setup_logging(settings: Settings) -> None:
    """Logs for the one-shot commands (`login`, `token`), which print their own result: only
    warnings and errors, as plain lines on stderr, whatever stderr is; SCHWAB_LOG_LEVEL=DEBUG
    shows everything. `run` keeps SCHWAB_LOG_FORMAT and SCHWAB_LOG_LEVEL as they are."""
    level = settings.log_level if settings.log_level in ("DEBUG", "ERROR") else "WARNING"
    telemetry.setup_logging("console", level)
    telemetry.register_secret(settings.app_secret.get_secret_value())
    if settings.log_level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)


@click.group()
def token() -> None:
    """Inspect, refresh and import the Schwab token file (no browser needed)."""


@token.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@friendly_errors
def status(as_json: bool) -> None:
    """Time left on both tokens and when the login was; exits 3 when a login is needed.

    Reads only the file: `token refresh --force` asks Schwab whether the refresh token still works.
    """
    settings = load_settings()
    store = TokenStore(settings.resolved_token_path)
    try:
        record = store.load()
    except (LoginRequiredError, TokenFileError) as exc:
        # Missing or broken: either way the fix is a login, so cron sees one exit code for it.
        if as_json:
            click.echo(
                json.dumps({"token_path": str(store.path), "login_needed": True, "error": str(exc)})
            )
        else:
            click.echo(f"login needed: {exc}", err=True)
        raise click.exceptions.Exit(EXIT_LOGIN_NEEDED) from None
    now = time.time()
    access_left, refresh_left = record.access_seconds_left(now), record.refresh_seconds_left(now)
    login_needed = refresh_left <= 0
    if as_json:
        click.echo(
            json.dumps(
                {
                    "token_path": str(store.path),
                    "login_at": record.login_at,
                    "access_expires_at": record.access_expires_at,
                    "access_seconds_left": round(access_left, 1),
                    "refresh_expires_at": record.refresh_expires_at,
                    "refresh_seconds_left": round(refresh_left, 1),
                    "login_needed": login_needed,
                }
            )
        )
    else:
        _print_status(store, record, now)
    if login_needed:
        raise click.exceptions.Exit(EXIT_LOGIN_NEEDED)


def _print_status(store: TokenStore, record: TokenRecord, now: float) -> None:
    access_left, refresh_left = record.access_seconds_left(now), record.refresh_seconds_left(now)
    click.echo(f"token file     {store.path}")
    click.echo(
        f"login          {format_when(record.login_at)} "
        f"({format_duration(now - record.login_at)} ago)"
    )
    access = (
        f"{format_duration(access_left)} left" if access_left > 0 else "expired (refreshed on use)"
    )
    click.echo(f"access token   {access}")
    click.echo(
        f"refresh token  {format_duration(refresh_left)} left "
        f"(until {format_when(record.refresh_expires_at)})"
    )
    if refresh_left <= 0:
        click.echo(
            "login needed: the refresh token has expired: run `schwab-stream login`", err=True
        )
    elif refresh_left <= WARN_REFRESH_LEFT:
        click.echo(
            "warning: the refresh token expires soon: run `schwab-stream login` before then",
            err=True,
        )
    if store.loose_permissions():
        click.echo(f"warning: others may read {store.path}: run `chmod 600 {store.path}`", err=True)


@token.command()
@click.option("--force", is_flag=True, help="Refresh even when the access token is still fresh.")
@friendly_errors
def refresh(force: bool) -> None:
    """Refresh the access token when it is near expiry (headless; for cron or a check)."""
    settings = load_settings()
    setup_logging(settings)
    before, after = asyncio.run(_refresh(settings, force))
    if after.access_token != before.access_token:
        click.echo(
            f"access token refreshed: valid for {format_duration(after.access_seconds_left())}; "
            f"refresh token {format_duration(after.refresh_seconds_left())} left"
        )
    else:
        click.echo(
            f"access token still valid for {format_duration(after.access_seconds_left())} "
            f"(margin {settings.token_refresh_margin:.0f} s): nothing to do; --force refreshes"
        )


async def _refresh(settings: Settings, force: bool) -> tuple[TokenRecord, TokenRecord]:
    client = SchwabAuthClient(settings)
    try:
        before = client.store.load()
        return before, await client.refresh(force=force)
    finally:
        await client.aclose()


@token.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace a token file that holds a newer login.")
@friendly_errors
def import_(path: Path, force: bool) -> None:
    """Import a schwab-py token file (keeps its login: no new browser login needed)."""
    settings = load_settings()
    store = TokenStore(settings.resolved_token_path)
    if path.expanduser().resolve() == store.path.resolve():
        raise TokenFileError(
            f"SCHWAB_TOKEN_PATH is the schwab-py file {path} itself: point it at another file"
        )
    record = import_schwab_py(path)
    if record.refresh_seconds_left() <= 0:
        raise LoginRequiredError(
            f"the refresh token in {path} expired at {format_when(record.refresh_expires_at)} "
            "(7 days after its login): run `schwab-stream login`"
        )
    existing = _existing(store)
    if existing is not None and existing.login_at > record.login_at and not force:
        raise TokenFileError(
            f"{store.path} holds a newer login ({format_when(existing.login_at)}) than {path} "
            f"({format_when(record.login_at)}), which that login has voided: pass --force to "
            "replace it anyway"
        )
    store.save(record)
    click.echo(
        f"imported {path} into {store.path}: login {format_when(record.login_at)}, refresh token "
        f"{format_duration(record.refresh_seconds_left())} left"
    )


def _existing(store: TokenStore) -> TokenRecord | None:
    try:
        return store.load()
    except SchwabStreamError:
        return None
