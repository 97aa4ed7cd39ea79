"""The tape drawn a minute at a time: a minute's trades agree with its bar, any minute reads the
same alone or with its day, and an instrument that prints whole minutes from their bars ends in
exactly the state printing every trade in turn leaves."""

from __future__ import annotations

import dataclasses
import random
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schwab_stream.sim.hours import MarketHours, Schedule
from schwab_stream.sim.instruments import Instrument, tape_venue
from schwab_stream.sim.registry import Market
from schwab_stream.sim.tape import Tape

NY = ZoneInfo("America/New_York")
#: A tape per kind of market: (kind, symbol, tick, trade lot, base price).
TAPES = [
    ("equity", "AAPL", 0.01, 1, 190.0),
    ("equity", "QZX", 0.01, 1, 8.5),
    ("index", "$SPX", 0.01, 100, 5400.0),
    ("future", "/ES", 0.25, 1, 5500.0),
    ("future", "/ZN", 0.015625, 1, 110.0),
    ("future", "/6E", 0.00005, 1, 1.08),
    ("forex", "USD/JPY", 0.001, 10_000, 157.0),
]
DAYS = [date(2025, 6, 10), date(2025, 11, 28), date(2025, 12, 24)]  # a Tuesday, two early closes


def at(day: date, hh: int, mm: int, ss: int = 0) -> int:
    return int(datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=NY).timestamp() * 1000)


def make(kind: str, symbol: str, tick: float, lot: int, base: float, gap: float = 0.0) -> Tape:
    places = max(2, len(f"{tick:.10f}".rstrip("0").partition(".")[2]))
    return Tape(5, symbol, Schedule(kind, MarketHours()), tick, places, lot, base, gap)


@pytest.mark.parametrize("gap", [0.0, 0.3])
@pytest.mark.parametrize("params", TAPES, ids=[t[1] for t in TAPES])
def test_a_minutes_trades_are_its_bar(
    params: tuple[str, str, float, int, float], gap: float
) -> None:
    tape = make(*params, gap=gap)
    tick = params[2]
    for day in DAYS:
        made = tape.day(day)
        if made is None:
            continue
        for i in range(made.minutes):
            minute = made.minute(i)
            trades = made.trades(i)
            if minute is None:
                assert trades == []
                continue
            ms = [t[0] for t in trades]
            prices = [t[1] for t in trades]
            assert ms == sorted(ms) and ms[-1] == minute.last_ms
            assert minute.start_ms <= ms[0] and ms[-1] < minute.start_ms + 60_000
            assert (minute.open, minute.high, minute.low, minute.close) == (
                prices[0],
                max(prices),
                min(prices),
                prices[-1],
            )
            assert minute.volume == sum(t[2] for t in trades) and minute.trades == len(trades)
            assert minute.last_size == trades[-1][2]
            assert all(p > 0 and abs(p / tick - round(p / tick)) < 1e-6 for p in prices)


@pytest.mark.parametrize("params", TAPES, ids=[t[1] for t in TAPES])
def test_a_minute_is_the_same_alone_or_with_its_day(
    params: tuple[str, str, float, int, float],
) -> None:
    """Nothing about a minute depends on which minutes were read before it."""
    whole = make(*params)
    day = whole.day(DAYS[0])
    assert day is not None
    everything = [day.trades(i) for i in range(day.minutes)]
    for i in random.Random(1).sample(range(day.minutes), 20):
        alone = make(*params).day(DAYS[0])
        assert alone is not None and alone.trades(i) == everything[i]
    close, close_ms = make(*params).previous_close(whole.next_trade_date(DAYS[0]))
    regular = whole.schedule.spans(DAYS[0], regular=True)[0]
    last = [t for t in whole.trades(regular[0] - 1, regular[1] - 1)][-1]
    assert (close, close_ms) == (last[1], last[0])


# ---- an instrument printing whole minutes from their bars, against trade by trade -----------

SKIP = {"rng", "terms", "hours", "tape", "underlying"}


def replay(self: Instrument, now_ms: int) -> bool:
    """The reference: every trade printed in turn, resets settled at each new minute's first."""
    tape = self.tape
    assert tape is not None
    if now_ms <= self.tape_ms:
        return False
    minute, printed = -1, False
    for ms, price, size in tape.trades(self.tape_ms, now_ms):
        if ms - ms % 60_000 != minute:
            minute = ms - ms % 60_000
            self.settle(ms)
        self.print_trade(price, size, ms, tape_venue(ms))
        printed = True
    self.tape_ms = now_ms
    return printed


def state(inst: Instrument) -> dict[str, Any]:
    out = {f.name: getattr(inst, f.name) for f in dataclasses.fields(inst) if f.name not in SKIP}
    out["bars"] = list(inst.bars)
    out["rng"] = inst.rng.getstate()
    return out


SYMBOLS = ["AAPL", "QZX", "QAB", "$SPX", "/ES", "/ZNZ25", "/QRT", "EUR/USD", "USD/JPY"]
#: (trade date, time ET) of a market's creation: before, in and after the regular session, at
#: night, a Saturday, an early close's post-market, a futures evening.
MOMENTS = [
    (DAYS[0], (7, 0, 1)),
    (DAYS[0], (9, 31, 17)),
    (DAYS[0], (10, 30)),
    (DAYS[0], (16, 0, 30)),
    (DAYS[0], (19, 59, 59)),
    (DAYS[0], (22, 0)),
    (date(2025, 6, 14), (12, 0)),
    (DAYS[1], (13, 5)),
    (DAYS[1], (18, 30)),
]


@pytest.mark.parametrize("gap", [0.0, 0.2])
@pytest.mark.parametrize("moment", MOMENTS, ids=[f"{d}-{t}" for d, t in MOMENTS])
def test_printing_whole_minutes_leaves_the_state_of_every_trade(
    moment: tuple[date, tuple[int, ...]], gap: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    day, hms = moment
    start = at(day, *hms)
    fast = Market(3, clock=lambda: 0.0, start_ms=start, gap_rate=gap)
    slow = Market(3, clock=lambda: 0.0, start_ms=start, gap_rate=gap)
    fast_made = [fast.instrument(s) for s in SYMBOLS]
    with monkeypatch.context() as patched:
        patched.setattr(Instrument, "consume", replay)
        slow_made = [slow.instrument(s) for s in SYMBOLS]
    steps = random.Random(start).choices([1, 900, 20_000, 61_000, 600_000, 3_700_000], k=12)
    for a, b in zip(fast_made, slow_made, strict=True):
        assert a is not None and b is not None
        assert state(a) == state(b)
        now = start
        for step in steps:
            now += step
            assert a.consume(now) == replay(b, now)
            a.settle(now)
            b.settle(now)
            assert state(a) == state(b), (a.symbol, now)
