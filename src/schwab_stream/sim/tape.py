"""The tape: every trade of one symbol, a pure function of (seed, symbol, trade date).

This is what makes a bar the same whether it streamed over CHART_EQUITY / CHART_FUTURES or was
served by `/marketdata/v1/pricehistory`: the live instrument *consumes* its tape up to the market
clock (level one's last, volume, open/high/low and the chart bars all come from it), and the
history endpoint reads the same tape for any minute, also minutes no client was connected for or
minutes before the simulator started. Nothing about the tape depends on who asked, when, or how
often; only on the seed, the symbol, the trade date and the session times.

A trade date's path is a Brownian bridge in log price from that date's anchor to the next trade
date's anchor (anchors are drawn per date around the symbol's reference price, so the path stays
plausible for any date without computing the dates before it). Each minute of the session has
`TRADES_PER_MINUTE` trades at seeded offsets (or none, with probability `gap_rate`: Schwab's
history has minutes without a bar), priced along the bridge with a little jitter, on the tick.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta

from schwab_stream.sim.clock import MINUTE_MS, et_date
from schwab_stream.sim.hours import SEARCH_DAYS, Schedule

#: Trades in a minute with trades, per kind: uniform in this range (inclusive).
TRADES_PER_MINUTE = {"equity": (4, 16), "index": (4, 16), "future": (4, 16), "forex": (2, 6)}
#: Trade sizes, in units of the instrument's trade lot.
SIZES = (1, 1, 1, 2, 3, 5, 10, 20)
#: Per-minute log volatility and the spread of daily anchors, per kind.
MINUTE_SIGMA = {"equity": 0.0006, "index": 0.0005, "future": 0.0004, "forex": 0.0002}
DAILY_SIGMA = {"equity": 0.012, "index": 0.01, "future": 0.01, "forex": 0.004}
#: Trade dates whose trades are kept per symbol (the live instrument reads today's), and whose
#: bars alone are kept (history requests): a day's trades are ~12,000 entries, its bars ~800.
CACHE_TRADE_DAYS = 3
CACHE_BAR_DAYS = 16


def round_tick(value: float, tick: float, places: int) -> float:
    return round(round(value / tick) * tick, places)


@dataclass
class Bar:
    """One one-minute candle built from trades; `start_ms` is the minute's start."""

    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass(frozen=True)
class DayTape:
    """One trade date's trades (parallel lists, in time order) and their one-minute bars."""

    day: date
    start_ms: int
    end_ms: int
    ms: list[int]
    prices: list[float]
    sizes: list[int]
    bars: list[Bar]
    #: The day's closing price: the last regular-session trade (equities), else the last trade.
    close: float
    close_ms: int


class Tape:
    """One symbol's trades for any trade date, made on demand and cached for a few dates."""

    def __init__(
        self,
        seed: int,
        symbol: str,
        schedule: Schedule,
        tick: float,
        places: int,
        trade_lot: int,
        base: float,
        gap_rate: float = 0.0,
    ) -> None:
        self.seed = seed
        self.symbol = symbol
        self.schedule = schedule
        self.tick = tick
        self.places = places
        self.trade_lot = trade_lot
        self.base = base
        self.gap_rate = gap_rate
        kind = schedule.kind if schedule.kind in MINUTE_SIGMA else "equity"
        self.sigma = MINUTE_SIGMA[kind]
        self.daily = DAILY_SIGMA[kind]
        self.per_minute = TRADES_PER_MINUTE[kind]
        self._days: OrderedDict[date, DayTape | None] = OrderedDict()
        self._bars: OrderedDict[date, DayTape | None] = OrderedDict()

    # ---- dates -----------------------------------------------------------------------------

    def anchor(self, day: date) -> float:
        """The price the path passes at the start of trade date `day` (its session's open)."""
        rng = random.Random(f"{self.seed}|{self.symbol}|anchor|{day.isoformat()}")
        return self.base * math.exp(self.daily * rng.gauss(0.0, 1.0))

    def next_trade_date(self, day: date) -> date:
        for n in range(1, SEARCH_DAYS):
            following = day + timedelta(days=n)
            if self.schedule.trades_on(following):
                return following
        return day + timedelta(days=1)

    def previous_trade_date(self, day: date) -> date:
        for n in range(1, SEARCH_DAYS):
            before = day - timedelta(days=n)
            if self.schedule.trades_on(before):
                return before
        return day - timedelta(days=1)

    def trade_date_at(self, ms: int) -> date | None:
        """The trade date whose session contains `ms` (None outside every session)."""
        today = et_date(ms)
        for day in (today, today + timedelta(days=1)):
            for start, end in self.schedule.spans(day):
                if start <= ms < end:
                    return day
        return None

    def session_start(self, ms: int) -> tuple[date, int]:
        """(trade date, session start) of the session open at `ms`, or of the last one before."""
        inside = self.schedule.last_open(ms)
        day = self.trade_date_at(inside)
        assert day is not None
        return day, self.schedule.spans(day)[0][0]

    # ---- one trade date --------------------------------------------------------------------

    def day(self, day: date) -> DayTape | None:
        """The trades and bars of trade date `day` (None if this market does not trade then)."""
        if day in self._days:
            self._days.move_to_end(day)
            return self._days[day]
        made = self._make(day)
        self._days[day] = made
        while len(self._days) > CACHE_TRADE_DAYS:
            self._days.popitem(last=False)
        return made

    def day_bars(self, day: date) -> DayTape | None:
        """Trade date `day` without its trades (bars, close, span): what history reads."""
        if day in self._bars:
            self._bars.move_to_end(day)
            return self._bars[day]
        full = self._days[day] if day in self._days else self._make(day)
        made = None if full is None else replace(full, ms=[], prices=[], sizes=[])
        self._bars[day] = made
        while len(self._bars) > CACHE_BAR_DAYS:
            self._bars.popitem(last=False)
        return made

    def _make(self, day: date) -> DayTape | None:
        spans = self.schedule.spans(day)
        if not spans:
            return None
        start, end = spans[0]
        regular = self.schedule.spans(day, regular=True)
        regular_end = regular[0][1] if regular else end
        minutes = (end - start) // MINUTE_MS
        rng = random.Random(f"{self.seed}|{self.symbol}|tape|{day.isoformat()}")
        a0, a1 = self.anchor(day), self.anchor(self.next_trade_date(day))
        walk = [0.0]
        x = 0.0
        for _ in range(minutes):
            x += rng.gauss(0.0, self.sigma)
            walk.append(x)
        lift = math.log(a1 / a0) - walk[-1]
        path = [a0 * math.exp(w + lift * i / minutes) for i, w in enumerate(walk)]
        tick, places, lot = self.tick, self.places, self.trade_lot
        low_n, high_n = self.per_minute
        n_sizes = len(SIZES)
        random_ = rng.random
        ms: list[int] = []
        prices: list[float] = []
        sizes: list[int] = []
        bars: list[Bar] = []
        close, close_ms = round_tick(a0, tick, places), start
        for i in range(minutes):
            if self.gap_rate and random_() < self.gap_rate:
                continue
            m0 = start + i * MINUTE_MS
            p0 = path[i]
            slope = (path[i + 1] - p0) / MINUTE_MS
            jitter = max(2 * tick, p0 * self.sigma * 0.5)
            count = low_n + int(random_() * (high_n - low_n + 1))
            offsets = sorted(int(random_() * MINUTE_MS) for _ in range(count))
            first = len(prices)
            for off in offsets:
                raw = p0 + slope * off + (random_() - 0.5) * jitter
                prices.append(round(round(max(raw, tick) / tick) * tick, places))
                sizes.append(lot * SIZES[int(random_() * n_sizes)])
                ms.append(m0 + off)
            minute_prices = prices[first:]
            bars.append(
                Bar(
                    m0,
                    minute_prices[0],
                    max(minute_prices),
                    min(minute_prices),
                    minute_prices[-1],
                    sum(sizes[first:]),
                )
            )
            if m0 < regular_end:
                last_regular = max(
                    (j for j in range(first, len(ms)) if ms[j] < regular_end), default=None
                )
                if last_regular is not None:
                    close, close_ms = prices[last_regular], ms[last_regular]
        return DayTape(day, start, end, ms, prices, sizes, bars, close, close_ms)

    # ---- ranges ----------------------------------------------------------------------------

    def _days_between(self, after_ms: int, upto_ms: int, trades: bool = True) -> Iterator[DayTape]:
        """The day tapes whose sessions may hold moments in (after_ms, upto_ms], in order."""
        day = et_date(after_ms) - timedelta(days=1)
        last = et_date(upto_ms) + timedelta(days=1)
        get = self.day if trades else self.day_bars
        while day <= last:
            spans = self.schedule.spans(day)
            if spans and spans[0][1] > after_ms and spans[0][0] <= upto_ms:
                found = get(day)
                if found is not None:
                    yield found
            day += timedelta(days=1)

    def trades(self, after_ms: int, upto_ms: int) -> Iterator[tuple[int, float, int]]:
        """(ms, price, size) of every trade with after_ms < ms <= upto_ms, in time order."""
        for tape in self._days_between(after_ms, upto_ms):
            lo = bisect_right(tape.ms, after_ms)
            hi = bisect_right(tape.ms, upto_ms)
            for i in range(lo, hi):
                yield tape.ms[i], tape.prices[i], tape.sizes[i]

    def bars(self, from_ms: int, until_ms: int) -> list[Bar]:
        """The bars starting in [from_ms, until_ms), in time order."""
        out: list[Bar] = []
        if until_ms <= from_ms:
            return out
        for tape in self._days_between(from_ms - 1, until_ms, trades=False):
            out.extend(b for b in tape.bars if from_ms <= b.start_ms < until_ms)
        return out

    def previous_close(self, day: date) -> tuple[float, int]:
        """(price, ms) of the close of the trade date before `day`."""
        before = self.day_bars(self.previous_trade_date(day))
        if before is None:
            return round_tick(self.anchor(day), self.tick, self.places), 0
        return before.close, before.close_ms
