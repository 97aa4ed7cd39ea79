"""`schwab-stream sim`: the local Schwab simulator (OAuth, userPreference, streamer, control)."""

from __future__ import annotations

import asyncio
import shlex
import signal
from datetime import datetime
from pathlib import Path

import click

from schwab_stream.cli.common import exits_on_error
from schwab_stream.errors import ConfigError
from schwab_stream.sim.state import DEFAULT_APP_KEY, DEFAULT_APP_SECRET, SimConfig

_DEFAULTS = SimConfig()


@click.command()
@click.option("--host", default=_DEFAULTS.host, show_default=True, help="Interface to bind.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port for everything (OAuth, userPreference, /ws, /sim/*); 0 picks a free one.",
)
@click.option(
    "--app-key",
    default=DEFAULT_APP_KEY,
    show_default=True,
    help="App key the OAuth endpoints accept.",
)
@click.option(
    "--app-secret",
    default=DEFAULT_APP_SECRET,
    show_default=True,
    help="App secret the OAuth endpoints accept.",
)
@click.option(
    "--callback-url",
    default=_DEFAULTS.callback_url,
    show_default=True,
    help="Callback URL registered for the app (authorize redirects there).",
)
@click.option(
    "--access-ttl",
    default=_DEFAULTS.access_ttl,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Access-token lifetime, seconds.",
)
@click.option(
    "--refresh-ttl",
    default=_DEFAULTS.refresh_ttl,
    show_default=True,
    type=click.FloatRange(min=1),
    help="Refresh-token lifetime from login, seconds.",
)
@click.option(
    "--symbol-limit",
    default=_DEFAULTS.symbol_limit,
    show_default=True,
    type=click.IntRange(min=1),
    help="Keys per connection across services; more get code 19.",
)
@click.option(
    "--heartbeat-interval",
    default=_DEFAULTS.heartbeat_interval,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between heartbeat notifies.",
)
@click.option(
    "--idle-timeout",
    default=_DEFAULTS.idle_timeout,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds without subscriptions before ADMIN code 30 and a close.",
)
@click.option(
    "--seed",
    default=_DEFAULTS.seed,
    show_default=True,
    type=int,
    help="Market RNG seed: the same seed gives the same market.",
)
@click.option(
    "--rate",
    default=_DEFAULTS.rate,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Data frames per second per connection.",
)
@click.option(
    "--symbols-per-frame",
    default=_DEFAULTS.symbols_per_frame,
    show_default=True,
    type=click.IntRange(min=0),
    help="Keys per data frame (0 = every subscribed key of the service).",
)
@click.option(
    "--book-interval",
    default=_DEFAULTS.book_interval,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between snapshots of one book or screener key.",
)
@click.option(
    "--time-scale",
    default=_DEFAULTS.time_scale,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Market clock speed (60 = a one-minute bar every second).",
)
@click.option(
    "--market-time",
    metavar="YYYY-MM-DDTHH:MM",
    default=None,
    help="Start the market clock at this New York time (default: now, the real calendar).",
)
@click.option(
    "--hours",
    "hours",
    multiple=True,
    metavar="NAME=HH:MM",
    help="Change a session time, repeatable: equity_open, regular_open, regular_close, "
    "equity_close, early_regular_close, early_equity_close, futures_open, futures_close, "
    "forex_open, forex_close (see docs/simulator.md).",
)
@click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Send the server frames of this JSONL file instead of a market.",
)
@click.option(
    "--replay-pace/--no-replay-pace",
    default=_DEFAULTS.replay_pace,
    show_default=True,
    help="Replay at the recorded pace (frame timestamps) instead of at once.",
)
@click.option(
    "--fault",
    "faults",
    multiple=True,
    metavar="NAME[:ARG]@SECONDS[/EVERY]",
    help="Scheduled fault, repeatable: drop@5, silence:3@10/60, garbage@2, "
    "code:12@30 (see docs/simulator.md).",
)
@click.option(
    "--rest-limit",
    default=_DEFAULTS.rest_limit_per_minute,
    show_default=True,
    type=click.IntRange(min=0),
    help="Market-data REST calls per minute before 429 (0 = no limit).",
)
@click.option(
    "--history-days",
    default=_DEFAULTS.history_days,
    show_default=True,
    type=click.IntRange(min=1),
    help="Days of minute price history served (Schwab's depth is UNVERIFIED: 45-90).",
)
@click.option(
    "--futures-history/--no-futures-history",
    default=_DEFAULTS.futures_history,
    show_default=True,
    help="Serve price history for futures (Schwab reportedly has none).",
)
@click.option(
    "--history-whole-days/--no-history-whole-days",
    default=_DEFAULTS.history_whole_days,
    show_default=True,
    help="Answer minute history with whole sessions, whatever the window (schwab-py#148).",
)
@click.option(
    "--bar-gap-rate",
    default=_DEFAULTS.bar_gap_rate,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Chance that a session minute has no trade, hence no bar.",
)
@exits_on_error("sim")
def sim(
    host: str,
    port: int,
    app_key: str,
    app_secret: str,
    callback_url: str,
    access_ttl: float,
    refresh_ttl: float,
    symbol_limit: int,
    heartbeat_interval: float,
    idle_timeout: float,
    seed: int,
    rate: float,
    symbols_per_frame: int,
    book_interval: float,
    time_scale: float,
    market_time: str | None,
    hours: tuple[str, ...],
    replay: Path | None,
    replay_pace: bool,
    faults: tuple[str, ...],
    rest_limit: int,
    history_days: int,
    futures_history: bool,
    history_whole_days: bool,
    bar_gap_rate: float,
) -> None:
    """Run the local Schwab simulator until Ctrl-C or SIGTERM.

    It prints the base URL first, then the settings a client needs, as shell lines.
    """
    from schwab_stream.sim.clock import parse_market_time
    from schwab_stream.sim.control import parse_fault
    from schwab_stream.sim.hours import MarketHours

    for spec in faults:
        try:
            parse_fault(spec)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--fault") from None
    try:
        start = parse_market_time(market_time) if market_time is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--market-time") from None
    try:
        session_hours = MarketHours().replace(list(hours))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--hours") from None
    config = SimConfig(
        host=host,
        port=port,
        app_key=app_key,
        app_secret=app_secret,
        callback_url=callback_url,
        access_ttl=access_ttl,
        refresh_ttl=refresh_ttl,
        symbol_limit=symbol_limit,
        heartbeat_interval=heartbeat_interval,
        idle_timeout=idle_timeout,
        seed=seed,
        rate=rate,
        symbols_per_frame=symbols_per_frame,
        book_interval=book_interval,
        time_scale=time_scale,
        market_time=start,
        hours=session_hours,
        replay=replay,
        replay_pace=replay_pace,
        startup_faults=list(faults),
        rest_limit_per_minute=rest_limit,
        history_days=history_days,
        futures_history=futures_history,
        history_whole_days=history_whole_days,
        bar_gap_rate=bar_gap_rate,
    )
    try:
        asyncio.run(_serve(config))
    except OSError as exc:  # a bad --host or --port: a setting (exit 2)
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None


async def _serve(config: SimConfig) -> None:
    from schwab_stream.sim.server import start

    running = await start(config)
    base = running.base_url
    env = {
        "SCHWAB_API_BASE_URL": base,
        "SCHWAB_APP_KEY": config.app_key,
        "SCHWAB_APP_SECRET": config.app_secret,
        "SCHWAB_CALLBACK_URL": config.callback_url,
    }
    lines = [
        f"schwab-stream simulator listening on {base}",
        "# point a client at it (then `schwab-stream login` approves at once):",
        "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()),
        f"# streamer {running.state.streamer_url}  stats {base}/sim/stats",
        f"# market clock {_market_line(config)}",
    ]
    print("\n".join(lines), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await running.stop()


def _market_line(config: SimConfig) -> str:
    """Where the market clock starts: 'Tue 2025-06-10 10:30 ET (regular session), 1x'."""
    from schwab_stream.sim.clock import ET
    from schwab_stream.sim.hours import Schedule, session_name

    start = config.market_time or datetime.now(ET)
    phase = session_name(Schedule("equity", config.hours), int(start.timestamp() * 1000))
    where = "real calendar" if config.market_time is None else "--market-time"
    return f"{start.astimezone(ET):%a %Y-%m-%d %H:%M} ET ({phase}; {where}), {config.time_scale:g}x"
