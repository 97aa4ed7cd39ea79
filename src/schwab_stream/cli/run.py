"""`schwab-stream run`: stream to Redis until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING

import click

from schwab_stream.cli.common import exits_on_error
from schwab_stream.errors import ExitCode
from schwab_stream.runtime import StartupStopped, StopRequest, freeze_heap, run_async

if TYPE_CHECKING:
    from schwab_stream.pipeline import Pipeline

log = logging.getLogger("schwab_stream.run")


@click.command()
@click.option(
    "--subscribe",
    "subscribe",
    multiple=True,
    metavar="SERVICE=KEYS",
    help="Subscribe SERVICE to comma-separated KEYS (repeatable); replaces the settings for "
    "that service. Example: --subscribe LEVELONE_EQUITIES=AAPL,MSFT",
)
@exits_on_error("run")
def run(subscribe: tuple[str, ...]) -> None:
    """Stream market data from Schwab into Redis Streams until stopped (SIGINT/SIGTERM).

    A second `run` for the same Schwab user (same Redis and prefix) waits as a hot standby and
    takes over when this one dies.

    \b
    Exit codes: 0 stopped, 1 failed, 2 bad settings,
    3 another Schwab session took over (code 12), 4 another instance took the lease.
    """
    # First: a SIGTERM (or Ctrl-C) while the parts load stops us cleanly, before streaming.
    with StopRequest() as stop:
        try:
            code = _start(subscribe, stop)
        except StartupStopped as stopped:
            log.info("%s during start-up: stopped before streaming", stopped.args[0].name)
            code = ExitCode.OK
    sys.exit(code)


def _start(subscribe: tuple[str, ...], stop: StopRequest) -> int:
    # Imported here, not at the top: a stop signal is caught only once `run` runs, and these
    # (pydantic above all) take most of the start-up.
    from schwab_stream.config import (
        load_settings,
        malformed_option_keys,
        parse_subscribe_option,
        unknown_setting_names,
    )
    from schwab_stream.pipeline import Pipeline
    from schwab_stream.telemetry.logging import setup_logging

    # A bad setting raises ConfigError: one line and its exit code (2), by exits_on_error.
    settings = load_settings()
    subscriptions = settings.subscriptions()
    if settings.acct_activity:
        subscriptions["ACCT_ACTIVITY"] = ["ACCOUNT"]
    subscriptions.update(parse_subscribe_option(subscribe))
    setup_logging(settings.log_format, settings.log_level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per REST call is noise
    # Built before any warning, so a missing app key is the one line it must be.
    pipeline = Pipeline.from_settings(settings, subscriptions)
    for name in unknown_setting_names():
        log.warning("%s is not a schwab-stream setting (a typo?); it is ignored", name)
    for key in malformed_option_keys(subscriptions):
        log.warning(
            "%s is not an option symbol in Schwab's format (root padded to 6 characters, YYMMDD, "
            "C or P, strike x 1000 in 8 digits, e.g. 'AAPL  261218C00200000'): it will get no data",
            key,
        )
    for folder in pipeline.auth.store.loose_folders():
        log.warning("%s", folder.message())
    if not subscriptions:
        log.warning(
            "nothing to subscribe: set SCHWAB_LEVELONE_EQUITIES (or another service setting) "
            "or pass --subscribe SERVICE=KEYS"
        )
    stop.defer()  # the loop takes signals from its first step (`_run`)
    return run_async(_run(pipeline, subscriptions, stop))


async def _run(pipeline: Pipeline, subscriptions: dict[str, list[str]], stop: StopRequest) -> int:
    if stop.hand_to(asyncio.get_running_loop(), pipeline.stop):
        assert stop.signal is not None
        log.info("%s during start-up: stopping before streaming", stop.signal.name)
    else:
        freeze_heap()  # start-up is done: full collections now walk only what streaming allocates
        log.info(
            "starting: %s",
            ", ".join(f"{s}={len(k)}" for s, k in subscriptions.items()) or "no subscriptions",
        )
    code = await pipeline.run()
    log.info("stopped (exit %d)", code)
    return code
