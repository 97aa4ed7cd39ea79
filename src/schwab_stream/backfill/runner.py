"""Backfiller: the I/O around the back-fill rules. It reads each bar stream's last bar from
Redis, asks Schwab's price history for the missing minutes, and hands the bars to the
`BarSequencer`, whose output goes to the publisher.

When: at start (from the session's open, or the stream's last bar, whichever is later), after
every reconnect (from the last bar published), and for a key added at run time. Redis gaps need
none: the publisher keeps every bar through them. It runs beside the stream: REST calls go
through the market-data client's rate limiter, a few at a time, and only bars wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import msgspec
from redis.exceptions import RedisError

from schwab_stream.backfill.candles import (
    MINUTE_MS,
    NEW_YORK,
    local_time_ms,
    minute_floor,
    to_bars,
)
from schwab_stream.backfill.planner import BackfillPlanner, Fetch, Why
from schwab_stream.backfill.sequencer import BarSequencer
from schwab_stream.errors import RestError
from schwab_stream.events import BarEvent, Event
from schwab_stream.publish.keys import StreamKeys
from schwab_stream.redis_client import async_redis, is_cluster
from schwab_stream.rest.models import CandleList
from schwab_stream.rest.stats import RestStats
from schwab_stream.sink import EventSink

log = logging.getLogger(__name__)

#: Seconds a window waits after a login for the server's time (a frame's timestamp).
SERVER_TIME_WAIT = 5.0
#: The services whose keys are back-filled.
BAR_SERVICES = ("CHART_EQUITY", "CHART_FUTURES")


class History(Protocol):
    """What the back-fill needs of the market-data REST client (`rest.MarketDataClient`)."""

    @property
    def stats(self) -> RestStats: ...

    async def price_history(
        self, symbol: str, start_ms: int, end_ms: int, *, extended: bool = True
    ) -> CandleList: ...


@dataclass(frozen=True)
class SessionStart:
    """Where a key's session starts, New York time (docs/backfill.md): equities' extended session
    at 07:00 (CHART_EQUITY's first minute), futures the evening before at 18:00 (UNVERIFIED)."""

    equity: tuple[int, int] = (7, 0)
    futures: tuple[int, int] = (18, 0)

    @classmethod
    def from_settings(cls, equity: str, futures: str) -> SessionStart:
        """From `SCHWAB_BACKFILL_EQUITY_FROM` / `_FUTURES_FROM` (HH:MM, checked by settings)."""
        e_hour, e_minute = equity.split(":")
        f_hour, f_minute = futures.split(":")
        return cls((int(e_hour), int(e_minute)), (int(f_hour), int(f_minute)))

    def of(self, service: str, now_ms: int) -> int:
        hour, minute = self.futures if service == "CHART_FUTURES" else self.equity
        today = local_time_ms(now_ms, hour, minute)
        if today <= now_ms:
            return today
        return (
            local_time_ms(now_ms, hour, minute, days_back=1)
            if service == "CHART_FUTURES"
            else today
        )


@dataclass
class BackfillStats:
    """Plain counters for telemetry and the closing log line."""

    fetches: Counter[str] = field(default_factory=Counter)  # ok, retried, given_up
    bars: int = 0
    candles_bad: Counter[str] = field(default_factory=Counter)  # CandleProblem
    minutes_given_up: int = 0


class Backfiller:
    def __init__(
        self,
        history: History,
        redis_url: str,
        prefix: str,
        publisher: EventSink,
        wanted: Callable[[], Mapping[str, list[str]]],
        *,
        sequencer: BarSequencer | None = None,
        planner: BackfillPlanner | None = None,
        sessions: SessionStart | None = None,
        concurrency: int = 4,
        wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
    ) -> None:
        self.history = history
        self.prefix = prefix
        self.publisher = publisher
        self.wanted = wanted
        self.sequencer = sequencer or BarSequencer()
        self.planner = planner or BackfillPlanner()
        self.sessions = sessions or SessionStart()
        self.concurrency = concurrency
        self.wall_ms = wall_ms
        self.stats = BackfillStats()
        self.redis = async_redis(redis_url, socket_connect_timeout=2.0)
        self.keys = StreamKeys(prefix, cluster=is_cluster(redis_url))
        #: Keys whose stream's last bar was read from Redis
        self._read: set[str] = set()
        self._wake = asyncio.Event()
        #: Keys whose missing window waits for the server's time: symbol -> (service, why)
        self._due: dict[str, tuple[str, Why]] = {}
        #: The server's time: the newest `schwab_ts` seen since the last login (None: none yet)
        self.server_ms: int | None = None
        self._logged_in_at = 0.0

    # --- hooks (synchronous: called by the gate and the stream client) --------------------------

    def bar_keys(self) -> list[tuple[str, str]]:
        wanted = self.wanted()
        return [(s, k) for s in BAR_SERVICES for k in wanted.get(s, [])]

    def observe(self, schwab_ts: int | None) -> None:
        """The gate passes each batch's newest Schwab timestamp: the clock the windows end by
        (the server's, not ours: they differ by the host's clock error, and a simulator's
        market clock may be another day entirely)."""
        if schwab_ts is not None and (self.server_ms is None or schwab_ts > self.server_ms):
            self.server_ms = schwab_ts
            if self._due:
                self._wake.set()

    def on_logged_in(self) -> None:
        """A new connection: the minutes since each key's last bar are missing."""
        self.server_ms = None
        self._logged_in_at = time.monotonic()
        for service, symbol in self.bar_keys():
            self._hold(service, symbol, Why.RECONNECT)

    def on_change(self, changes: Mapping[str, tuple[list[str], list[str]]]) -> None:
        """Keys added at run time: their session so far is missing."""
        for service in BAR_SERVICES:
            for symbol in changes.get(service, ([], []))[0]:
                self._hold(service, symbol, Why.ADDED)

    def _hold(self, service: str, symbol: str, why: Why) -> None:
        """From now on the key's live bars wait; its window is planned once the server's time
        is known."""
        self.sequencer.begin_fill(symbol, 0, time.monotonic())
        if symbol not in self._due or why is Why.START:
            self._due[symbol] = (service, why)
        self._wake.set()

    def _plan_due(self) -> None:
        """Turn the keys waiting for the server's time into windows: from the session's start
        or the minute after the last bar, to the current minute (the wall clock if no frame
        came within a few seconds of the login: a market with nothing to send)."""
        if not self._due:
            return
        now_ms = self.server_ms
        if now_ms is None:
            if time.monotonic() - self._logged_in_at < SERVER_TIME_WAIT:
                return
            now_ms = self.wall_ms()
        due, self._due = self._due, {}
        for symbol, (service, why) in due.items():
            last = self.sequencer.last_start(symbol)
            start = self.sessions.of(service, now_ms)
            if last is not None:
                start = max(start, last + MINUTE_MS)
            if self.planner.want(service, symbol, start, minute_floor(now_ms), why, urgent=True):
                self.sequencer.fill_window(symbol, start)
            elif not self.planner.pending(symbol):
                self._release(self.sequencer.filled(symbol, []))  # nothing missing: let them go

    # --- the loop -------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Before streaming: read each key's last bar and plan the start's back-fill, so the
        first live bars already wait for it."""
        keys = self.bar_keys()
        await self._read_last(*(symbol for _, symbol in keys))
        self._logged_in_at = time.monotonic()
        for service, symbol in keys:
            self._hold(service, symbol, Why.START)

    async def run(self) -> None:
        running: dict[asyncio.Task[list[BarEvent]], Fetch] = {}
        try:
            while True:
                now = time.monotonic()
                self._plan_due()
                self._release(self.sequencer.expire(now))
                while len(running) < self.concurrency:
                    fetch = self.planner.next_fetch(now)
                    if fetch is None:
                        break
                    running[asyncio.create_task(self._fetch(fetch))] = fetch
                wake = min(
                    (t for t in (self.planner.wake_at(), self.sequencer.wake_at()) if t),
                    default=None,
                )
                timeout = 1.0 if wake is None else max(0.0, min(1.0, wake - now))
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                done, _ = await asyncio.wait(
                    {*running, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                )
                waiter.cancel()
                for task in [t for t in running if t in done]:
                    self._finish(running.pop(task), task)
        finally:
            for task in running:
                task.cancel()

    async def _fetch(self, fetch: Fetch) -> list[BarEvent]:
        if fetch.symbol not in self._read:
            await self._read_last(fetch.symbol)
        last = self.sequencer.last_start(fetch.symbol)
        start = fetch.start_ms if last is None else max(fetch.start_ms, last + MINUTE_MS)
        if start >= fetch.end_ms:
            return []
        answer = await self.history.price_history(fetch.symbol, start, fetch.end_ms)
        problems: Counter[str] = Counter()
        bars = to_bars(
            fetch.service,
            fetch.symbol,
            answer,
            start,
            fetch.end_ms,
            time.time_ns(),
            problems,
        )
        self.stats.candles_bad.update(problems)
        bad = {str(k): v for k, v in problems.items() if k != "outside" and v}
        if bad:
            log.warning("back-fill of %s: candles left out: %s", fetch.symbol, bad)
        return bars

    def _finish(self, fetch: Fetch, task: asyncio.Task[list[BarEvent]]) -> None:
        exc = task.exception()
        if exc is None:
            self.planner.done(fetch)
            self.stats.fetches["ok"] += 1
            published = self.sequencer.filled(fetch.symbol, task.result())
            self.stats.bars += sum(1 for b in published if b.backfilled)
            self._release(published)
            return
        final = isinstance(exc, RestError) and not exc.transient
        if not isinstance(exc, RestError | RedisError | OSError | TimeoutError):
            log.error("back-fill of %s failed: %r (a bug: please report)", fetch.symbol, exc)
            final = True
        if self.planner.failed(fetch, time.monotonic(), final=final):
            self.stats.fetches["retried"] += 1
            log.info("back-fill of %s failed (%s); trying again", fetch.symbol, exc)
            return
        self.stats.fetches["given_up"] += 1
        self._release(self.sequencer.abandon(fetch.symbol))
        self._say_incomplete(fetch.symbol, fetch.service, fetch.start_ms, fetch.end_ms, str(exc))

    def _release(self, bars: list[BarEvent]) -> None:
        if bars:
            events: list[Event] = [*bars]
            self.publisher.submit(events)
        for given in self.sequencer.take_given_up():
            self._say_incomplete(
                given.symbol, "", given.start_ms, given.end_ms, "back-fill did not land in time"
            )

    def _say_incomplete(
        self, symbol: str, service: str, start_ms: int, end_ms: int, why: str
    ) -> None:
        minutes = max(0, (end_ms - start_ms) // MINUTE_MS)
        self.stats.minutes_given_up += minutes
        detail = (
            f"{symbol}: {minutes} minutes from {_hhmm(start_ms)} to {_hhmm(end_ms)} "
            f"not back-filled ({why})"
        )
        log.warning("%s", detail)
        self.publisher.status(
            "backfill_incomplete",
            detail,
            symbol=symbol,
            service=service,
            start_ms=start_ms,
            end_ms=end_ms,
            minutes=minutes,
        )

    async def _read_last(self, *symbols: str) -> None:
        """The start of the last bar in each key's stream, in one round trip (nothing when Redis
        cannot say: the sequencer then only knows what it publishes)."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with self.redis.pipeline(transaction=False) as pipe:
                for symbol in symbols:
                    pipe.xrevrange(self.keys.symbol_stream("bar", symbol), count=1)
                replies: Any = await asyncio.wait_for(pipe.execute(), 5.0)
            for symbol, entries in zip(symbols, replies, strict=True):
                self.sequencer.known(symbol, _start_of(entries))
                self._read.add(symbol)

    def release_held(self) -> None:
        """Stopping: publish every live bar still waiting for a back-fill (after what was
        published, so the streams stay in order); the minutes before them are said missing."""
        for symbol in self.sequencer.filling_keys():
            self._release(self.sequencer.abandon(symbol))

    async def aclose(self) -> None:
        """Close what it opened (the REST client is its owner's)."""
        await self.redis.aclose()


def _start_of(entries: Any) -> int | None:
    """`start` of the bar in an XREVRANGE reply (None: no bar, or not one we can read)."""
    if not entries:
        return None
    try:
        return msgspec.json.decode(entries[0][1][b"data"], type=_Start).start
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError, IndexError, TypeError):
        return None


class _Start(msgspec.Struct):
    start: int | None = None


def _hhmm(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, NEW_YORK).strftime("%Y-%m-%d %H:%M ET")
