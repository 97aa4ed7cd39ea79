"""`schwab-stream demo`: the whole bridge against the bundled simulator, with a live view.

One command shows the project working before anyone owns a Schwab app: the simulator runs on a
thread, a throw-away redis-server starts unless `--redis-url` is given, a real OAuth login against
the simulator writes a token file in a temp folder, and the same `Pipeline` that `run` uses streams
into Redis. The view reads Redis as any consumer would. Settings come from the simulator only,
never from the user's `.env` or environment, so a demo cannot touch a live setup by accident, and
its events go under a prefix of their own (`schwab-demo`), so a `run` later pointed at a kept
Redis never reads simulated quotes for real ones. The simulator follows the real calendar while
the regular session is open; otherwise it plays a regular session and the demo says so on screen.
Everything started here is stopped and removed at exit, Ctrl-C included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TextIO

import click
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from schwab_stream.auth.sim_login import login_against_simulator
from schwab_stream.cli.common import redis_url_option, report_error
from schwab_stream.cli.demo_view import RedisView, Screen, ViewData
from schwab_stream.config import Settings, parse_subscribe_option
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.errors import ExitCode, SchwabStreamError
from schwab_stream.pipeline import Pipeline
from schwab_stream.publish.keys import StreamKeys
from schwab_stream.redact import safe_url
from schwab_stream.redis_client import async_redis, diagnose, is_cluster
from schwab_stream.redis_topology import Cause
from schwab_stream.runtime import run_async
from schwab_stream.sim.calendar import is_trading_day
from schwab_stream.sim.clock import ET, parse_market_time
from schwab_stream.sim.hours import MarketHours, Schedule, session_name
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig

log = logging.getLogger("schwab_stream.demo")

DEMO_EQUITIES = ("AAPL", "MSFT", "NVDA", "SPY")
DEMO_FUTURE = "/ES"
DEMO_SCREENER = "NASDAQ_VOLUME_0"
#: Simulator data frames per second: lively enough to watch, far below what the pipeline takes.
DEMO_RATE = 40.0
#: The demo's Redis key prefix: not `run`'s default, so simulated events never pass for real ones.
DEMO_PREFIX = "schwab-demo"
#: When the real market is closed, the demo plays this moment of the last regular session.
SESSION_MOMENT = (10, 30)


@dataclass(frozen=True)
class MarketClock:
    """Where the demo's market clock starts and whether that is the real calendar."""

    start: datetime
    simulated: bool
    time_scale: float

    @classmethod
    def choose(cls, now: datetime, time_scale: float, given: datetime | None) -> MarketClock:
        """The real clock while the regular session is open; else SESSION_MOMENT of the latest
        trading day (or `given`, from --market-time): never a closed market that looks live."""
        if given is not None:
            return cls(given, True, time_scale)
        now_ms = int(now.timestamp() * 1000)
        if Schedule("equity", MarketHours()).regular_at(now_ms):
            return cls(now.astimezone(ET), False, time_scale)
        day = now.astimezone(ET).date()
        while True:
            start = datetime(day.year, day.month, day.day, *SESSION_MOMENT, tzinfo=ET)
            if is_trading_day(day) and start <= now:
                return cls(start, True, time_scale)
            day -= timedelta(days=1)

    def label(self, elapsed: float) -> str:
        """What the screen says: "simulated session, Fri 10:30 ET" or "live, Tue 11:02 ET"."""
        moment = self.start + timedelta(seconds=elapsed * self.time_scale)
        phase = session_name(Schedule("equity", MarketHours()), int(moment.timestamp() * 1000))
        kind = "simulated session" if self.simulated else "live"
        tail = "" if phase == "regular session" else f" ({phase})"
        return f"{kind}, {moment:%a %H:%M} ET{tail}"


def demo_option(today: date) -> str:
    """An AAPL call expiring on the third Friday two months out, so the demo never goes stale."""
    month_index = today.month + 1  # zero-based month two months ahead
    year, month = today.year + month_index // 12, month_index % 12 + 1
    first = date(year, month, 1)
    third_friday = first + timedelta(days=(4 - first.weekday()) % 7 + 14)
    return f"{'AAPL':<6}{third_friday:%y%m%d}C{200_000:08d}"


def default_subscriptions(today: date) -> dict[str, list[str]]:
    """A little of everything: quotes, a book, an option, a future, bars and a screener."""
    return {
        "LEVELONE_EQUITIES": list(DEMO_EQUITIES),
        "LEVELONE_OPTIONS": [demo_option(today)],
        "LEVELONE_FUTURES": [DEMO_FUTURE],
        "NASDAQ_BOOK": [DEMO_EQUITIES[0]],
        "CHART_EQUITY": list(DEMO_EQUITIES),
        "SCREENER_EQUITY": [DEMO_SCREENER],
    }


class DemoSettings(Settings):
    """Settings built only from what the demo passes in: no `.env`, no environment."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


# --- the run ------------------------------------------------------------------------------


@dataclass
class DemoOptions:
    duration: float
    ui: bool
    redis_url: str | None
    keep_redis: bool
    time_scale: float
    prefix: str
    subscriptions: dict[str, list[str]]
    market: MarketClock


class Demo:
    """Owns everything the demo starts, so one `close()` takes it all down in order."""

    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.folder = Path(tempfile.mkdtemp(prefix="schwab-stream-demo-"))
        self.sim: SimThread | None = None
        self.redis: EmbeddedRedis | None = None
        self.redis_url = options.redis_url or ""
        self.log_file: TextIO | None = None
        self.pipeline: Pipeline | None = None
        self.stopping = False
        self.events_published = 0

    def request_stop(self) -> None:
        """Signal handler: end the run (the pipeline if it runs, the setup otherwise)."""
        self.stopping = True
        if self.pipeline is not None:
            self.pipeline.stop()

    def _setup_logging(self) -> None:
        """Logs must not garble the live view: to a file (shown at exit if they matter), or to
        stderr at WARNING and above with --no-ui."""
        from schwab_stream.telemetry.logging import setup_logging

        if self.options.ui:
            self.log_file = (self.folder / "demo.log").open("w", encoding="utf-8")
            setup_logging("json", "INFO", stream=self.log_file)
        else:
            setup_logging("auto", "WARNING")

    async def run(self) -> int:
        self._setup_logging()
        opts = self.options
        market_time = opts.market.start if opts.market.simulated else None
        config = SimConfig(rate=DEMO_RATE, time_scale=opts.time_scale, market_time=market_time)
        self.sim = await asyncio.to_thread(SimThread(config).start)
        if self.stopping:
            return ExitCode.OK
        if opts.redis_url:
            await _check_redis(opts.redis_url)
        else:
            self.redis = await asyncio.to_thread(EmbeddedRedis().start)
            self.redis_url = self.redis.url
        if self.stopping:
            return ExitCode.OK
        settings = DemoSettings(
            app_key=self.sim.config.app_key,
            app_secret=self.sim.config.app_secret,
            callback_url=self.sim.config.callback_url,
            api_base_url=self.sim.base_url,
            token_path=self.folder / "token.json",
            redis_url=self.redis_url,
            redis_prefix=opts.prefix,
            reconnect_max_delay=5.0,
        )
        # The real `login --manual` flow, with a scripted person approving on the simulator.
        await login_against_simulator(settings)
        self._print_header()
        if self.stopping:
            return ExitCode.OK
        self.pipeline = Pipeline.from_settings(settings, opts.subscriptions)
        task = asyncio.create_task(self.pipeline.run(), name="pipeline")
        client = async_redis(self.redis_url, socket_timeout=2.0)
        keys = StreamKeys(opts.prefix, cluster=is_cluster(self.redis_url))
        try:
            await self._show(task, RedisView(client, keys, opts.subscriptions))
            code = await task
        finally:
            self.pipeline.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 15)
            self.events_published = self.pipeline.snapshot().events_published
            await client.aclose()
        return code

    async def _show(self, task: asyncio.Task[int], reader: RedisView) -> None:
        """Refresh the view until the pipeline ends or the duration is up."""
        opts = self.options
        started = time.monotonic()
        assert self.pipeline is not None
        with Screen(opts.ui, safe_url(self.redis_url), opts.duration, opts.prefix) as screen:
            while not task.done():
                elapsed = time.monotonic() - started
                if opts.duration and elapsed >= opts.duration:
                    self.pipeline.stop()
                    break
                view = ViewData(
                    elapsed=elapsed,
                    snapshot=self.pipeline.snapshot(),
                    market=opts.market.label(elapsed),
                )
                await reader.read(view)
                screen.update(view)
                await asyncio.wait({task}, timeout=screen.interval)

    def _print_header(self) -> None:
        """Where everything is, printed before the view so it stays on screen."""
        assert self.sim is not None
        if self.redis is not None:
            version = self.redis.version().split(" sha=")[0].replace("Redis server v=", "")
            keep = "kept after the demo" if self.options.keep_redis else "stops with the demo"
            where = f"embedded redis-server {version}, {keep}"
        else:
            where = "yours (--redis-url): the events stay there"
        click.echo(f"simulator   {self.sim.base_url}")
        click.echo(f"market      {self.options.market.label(0)}, {self.options.time_scale:g}x")
        click.echo(f"redis       {safe_url(self.redis_url)}  ({where})")
        click.echo(
            f"prefix      {self.options.prefix}  (the keys: {self.options.prefix}:tick:AAPL, ...)"
        )
        click.echo(f"temp files  {self.folder}  (removed at exit)")
        click.echo(
            f"follow it   {_self_command()} tail --redis-url {safe_url(self.redis_url)} "
            f"--prefix {self.options.prefix} --symbol AAPL"
        )

    def close(self) -> None:
        """Stop what was started, in reverse order, and remove the temp folder; an impatient
        second Ctrl-C must not cut the cleanup short."""
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        if self.redis is not None and self.options.keep_redis and self.redis.proc is not None:
            self.redis.detach()
        elif self.redis is not None:
            self.redis.stop()
        if self.log_file is not None:
            self.log_file.close()
            _echo_warnings(self.folder / "demo.log")
        logging.getLogger().handlers.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _redis_cli(self) -> str:
        """`redis-cli` when on PATH, else the one shipped beside the embedded server."""
        if shutil.which("redis-cli") or self.redis is None:
            return "redis-cli"
        bundled = self.redis.binary.parent / "redis-cli"
        return str(bundled) if bundled.is_file() else "redis-cli"

    def print_epilogue(self, code: int) -> None:
        """How to reach the data once the demo is over."""
        p, url = self.options.prefix, safe_url(self.redis_url)
        echo = click.echo
        echo("")
        echo(f"demo ended (exit {code}): {self.events_published:,} events published to {url}")
        if self.redis is not None and self.options.keep_redis and self.redis.proc is not None:
            echo(f"The embedded Redis keeps running (pid {self.redis.proc.pid}). Read it with:")
        elif self.redis is not None:
            echo(
                "The embedded Redis stopped with the demo, and its data with it. To read the "
                "events afterwards, run the demo with --keep-redis (or --redis-url YOUR_REDIS), "
                "or follow them from another terminal while it runs (the `follow it` line above)."
            )
            return
        else:
            echo("The events stay in your Redis. Read them with:")
        echo(f"  export REDIS_URL={url}")
        symbol = DEMO_EQUITIES[0]
        tail = f"{_self_command()} tail --redis-url $REDIS_URL --prefix {p}"
        echo(f"  {tail} --from-start --count 5 --symbol {symbol}")
        echo(f"  {self._redis_cli()} -u $REDIS_URL XREVRANGE {p}:tick:{symbol} + - COUNT 1")
        if self.redis is not None and self.options.keep_redis and self.redis.proc is not None:
            echo(f"Stop it when done: kill {self.redis.proc.pid}; rm -r {self.redis.dir}")


def _self_command() -> str:
    """How to run schwab-stream from here: the bare name when it is on PATH (an activated venv,
    pipx), else the path of this venv's script (`./dev demo` does not put it on PATH)."""
    if shutil.which("schwab-stream"):
        return "schwab-stream"
    script = Path(sys.executable).parent / "schwab-stream"
    with contextlib.suppress(ValueError):
        return str(script.relative_to(Path.cwd()))
    return str(script)


async def _check_redis(url: str) -> None:
    """A URL the demo cannot write to ends it at once, in one line: a sentinel or a cluster node
    where the URL says otherwise answers PING, and the demo would stream into nothing."""
    found = await diagnose(url, timeout=3.0)
    if found.cause is not Cause.WRITES_FAIL:  # (WRITES_FAIL: every part answers as it should)
        raise SchwabStreamError(f"cannot use Redis at {safe_url(url)}: {found.detail}")


def _echo_warnings(path: Path) -> None:
    """Show the run's warnings and errors after the live view is gone (the file is removed)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            click.echo(f"{record['level']} {record.get('logger')}: {record.get('msg')}", err=True)


@click.command()
@click.option(
    "--duration",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Stop by itself after this many seconds (0: run until Ctrl-C).",
)
@click.option("--no-ui", is_flag=True, help="Print a compact status line per second instead.")
@click.option(
    "--redis-url",
    metavar="URL",
    callback=redis_url_option,
    help="Write to this Redis instead of starting a throw-away one (the events stay there).",
)
@click.option(
    "--keep-redis",
    is_flag=True,
    help="Leave the embedded Redis running after the demo, to read the events afterwards.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(min=0.1, max=600),
    default=10.0,
    show_default=True,
    help="Simulated market minutes per wall minute: 10 closes a one-minute bar every 6 s.",
)
@click.option(
    "--market-time",
    metavar="YYYY-MM-DDTHH:MM",
    default=None,
    help="Play the market from this New York time (default: now if the regular session is "
    "open, else 10:30 of the last trading day).",
)
@click.option(
    "--prefix",
    default=DEMO_PREFIX,
    show_default=True,
    help="Redis key prefix to write under (not `run`'s `schwab`: simulated events stay apart).",
)
@click.option(
    "--subscribe",
    multiple=True,
    metavar="SERVICE=KEYS",
    help="Replace the demo's keys for SERVICE (repeatable), as for `run`.",
)
def demo(
    duration: float,
    no_ui: bool,
    redis_url: str | None,
    keep_redis: bool,
    time_scale: float,
    market_time: str | None,
    prefix: str,
    subscribe: tuple[str, ...],
) -> None:
    """Run the whole pipeline against the bundled simulator, with a live view.

    Starts the Schwab simulator, a throw-away Redis (unless --redis-url), logs in over OAuth and
    streams quotes, a book, an option, a future, bars and a screener into Redis. Reads nothing
    from .env or the environment. Ctrl-C ends it cleanly and removes everything it started.
    """
    try:
        subscriptions = default_subscriptions(date.today())
        subscriptions.update(parse_subscribe_option(subscribe))
        subscriptions = {service: keys for service, keys in subscriptions.items() if keys}
    except SchwabStreamError as exc:
        raise click.UsageError(str(exc)) from None
    if keep_redis and redis_url:
        raise click.UsageError("--keep-redis is for the embedded Redis; not with --redis-url")
    try:
        given = parse_market_time(market_time) if market_time is not None else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--market-time") from None
    options = DemoOptions(
        duration=duration,
        ui=not no_ui,
        redis_url=redis_url,
        keep_redis=keep_redis,
        time_scale=time_scale,
        prefix=prefix,
        subscriptions=subscriptions,
        market=MarketClock.choose(datetime.now(ET), time_scale, given),
    )
    runner = Demo(options)
    code: int = ExitCode.FAILED
    try:
        code = run_async(_main(runner))
    except KeyboardInterrupt:
        code = ExitCode.OK
    except SchwabStreamError as exc:  # a redis-server that would not start, an unreachable Redis
        code = report_error(exc, "demo")
    finally:
        runner.close()
    if runner.pipeline is not None:
        runner.print_epilogue(code)
    sys.exit(code)


async def _main(runner: Demo) -> int:
    loop = asyncio.get_running_loop()
    # SIGHUP too: closing the terminal must clean up like Ctrl-C does.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, runner.request_stop)
    return await runner.run()
