"""`schwab-stream demo`: the whole bridge against the bundled simulator, with a live view.

One command shows the project working before anyone owns a Schwab app: the simulator runs on a
thread, a throw-away redis-server starts unless `--redis-url` is given, a real OAuth login against
the simulator writes a token file in a temp folder, and the same `Pipeline` that `run` uses streams
into Redis. The view reads Redis as any consumer would. Settings come from the simulator only,
never from the user's `.env` or environment, so a demo cannot touch a live setup by accident.
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
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TextIO

import click
import redis.asyncio as aioredis
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource
from redis.exceptions import RedisError
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schwab_stream.auth.client import format_duration
from schwab_stream.auth.sim_login import login_against_simulator
from schwab_stream.cli import redis_url_option
from schwab_stream.cli.tail import describe, px, qty
from schwab_stream.config import Settings, parse_subscribe_option
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.errors import SchwabStreamError
from schwab_stream.pipeline import Pipeline, Snapshot
from schwab_stream.runtime import run_async
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig

log = logging.getLogger("schwab_stream.demo")

DEMO_EQUITIES = ("AAPL", "MSFT", "NVDA", "SPY")
DEMO_FUTURE = "/ES"
DEMO_SCREENER = "NASDAQ_VOLUME_0"
BOOK_DEPTH = 5
#: Simulator data frames per second: lively enough to watch, far below what the pipeline takes.
DEMO_RATE = 40.0


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


# --- what the view shows ------------------------------------------------------------------


@dataclass
class ViewData:
    """One frame of the view: the pipeline's own numbers plus what a consumer reads in Redis."""

    elapsed: float
    snapshot: Snapshot
    quotes: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    book: dict[str, Any] | None = None
    bar: dict[str, Any] | None = None
    screener: dict[str, Any] | None = None


class RedisView:
    """Reads the latest state the pipeline wrote, the way a user's program would."""

    def __init__(self, client: aioredis.Redis, prefix: str, subs: dict[str, list[str]]) -> None:
        self.client = client
        self.prefix = prefix
        self.quote_symbols = [
            key for service, keys in subs.items() if service.startswith("LEVELONE_") for key in keys
        ]
        books = [key for service, keys in subs.items() if service.endswith("_BOOK") for key in keys]
        self.book_symbol = books[0] if books else None
        charts = [
            key for service, keys in subs.items() if service.startswith("CHART_") for key in keys
        ]
        self.bar_symbol = charts[0] if charts else None
        screeners = [
            key for service, keys in subs.items() if service.startswith("SCREENER_") for key in keys
        ]
        self.screener_key = screeners[0] if screeners else None

    async def read(self, view: ViewData) -> None:
        """Fill `view` from Redis; an unreachable Redis leaves the last values out, not a crash."""
        p = self.prefix
        try:
            if self.quote_symbols:
                raw = await self.client.mget([f"{p}:latest:tick:{s}" for s in self.quote_symbols])
                view.quotes = [
                    (symbol, json.loads(item) if item else None)
                    for symbol, item in zip(self.quote_symbols, raw, strict=True)
                ]
            if self.book_symbol:
                raw_book = await self.client.get(f"{p}:latest:level2:{self.book_symbol}")
                view.book = json.loads(raw_book) if raw_book else None
            if self.bar_symbol:
                view.bar = await self._last_entry(f"{p}:bar:{self.bar_symbol}")
            if self.screener_key:
                view.screener = await self._last_entry(f"{p}:screener:{self.screener_key}")
        except (RedisError, OSError) as exc:
            log.warning("the view could not read redis: %s", exc)

    async def _last_entry(self, key: str) -> dict[str, Any] | None:
        entries: Any = await self.client.xrevrange(key, count=1)
        if not entries:
            return None
        data: dict[str, Any] = json.loads(entries[0][1][b"data"])
        return data


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _left(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)


def _change(quote: dict[str, Any], percent: bool = True) -> Text:
    change, close = quote.get("net_change"), quote.get("close")
    if not isinstance(change, int | float):
        return Text("-")
    pct = ""
    if percent and isinstance(close, int | float) and close:
        pct = f" ({change / close:+.2%})"
    style = "green" if change > 0 else "red" if change < 0 else ""
    return Text(f"{change:+,.2f}{pct}", style=style)


def _short_qty(value: Any) -> str:
    """A volume for narrow screens: 6.13M, 812K, 950."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return "-"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return (
                f"{value / limit:.2f}{suffix}"
                if abs(value) < 10 * limit
                else (
                    f"{value / limit:.1f}{suffix}"
                    if abs(value) < 100 * limit
                    else (f"{value / limit:.0f}{suffix}")
                )
            )
    return f"{int(value)}"


#: Below this many columns the view drops Seq and the change percent and abbreviates volumes.
WIDE_COLUMNS = 110


class DemoView:
    """The live view, laid out for the console it is drawn on: the full board from
    `WIDE_COLUMNS` up, a compact one below (80x24 fits), with book depth cut to the height."""

    def __init__(self, view: ViewData, redis_url: str, duration: float, prefix: str) -> None:
        self.view, self.redis_url, self.duration, self.prefix = view, redis_url, duration, prefix

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.build(options.max_width, options.size.height)

    def build(self, width: int, height: int) -> RenderableType:
        view, wide = self.view, width >= WIDE_COLUMNS
        quotes = Table(
            title=f"Quotes ({self.prefix}:latest:tick:*)",
            title_justify="left",
            show_edge=wide,
        )
        quotes.add_column("Symbol", min_width=22 if wide else None, no_wrap=True)
        names = (
            ("Bid", "Ask", "Last", "Volume", "Change", "Seq")
            if wide
            else ("Bid", "Ask", "Last", "Vol", "Chg")
        )
        for name in names:
            quotes.add_column(name, justify="right", min_width=10 if wide else None, no_wrap=True)
        for symbol, quote in view.quotes:
            if quote is None:
                quotes.add_row(symbol, "waiting", *[""] * (len(names) - 1))
                continue
            row: list[RenderableType] = [
                symbol,
                px(quote.get("bid")),
                px(quote.get("ask")),
                px(quote.get("last")),
                qty(quote.get("volume")) if wide else _short_qty(quote.get("volume")),
                _change(quote, percent=wide),
            ]
            if wide:
                row.append(str(quote.get("seq", "-")))
            quotes.add_row(*row)
        # title + header + separator + rows (+ top and bottom edges when wide)
        quote_lines = 3 + len(view.quotes) + (2 if wide else 0)

        book = view.book or {}
        book_title = f"Book {book.get('symbol', '')} {book.get('venue', '')}".rstrip()
        books = Table(title=book_title, expand=wide, title_justify="left", show_edge=wide)
        # the market-maker counts only when there is room for them
        for name in (
            ("Size", "Bid", "Ask", "Size", "MMs") if wide else ("Size", "Bid", "Ask", "Size")
        ):
            books.add_column(name, justify="right", no_wrap=True)
        # the outer panel's 2 lines, the quotes, the book's title/header/separator(/edges), and
        # one spare line for the cursor under a Live view
        extra_lines = 0 if wide else bool(view.bar) + bool(view.screener)
        room = height - 2 - quote_lines - (5 if wide else 3) - extra_lines - 1
        depth = max(1, min(BOOK_DEPTH, room))
        bids, asks = book.get("bids") or [], book.get("asks") or []
        for i in range(min(depth, max(len(bids), len(asks)))):
            bid = bids[i] if i < len(bids) else {}
            ask = asks[i] if i < len(asks) else {}
            books.add_row(
                qty(bid.get("size")),
                Text(px(bid.get("price")), style="green"),
                Text(px(ask.get("price")), style="red"),
                qty(ask.get("size")),
                *([f"{bid.get('count', '-')}/{ask.get('count', '-')}"] if wide else []),
            )

        snap = view.snapshot
        state_style = "green" if snap.state == "subscribed" else "yellow"
        health = Table.grid(padding=(0, 1))
        health.add_column(style="bold", no_wrap=True, min_width=7)
        health.add_column(no_wrap=True)
        latency = f"p50 {_ms(snap.latency_p50_ms)}  p99 {_ms(snap.latency_p99_ms)}"
        if wide:
            health.add_row("connection", Text(snap.state, style=state_style))
            health.add_row("events", f"{snap.events_published:,} ({snap.events_per_second:,.0f}/s)")
            health.add_row("latency", latency)
            health.add_row("queue", f"{snap.queue_depth:,}")
            health.add_row("reconnects", str(snap.reconnects))
            health.add_row("access token", _left(snap.access_seconds_left))
            health.add_row("refresh token", _left(snap.refresh_seconds_left))
        else:
            state = Text(snap.state, style=state_style)
            state.append(f", {snap.reconnects} reconnects", style="")
            health.add_row("link", state)
            health.add_row("events", f"{snap.events_published:,} ({snap.events_per_second:,.0f}/s)")
            health.add_row("latency", latency.replace("  ", " "))
            health.add_row("queue", f"{snap.queue_depth:,}")
            health.add_row(
                "tokens", f"{_left(snap.access_seconds_left)} / {_left(snap.refresh_seconds_left)}"
            )
        # narrow: the bar and the screener get whole lines under the book, not a cramped column
        extra = health if wide else Table.grid(padding=(0, 1))
        if not wide:
            extra.add_column(style="bold", no_wrap=True)
            extra.add_column(no_wrap=True, overflow="ellipsis")
        if view.bar:
            extra.add_row(f"bar {view.bar.get('symbol', '')}", describe(view.bar))
        if view.screener:
            items = view.screener.get("items") or []
            top = ", ".join(str(item.get("symbol")) for item in items[:4])
            extra.add_row("screener", f"{view.screener.get('symbol', '')}: {top}")

        lower = Table.grid(expand=True, padding=(0, 2))
        if wide:
            lower.add_column(ratio=1)
            lower.add_column(ratio=1)
            lower.add_row(books, Panel(health, title="Pipeline", title_align="left"))
        else:
            lower.add_column()
            lower.add_column(ratio=1)
            lower.add_row(books, health)
        until = f" of {self.duration:.0f} s" if self.duration else " (Ctrl-C ends it)"
        title = (
            "schwab-stream demo: simulator -> pipeline -> Redis" if wide else ("schwab-stream demo")
        )
        parts: list[RenderableType] = [quotes, lower] if wide else [quotes, lower, extra]
        return Panel(
            Group(*parts),
            title=title,
            subtitle=f"{self.redis_url}   {view.elapsed:.0f} s{until}",
        )


def render(view: ViewData, redis_url: str, duration: float, prefix: str) -> RenderableType:
    """The live view: quote board, top of one book, and the pipeline's health, laid out for the
    size of the console it is printed on."""
    return DemoView(view, redis_url, duration, prefix)


def compact_line(view: ViewData) -> str:
    """The `--no-ui` line printed once a second."""
    snap = view.snapshot
    first = next(((s, q) for s, q in view.quotes if q), None)
    quote = ""
    if first is not None:
        symbol, q = first
        quote = f" {symbol} {px(q.get('bid'))}/{px(q.get('ask'))} last {px(q.get('last'))}"
    book = ""
    if view.book and view.book.get("bids") and view.book.get("asks"):
        book = (
            f" book {view.book.get('symbol')} {px(view.book['bids'][0].get('price'))}"
            f"/{px(view.book['asks'][0].get('price'))}"
        )
    return (
        f"{view.elapsed:5.0f}s {snap.state} events={snap.events_published} "
        f"({snap.events_per_second:.0f}/s) p50={_ms(snap.latency_p50_ms)} "
        f"p99={_ms(snap.latency_p99_ms)} queue={snap.queue_depth} "
        f"reconnects={snap.reconnects} access={_left(snap.access_seconds_left)}"
        f"{quote}{book}"
    )


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


class Demo:
    """Owns everything the demo starts, so one `close()` takes it all down in order."""

    def __init__(self, options: DemoOptions, console: Console) -> None:
        self.options = options
        self.console = console
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
        from schwab_stream.telemetry import setup_logging

        if self.options.ui:
            self.log_file = (self.folder / "demo.log").open("w", encoding="utf-8")
            setup_logging("json", "INFO", stream=self.log_file)
        else:
            setup_logging("auto", "WARNING")

    async def run(self) -> int:
        self._setup_logging()
        opts = self.options
        self.sim = await asyncio.to_thread(
            SimThread(SimConfig(rate=DEMO_RATE, time_scale=opts.time_scale)).start
        )
        if self.stopping:
            return 0
        if opts.redis_url:
            await _check_redis(opts.redis_url)
        else:
            self.redis = await asyncio.to_thread(EmbeddedRedis().start)
            self.redis_url = self.redis.url
        if self.stopping:
            return 0
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
            return 0
        self.pipeline = Pipeline(settings, opts.subscriptions)
        task = asyncio.create_task(self.pipeline.run(), name="pipeline")
        client = aioredis.Redis.from_url(self.redis_url, socket_timeout=2.0)
        try:
            await self._show(task, RedisView(client, opts.prefix, opts.subscriptions))
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
        interval = 0.5 if opts.ui else 1.0
        assert self.pipeline is not None
        live = (
            Live(console=self.console, refresh_per_second=4, transient=False)
            if opts.ui
            else contextlib.nullcontext()
        )
        with live:
            while not task.done():
                elapsed = time.monotonic() - started
                if opts.duration and elapsed >= opts.duration:
                    self.pipeline.stop()
                    break
                view = ViewData(elapsed=elapsed, snapshot=self.pipeline.snapshot())
                await reader.read(view)
                if isinstance(live, Live):
                    live.update(render(view, self.redis_url, opts.duration, opts.prefix))
                else:
                    click.echo(compact_line(view))
                await asyncio.wait({task}, timeout=interval)

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
        click.echo(f"redis       {self.redis_url}  ({where})")
        click.echo(f"temp files  {self.folder}  (removed at exit)")
        click.echo(f"follow it   {_self_command()} tail --redis-url {self.redis_url} --symbol AAPL")

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
        p, url = self.options.prefix, self.redis_url
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
        tail = f"{_self_command()} tail --redis-url $REDIS_URL"
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
    client = aioredis.Redis.from_url(url, socket_connect_timeout=3.0, socket_timeout=3.0)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        raise SchwabStreamError(f"cannot reach Redis at {url}: {exc}") from None
    finally:
        await client.aclose()


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
    "--prefix", default="schwab", show_default=True, help="Redis key prefix to write under."
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
    options = DemoOptions(
        duration=duration,
        ui=not no_ui,
        redis_url=redis_url,
        keep_redis=keep_redis,
        time_scale=time_scale,
        prefix=prefix,
        subscriptions=subscriptions,
    )
    console = Console(highlight=False)
    runner = Demo(options, console)
    code = 1
    try:
        code = run_async(_main(runner))
    except KeyboardInterrupt:
        code = 0
    except SchwabStreamError as exc:
        click.echo(f"schwab-stream demo: {exc}", err=True)
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
