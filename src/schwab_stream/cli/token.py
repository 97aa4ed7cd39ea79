"""`schwab-stream token status|refresh|import`: the token file, headless.

Exit codes (for cron and scripts): 0 fine, 1 an error (bad setting, broken file, Schwab down),
3 a person must run `schwab-stream login`. They are `ExitCode`s; an error whose own code is another
(a bad setting's 2) folds into 1 here (`cli.common.one_shot_errors`).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import click

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.auth.token_store import TokenRecord, TokenStore, import_schwab_py
from schwab_stream.cli.common import one_shot_errors, setup_one_shot_logging
from schwab_stream.config import Settings, load_settings
from schwab_stream.errors import ExitCode, LoginRequiredError, SchwabStreamError, TokenFileError
from schwab_stream.expiry import format_duration, format_when, refresh_state


@click.group()
def token() -> None:
    """Inspect, refresh and import the Schwab token file (no browser needed)."""


@token.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@one_shot_errors
def status(as_json: bool) -> None:
    """Time left on both tokens and when the login was; exits 3 when a login is needed.

    Reads only the file: `token refresh --force` asks Schwab whether the refresh token still works.
    """
    settings = load_settings()
    store = TokenStore(settings.resolved_token_path)
    for folder in store.loose_folders():
        click.echo(f"warning: {folder.message()}", err=True)
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
        raise click.exceptions.Exit(ExitCode.LOGIN_NEEDED) from None
    now = time.time()
    access_left, refresh_left = record.access_seconds_left(now), record.refresh_seconds_left(now)
    login_needed = refresh_state(refresh_left) == "expired"
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
        raise click.exceptions.Exit(ExitCode.LOGIN_NEEDED)


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
    state = refresh_state(refresh_left)
    if state == "expired":
        click.echo(
            "login needed: the refresh token has expired: run `schwab-stream login`", err=True
        )
    elif state == "expiring":
        click.echo(
            "warning: the refresh token expires soon: run `schwab-stream login` before then",
            err=True,
        )
    if store.loose_permissions():
        click.echo(f"warning: others may read {store.path}: run `chmod 600 {store.path}`", err=True)


@token.command()
@click.option("--force", is_flag=True, help="Refresh even when the access token is still fresh.")
@one_shot_errors
def refresh(force: bool) -> None:
    """Refresh the access token when it is near expiry (headless; for cron or a check)."""
    settings = load_settings()
    setup_one_shot_logging(settings)
    before, after = asyncio.run(_refresh(settings, force))
    now = time.time()
    if after.access_token != before.access_token:
        click.echo(
            f"access token refreshed: valid for {format_duration(after.access_seconds_left(now))}; "
            f"refresh token {format_duration(after.refresh_seconds_left(now))} left"
        )
    else:
        click.echo(
            f"access token still valid for {format_duration(after.access_seconds_left(now))} "
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
@one_shot_errors
def import_(path: Path, force: bool) -> None:
    """Import a schwab-py token file (keeps its login: no new browser login needed)."""
    settings = load_settings()
    store = TokenStore(settings.resolved_token_path)
    if path.expanduser().resolve() == store.path.resolve():
        raise TokenFileError(
            f"SCHWAB_TOKEN_PATH is the schwab-py file {path} itself: point it at another file"
        )
    record = import_schwab_py(path)
    now = time.time()
    if refresh_state(record.refresh_seconds_left(now)) == "expired":
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
        f"{format_duration(record.refresh_seconds_left(now))} left"
    )


def _existing(store: TokenStore) -> TokenRecord | None:
    try:
        return store.load()
    except SchwabStreamError:
        return None
