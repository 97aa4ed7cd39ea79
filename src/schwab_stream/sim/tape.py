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
`TRADES_PER_MINUTE` trades (or none, with probability `gap_rate`: Schwab's history has minutes
without a bar), priced along the bridge with a little jitter, on the tick.

Nothing has to make a whole day to read one minute (a new instrument's previous close, its
session so far, a history window): the day's walk is eager and cheap, but a minute's draws are
random bytes at fixed places in a block of `BLOCK_MINUTES` minutes seeded by (seed, symbol, date,
block). Its bar (open, high, low, close, volume, and its last trade) comes from a few of them
without making its trades; its trades are made from the rest only when read, and always agree
with the bar: the first trade is the open, the last the close, one prints the high and one the
low, the others lie between.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import accumulate
from statistics import NormalDist
from struct import unpack_from
from typing import NamedTuple

from schwab_stream.sim.clock import MINUTE_MS, et_date
from schwab_stream.sim.hours import SEARCH_DAYS, Schedule

#: Trades in a minute with trades, per kind: uniform in this range (inclusive).
TRADES_PER_MINUTE = {"equity": (4, 16), "index": (4, 16), "future": (4, 16), "forex": (2, 6)}
#: Trade sizes, in units of the instrument's trade lot (one random byte picks one of the eight).
SIZES = (1, 1, 1, 2, 3, 5, 10, 20)
#: Per-minute log volatility and the spread of daily anchors, per kind.
MINUTE_SIGMA = {"equity": 0.0006, "index": 0.0005, "future": 0.0004, "forex": 0.0002}
DAILY_SIGMA = {"equity": 0.012, "index": 0.01, "future": 0.01, "forex": 0.004}
#: Trade dates kept per symbol (each holds its walk and the minutes drawn so far).
CACHE_DAYS = 16

#: A block's random bytes: for each of its minutes, 7 uint16 columns for the bars (gap, count,
#: open and close jitter, how far the high and the low reach, the last trade's offset), then per
#: minute its trades' details: a size byte each, a uint16 offset each (all but the last), a
#: price-jitter byte each (all but the first and the last), two bytes placing the high and low.
BLOCK_MINUTES = 60
MAX_TRADES = 16
BAR_COLUMNS = 7
SIZES_AT = 0
OFFSETS_AT = SIZES_AT + MAX_TRADES
JITTER_AT = OFFSETS_AT + 2 * (MAX_TRADES - 1)
SLOTS_AT = JITTER_AT + MAX_TRADES - 2
DETAIL_BYTES = SLOTS_AT + 2
DETAILS_AT = 2 * BAR_COLUMNS * BLOCK_MINUTES
BLOCK_BYTES = DETAILS_AT + DETAIL_BYTES * BLOCK_MINUTES
#: bytes.translate table: a random byte to its trade size in lots.
SIZE_TABLE = bytes(SIZES[b % len(SIZES)] for b in range(256))
U16 = 65536.0
#: The walk's steps: standard normal quantiles, one picked by the top NORMAL_BITS of a uint16.
NORMAL_BITS = 12
NORMALS = [NormalDist().inv_cdf((k + 0.5) / (1 << NORMAL_BITS)) for k in range(1 << NORMAL_BITS)]


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


class Minute(NamedTuple):
    """One minute of the tape without its trades: its bar, trade count and last trade."""

    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    trades: int
    last_ms: int
    last_size: int

    def bar(self) -> Bar:
        return Bar(self.start_ms, self.open, self.high, self.low, self.close, self.volume)


class DayTape:
    """One trade date: its walk (made at once) and its minutes (drawn when first read)."""

    def __init__(self, tape: Tape, day: date, start_ms: int, end_ms: int, regular_end: int) -> None:
        self.tape = tape
        self.day = day
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.regular_end = regular_end
        self.minutes = (end_ms - start_ms) // MINUTE_MS
        #: The price in ticks at each minute's start (and the session's end).
        self.path = tape.walk(day, self.minutes)
        self._raw: dict[int, bytes] = {}
        self._minutes: dict[int, list[Minute | None]] = {}
        self._close: tuple[float, int] | None = None

    def _draws(self, i: int) -> tuple[bytes, int]:
        """The random bytes of minute i's block, and where the minute's trade details start."""
        b, k = divmod(i, BLOCK_MINUTES)
        self._block(b)
        return self._raw[b], DETAILS_AT + k * DETAIL_BYTES

    def _geometry(self, i: int) -> tuple[float, float, float]:
        """In ticks: the path at the minute's start, its drift per ms, the trades' jitter."""
        p0 = self.path[i]
        return p0, (self.path[i + 1] - p0) / MINUTE_MS, max(2.0, p0 * self.tape.sigma * 0.5)

    def minute(self, i: int) -> Minute | None:
        """Minute i of the session (None: a minute without trades)."""
        b, k = divmod(i, BLOCK_MINUTES)
        return self._block(b)[k]

    def _block(self, b: int) -> list[Minute | None]:
        """The bars of block b's minutes, drawn together from the block's bytes (one loop, not a
        call a minute: a new symbol reads every minute since its session opened)."""
        found = self._minutes.get(b)
        if found is not None:
            return found
        t = self.tape
        rng = random.Random(f"{t.seed}|{t.symbol}|tape|{self.day.isoformat()}|{b}")
        raw = self._raw[b] = rng.randbytes(BLOCK_BYTES)
        first = b * BLOCK_MINUTES
        here = min(BLOCK_MINUTES, self.minutes - first)
        columns = unpack_from(f"<{BAR_COLUMNS * BLOCK_MINUTES}H", raw)
        gaps, counts, ojs, cjs, hrs, lrs, los = (
            columns[c * BLOCK_MINUTES : c * BLOCK_MINUTES + here] for c in range(BAR_COLUMNS)
        )
        gap_below = t.gap_rate * U16
        low_n, span = t.per_minute[0], t.per_minute[1] - t.per_minute[0] + 1
        half_sigma, lot, per, path = t.sigma * 0.5, t.trade_lot, t.per_tick, self.path
        minutes: list[Minute | None] = []
        start = self.start_ms + first * MINUTE_MS
        o = DETAILS_AT + SIZES_AT
        for k in range(here):
            if gaps[k] < gap_below:
                minutes.append(None)
                start += MINUTE_MS
                o += DETAIL_BYTES
                continue
            n = low_n + (counts[k] * span >> 16)
            sizes = raw[o : o + n].translate(SIZE_TABLE)
            last_off = MINUTE_MS - 1 - (los[k] * (MINUTE_MS // n) >> 16)  # in the last 1/n
            p0 = path[first + k]
            scale = max(2.0, p0 * half_sigma) / U16
            open_ = int(p0 + (ojs[k] - 32768) * scale + 0.5)
            drift = (path[first + k + 1] - p0) * last_off / MINUTE_MS
            close = int(p0 + drift + (cjs[k] - 32768) * scale + 0.5)
            if open_ < 1 or close < 1:  # a price near one tick: none below it
                open_, close = max(open_, 1), max(close, 1)
            top, bottom = (open_, close) if open_ > close else (close, open_)
            hr, low = hrs[k], bottom - int(lrs[k] * scale * 0.5 + 0.5)
            if low < 1:
                low = 1
            if n > 3:
                high = top + int(hr * scale * 0.5 + 0.5)
            elif n == 3:  # one trade between the first and the last: it prints one extreme
                high = top if hr & 1 else top + int(hr * scale * 0.5 + 0.5)
                low = low if hr & 1 else bottom
            else:
                high, low = top, bottom
            minutes.append(
                Minute(
                    start,
                    open_ / per,
                    high / per,
                    low / per,
                    close / per,
                    lot * sum(sizes),
                    n,
                    start + last_off,
                    lot * sizes[-1],
                )
            )
            start += MINUTE_MS
            o += DETAIL_BYTES
        self._minutes[b] = minutes
        return minutes

    def trades(self, i: int) -> list[tuple[int, float, int]]:
        """(ms, price, size) of minute i's trades in time order, agreeing with `minute(i)`."""
        m = self.minute(i)
        if m is None:
            return []
        t = self.tape
        per = t.per_tick
        buf, o = self._draws(i)
        n, last_off = m.trades, m.last_ms - m.start_ms
        raw = unpack_from(f"<{n - 1}H", buf, o + OFFSETS_AT)
        offsets = sorted(v * last_off >> 16 for v in raw)
        offsets.append(last_off)
        p0, slope, jitter = self._geometry(i)
        low, high = round(m.low * per), round(m.high * per)
        ticks = [round(m.open * per)]
        jitters = buf[o + JITTER_AT : o + JITTER_AT + n - 2]
        for off, j in zip(offsets[1:-1], jitters, strict=True):
            ticks.append(
                min(max(int(p0 + slope * off + (j / 256 - 0.5) * jitter + 0.5), low), high)
            )
        ticks.append(round(m.close * per))
        inner = n - 2
        if inner > 0:
            a, b = buf[o + SLOTS_AT], buf[o + SLOTS_AT + 1]
            high_at = 1 + a % inner
            if inner == 1:
                ticks[high_at] = high if high > max(ticks[0], ticks[-1]) else low
            else:
                low_at = 1 + b % (inner - 1)
                low_at += low_at >= high_at
                ticks[high_at], ticks[low_at] = high, low
        lot = t.trade_lot
        sizes = buf[o + SIZES_AT : o + SIZES_AT + n].translate(SIZE_TABLE)
        return [
            (m.start_ms + off, p / per, lot * s)
            for off, p, s in zip(offsets, ticks, sizes, strict=True)
        ]

    def close(self) -> tuple[float, int]:
        """(price, ms) of the day's close: its last regular-session trade (equities), else its
        last trade; the anchor at the session's start if it had none."""
        if self._close is None:
            last = min(self.minutes, (self.regular_end - self.start_ms) // MINUTE_MS) - 1
            self._close = round(self.path[0]) / self.tape.per_tick, self.start_ms
            for i in range(last, -1, -1):
                m = self.minute(i)
                if m is not None:
                    self._close = m.close, m.last_ms
                    break
        return self._close


class Tape:
    """One symbol's trades for any trade date, drawn on demand and cached for a few dates."""

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
        #: Prices are drawn in whole ticks and divided by this (every tick is 1/n).
        self.per_tick = round(1 / tick)
        if abs(self.per_tick * tick - 1) > 1e-9:
            raise ValueError(f"tick {tick} is not 1/n")
        self._days: OrderedDict[date, DayTape | None] = OrderedDict()

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

    def walk(self, day: date, minutes: int) -> list[float]:
        """The price in ticks at each minute boundary: a Brownian bridge in log price from the
        day's anchor to the next trade date's, one seeded normal a minute."""
        rng = random.Random(f"{self.seed}|{self.symbol}|walk|{day.isoformat()}")
        draws = unpack_from(f"<{minutes}H", rng.randbytes(2 * minutes))
        sigma, shift = self.sigma, 16 - NORMAL_BITS
        walk = [0.0, *accumulate(sigma * NORMALS[v >> shift] for v in draws)]
        a0, a1 = self.anchor(day), self.anchor(self.next_trade_date(day))
        lift = (math.log(a1 / a0) - walk[-1]) / minutes
        a0_ticks, exp = a0 * self.per_tick, math.exp
        return [a0_ticks * exp(w + lift * i) for i, w in enumerate(walk)]

    def day(self, day: date) -> DayTape | None:
        """Trade date `day` (None if this market does not trade then)."""
        if day in self._days:
            self._days.move_to_end(day)
            return self._days[day]
        spans = self.schedule.spans(day)
        made = None
        if spans:
            start, end = spans[0]
            regular = self.schedule.spans(day, regular=True)
            made = DayTape(self, day, start, end, regular[0][1] if regular else end)
        self._days[day] = made
        while len(self._days) > CACHE_DAYS:
            self._days.popitem(last=False)
        return made

    # ---- ranges ----------------------------------------------------------------------------

    def _days_between(self, after_ms: int, upto_ms: int) -> Iterator[DayTape]:
        """The day tapes whose sessions may hold moments in (after_ms, upto_ms], in order."""
        day = et_date(after_ms) - timedelta(days=1)
        last = et_date(upto_ms) + timedelta(days=1)
        while day <= last:
            spans = self.schedule.spans(day)
            if spans and spans[0][1] > after_ms and spans[0][0] <= upto_ms:
                found = self.day(day)
                if found is not None:
                    yield found
            day += timedelta(days=1)

    def minutes(self, after_ms: int, upto_ms: int) -> Iterator[tuple[DayTape, int, Minute]]:
        """(day, index, minute) of every minute with a trade after after_ms that starts by
        upto_ms, in time order (its trades past upto_ms are the reader's to leave)."""
        for tape in self._days_between(after_ms, upto_ms):
            lo = max(0, (after_ms - tape.start_ms) // MINUTE_MS)
            hi = min(tape.minutes - 1, (upto_ms - tape.start_ms) // MINUTE_MS)
            for i in range(lo, hi + 1):
                m = tape.minute(i)
                if m is not None and m.last_ms > after_ms:
                    yield tape, i, m

    def trades(self, after_ms: int, upto_ms: int) -> Iterator[tuple[int, float, int]]:
        """(ms, price, size) of every trade with after_ms < ms <= upto_ms, in time order."""
        for tape, i, _ in self.minutes(after_ms, upto_ms):
            for trade in tape.trades(i):
                if after_ms < trade[0] <= upto_ms:
                    yield trade

    def bars(self, from_ms: int, until_ms: int) -> list[Bar]:
        """The bars starting in [from_ms, until_ms), in time order."""
        out: list[Bar] = []
        if until_ms <= from_ms:
            return out
        for tape in self._days_between(from_ms - 1, until_ms):
            lo = max(0, -((tape.start_ms - from_ms) // MINUTE_MS))
            hi = min(tape.minutes, -((tape.start_ms - until_ms) // MINUTE_MS))
            for i in range(lo, hi):
                m = tape.minute(i)
                if m is not None:
                    out.append(m.bar())
        return out

    def previous_close(self, day: date) -> tuple[float, int]:
        """(price, ms) of the close of the trade date before `day`."""
        before = self.day(self.previous_trade_date(day))
        if before is None:
            return round_tick(self.anchor(day), self.tick, self.places), 0
        return before.close()
