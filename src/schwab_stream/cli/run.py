"""`schwab-stream run`: stream to Redis until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import TYPE_CHECKING

import click

from schwab_stream.cli.common import exits_on_error
from schwab_stream.errors import ConfigError, ExitCode
from schwab_stream.runtime import (
    TRIM_EVERY,
    StartupStopped,
    StopRequest,
    freeze_heap,
    pin_mmap_threshold,
    run_async,
    trim_heap_every,
)

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
        key_problems,
        load_settings,
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
    problems = key_problems(subscriptions)
    if problems and settings.key_check == "strict":
        raise ConfigError(
            "; ".join(problems) + " (Schwab sends nothing for such a key; fix it, or set "
            "SCHWAB_KEY_CHECK=warn to send it anyway)"
        )
    for problem in problems:
        log.warning("%s: sent anyway (SCHWAB_KEY_CHECK=warn); it may get no data", problem)
    for folder in pipeline.auth.store.loose_folders():
        log.warning("%s", folder.message())
    if not subscriptions:
        log.warning(
            "nothing in the settings to subscribe: keys stored by `schwab-stream subscribe` "
            "stream if there are any; otherwise the bridge waits for one (or set "
            "SCHWAB_LEVELONE_EQUITIES, or pass --subscribe SERVICE=KEYS)"
        )
    stop.defer()  # the loop takes signals from its first step (`_run`)
    return run_async(_run(pipeline, subscriptions, stop))


async def _run(pipeline: Pipeline, subscriptions: dict[str, list[str]], stop: StopRequest) -> int:
    if stop.hand_to(asyncio.get_running_loop(), pipeline.stop):
        assert stop.signal is not None
        log.info("%s during start-up: stopping before streaming", stop.signal.name)
    else:
        freeze_heap()  # start-up is done: full collections now walk only what streaming allocates
        pin_mmap_threshold()  # a burst's buffers are given back, not kept as heap
        log.info(
            "starting: %s",
            ", ".join(f"{s}={len(k)}" for s, k in subscriptions.items()) or "no subscriptions",
        )
    # RSS follows what is alive, not the largest burst seen (runtime.py)
    trimmer = asyncio.create_task(trim_heap_every(TRIM_EVERY))
    try:
        code = await pipeline.run()
    finally:
        trimmer.cancel()
    log.info("stopped (exit %d)", code)
    return code
