"""`schwab-stream login`: the browser login, the one step a person must do every 7 days."""

from __future__ import annotations

import asyncio
import signal
import webbrowser
from urllib.parse import urlsplit

import click

from schwab_stream.auth.login import listen_exposure
from schwab_stream.auth.login import login as run_login
from schwab_stream.auth.token_store import TokenStore
from schwab_stream.cli.common import one_shot_errors, setup_one_shot_logging
from schwab_stream.config import load_settings
from schwab_stream.expiry import format_when

#: Exit code of a login ended by Ctrl-C (SIGINT): 128 + 2, as shells report it.
INTERRUPTED = 130


def callback_problems(url: str, *, listens: bool = False) -> list[str]:
    """What Schwab refuses in a callback URL (docs/schwab-protocol.md §2.3), said up front; with
    `listens` (the local callback server will run), also a host that is not this machine alone."""
    parts = urlsplit(url)
    problems = []
    exposed = listen_exposure(parts.hostname or "") if listens else None
    if exposed is not None:
        problems.append(
            f"the login callback server will listen on {exposed}, so anyone who reaches port "
            f"{parts.port or 443} can send it requests: use 127.0.0.1"
        )
    if parts.scheme != "https":
        problems.append("Schwab requires https")
    if parts.hostname == "localhost":
        problems.append("Schwab does not accept localhost: use 127.0.0.1")
    if parts.port is None:
        problems.append("no port means 443, which needs root: use e.g. https://127.0.0.1:8182")
    return problems


@click.command()
@click.option(
    "--manual",
    is_flag=True,
    help="No local server: print the URL, then paste the address the browser ends on "
    "(for servers reached over SSH).",
)
@click.option(
    "--no-browser",
    is_flag=True,
    help="Do not open a browser; print the URL (the local callback server still waits).",
)
@one_shot_errors
def login(manual: bool, no_browser: bool) -> None:
    """Log in to Schwab and save the tokens; starts the refresh token's 7-day clock.

    A running `schwab-stream run` picks up the new tokens without a restart.
    """
    settings = load_settings()
    setup_one_shot_logging(settings)
    for problem in callback_problems(settings.callback_url, listens=not manual):
        click.echo(f"warning: SCHWAB_CALLBACK_URL={settings.callback_url}: {problem}", err=True)
    for folder in TokenStore(settings.resolved_token_path).loose_folders():
        click.echo(f"warning: {folder.message()}", err=True)
    try:
        record = asyncio.run(
            run_login(
                settings,
                manual=manual,
                open_browser=None if no_browser else webbrowser.open,
                echo=click.echo,
            )
        )
    except KeyboardInterrupt:
        # Ctrl-C while waiting for the person: one line, 128 + SIGINT like a shell, no traceback;
        # more presses while it exits change nothing.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        click.echo("login interrupted: no tokens saved", err=True)
        raise click.exceptions.Exit(INTERRUPTED) from None
    click.echo(
        f"Logged in; tokens saved to {settings.resolved_token_path}. The refresh token lasts "
        f"until {format_when(record.refresh_expires_at)}: log in again before then."
    )
