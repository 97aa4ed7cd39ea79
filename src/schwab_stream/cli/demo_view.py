"""The demo's live view: what a consumer reads in Redis, laid out with rich for the console it is
drawn on, or one plain line a second (`--no-ui`). No lifecycle here: `demo` starts and stops things.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

import click
import redis.asyncio as aioredis
from redis.exceptions import RedisError
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from schwab_stream.cli.formatting import describe, ms, px, qty, short_qty, time_left
from schwab_stream.publish.keys import StreamKeys

if TYPE_CHECKING:
    from schwab_stream.pipeline import Snapshot

log = logging.getLogger("schwab_stream.demo")

BOOK_DEPTH = 5
#: Below this many columns the view drops Seq and the change percent and abbreviates volumes.
WIDE_COLUMNS = 110


@dataclass
class ViewData:
    """One frame of the view: the pipeline's own numbers plus what a consumer reads in Redis."""

    elapsed: float
    snapshot: Snapshot
    #: The market clock as the screen says it ("simulated session, Fri 10:30 ET").
    market: str = ""
    quotes: list[tuple[str, dict[str, Any] | None]] = field(default_factory=list)
    book: dict[str, Any] | None = None
    bar: dict[str, Any] | None = None
    screener: dict[str, Any] | None = None


class RedisView:
    """Reads the latest state the pipeline wrote, the way a user's program would."""

    def __init__(
        self, client: aioredis.Redis, keys: StreamKeys, subs: dict[str, list[str]]
    ) -> None:
        self.client = client
        self.keys = keys
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
        #: Whether the last read failed: its warning is said once per outage, not every frame
        self.failing = False

    async def read(self, view: ViewData) -> None:
        """Fill `view` from Redis; an unreachable Redis leaves the last values out, not a crash.
        One pipeline of single-key reads, so on a cluster each goes to its own node."""
        keys = self.keys
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for symbol in self.quote_symbols:
                    pipe.get(keys.latest("tick", symbol))
                if self.book_symbol:
                    pipe.get(keys.latest("level2", self.book_symbol))
                if self.bar_symbol:
                    pipe.xrevrange(keys.symbol_stream("bar", self.bar_symbol), count=1)
                if self.screener_key:
                    pipe.xrevrange(keys.symbol_stream("screener", self.screener_key), count=1)
                replies: list[Any] = list(await pipe.execute())
        except (RedisError, OSError) as exc:
            if not self.failing:
                log.warning("the view could not read redis: %s", exc)
            self.failing = True
            return
        if self.failing:
            log.info("the view reads redis again")
        self.failing = False
        view.quotes = [
            (symbol, _document(item))
            for symbol, item in zip(self.quote_symbols, replies, strict=False)
        ]
        replies = replies[len(self.quote_symbols) :]
        if self.book_symbol:
            view.book = _document(replies.pop(0))
        if self.bar_symbol:
            view.bar = _last_entry(replies.pop(0))
        if self.screener_key:
            view.screener = _last_entry(replies.pop(0))


def _document(raw: Any) -> dict[str, Any] | None:
    """A JSON object the bridge wrote, or None for anything else someone else put there (the
    view shows it as not there yet, rather than ending the demo)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _last_entry(entries: Any) -> dict[str, Any] | None:
    if not entries:
        return None
    return _document(entries[0][1].get(b"data"))


def _change(quote: dict[str, Any], percent: bool = True) -> Text:
    change, close = quote.get("net_change"), quote.get("close")
    if not isinstance(change, int | float):
        return Text("-")
    pct = ""
    if percent and isinstance(close, int | float) and close:
        pct = f" ({change / close:+.2%})"
    style = "green" if change > 0 else "red" if change < 0 else ""
    return Text(f"{change:+,.2f}{pct}", style=style)


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
                qty(quote.get("volume")) if wide else short_qty(quote.get("volume")),
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
        latency = f"p50 {ms(snap.latency_p50_ms)}  p99 {ms(snap.latency_p99_ms)}"
        if wide:
            health.add_row("connection", Text(snap.state, style=state_style))
            health.add_row("events", f"{snap.events_published:,} ({snap.events_per_second:,.0f}/s)")
            health.add_row("latency", latency)
            health.add_row("queue", f"{snap.queue_depth:,}")
            health.add_row("reconnects", str(snap.reconnects))
            health.add_row("access token", time_left(snap.access_seconds_left))
            health.add_row("refresh token", time_left(snap.refresh_seconds_left))
        else:
            state = Text(snap.state, style=state_style)
            state.append(f", {snap.reconnects} reconnects", style="")
            health.add_row("link", state)
            health.add_row("events", f"{snap.events_published:,} ({snap.events_per_second:,.0f}/s)")
            health.add_row("latency", latency.replace("  ", " "))
            health.add_row("queue", f"{snap.queue_depth:,}")
            health.add_row(
                "tokens",
                f"{time_left(snap.access_seconds_left)} / {time_left(snap.refresh_seconds_left)}",
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
            subtitle=f"{view.market}   {self.redis_url}   {view.elapsed:.0f} s{until}".strip(),
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
    market = f" [{view.market}]" if view.market else ""
    return (
        f"{view.elapsed:5.0f}s {snap.state} events={snap.events_published} "
        f"({snap.events_per_second:.0f}/s) p50={ms(snap.latency_p50_ms)} "
        f"p99={ms(snap.latency_p99_ms)} queue={snap.queue_depth} "
        f"reconnects={snap.reconnects} access={time_left(snap.access_seconds_left)}"
        f"{quote}{book}{market}"
    )


class Screen:
    """Where the view goes: a rich `Live` board that redraws in place, or (`ui=False`) one
    `compact_line` per update. A context manager: the board is shown inside the `with`."""

    def __init__(self, ui: bool, redis_url: str, duration: float, prefix: str) -> None:
        self.ui, self.redis_url, self.duration, self.prefix = ui, redis_url, duration, prefix
        #: seconds between updates: the board redraws faster than a line a second scrolls
        self.interval = 0.5 if ui else 1.0
        self._live: Live | None = None

    def __enter__(self) -> Screen:
        if self.ui:
            console = Console(highlight=False)
            self._live = Live(console=console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        live, self._live = self._live, None
        if live is not None:
            live.__exit__(exc_type, exc, tb)

    def update(self, view: ViewData) -> None:
        if self._live is not None:
            self._live.update(render(view, self.redis_url, self.duration, self.prefix))
        else:
            click.echo(compact_line(view))
