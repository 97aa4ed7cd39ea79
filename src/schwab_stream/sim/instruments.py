"""An instrument's terms and its walk: how one symbol's quote, trades and bars move.

Each instrument draws only from its own seeded RNG, in a fixed order per event, so one symbol's
path never depends on what else is subscribed. The terms are typed per asset kind (what the
level-one builders read), the walk state is shared by all kinds. An instrument trades only while
its `Schedule` says its market is open, and resets its daily fields at the times Schwab documents.
"""

from __future__ import annotations

import math
import random
from collections import deque
from dataclasses import dataclass, field
from datetime import date, timedelta

from schwab_stream.sim.clock import MINUTE_MS, et_date
from schwab_stream.sim.hours import Schedule, at
from schwab_stream.sim.pricing import Greeks, black_scholes
from schwab_stream.sim.reference import QUOTE_VENUES, TRADE_VENUES, EquityRef, FutureRef, Venue
from schwab_stream.sim.symbols import Kind
from schwab_stream.sim.tape import Bar, DayTape, Minute, Tape, round_tick

__all__ = ["Bar", "Instrument", "Print", "round_tick", "tick_places"]


def tick_places(tick: float) -> int:
    """Decimal places a price on this tick needs (at least 2)."""
    text = f"{tick:.10f}".rstrip("0")
    return max(2, len(text.partition(".")[2]))


def tape_venue(ms: int) -> Venue:
    """The venue of a tape trade: a function of the trade, so no RNG draw depends on how the
    tape was read (trade by trade or a minute at once)."""
    return TRADE_VENUES[ms % len(TRADE_VENUES)]


# ---- terms -----------------------------------------------------------------------------------


@dataclass
class Print:
    """A trade: price, size, time (epoch ms)."""

    price: float
    size: int
    ms: int


@dataclass
class EquityTerms:
    """An equity or an index: its reference row and asset main type ("EQUITY" or "INDEX")."""

    ref: EquityRef
    main_type: str
    dividend_date: str = ""  # field 26, "YYYY-MM-DD 00:00:00.0" ("" without a dividend)
    htb_quantity: int = -1  # field 46 (-1: NULL)
    htb_rate: float = 0.0  # field 47


@dataclass
class OptionTerms:
    """An option on a stock: what Black-Scholes needs, plus the contract's identity."""

    root: str
    expiry: date
    call: bool
    strike: float
    iv: float  # drifts a little with every re-quote
    open_interest: int
    rate: float  # risk-free rate for pricing (futures options are margined: 0)

    def greeks(self, underlying: float, now_ms: int) -> Greeks:
        days = (self.expiry - et_date(now_ms)).days
        t = max(days, 0.5) / 365
        return black_scholes(underlying, self.strike, t, self.iv, self.call, self.rate)


@dataclass
class FutureOptionTerms(OptionTerms):
    """An option on a future: an option's terms plus its product name and series style."""

    description: str
    style: str  # "Weeklys" or "Monthlys"


@dataclass
class FutureTerms:
    """A future: its root's product, and the contract month if the symbol names one (/ESZ24)."""

    ref: FutureRef
    root: str
    contract: tuple[str, str] | None  # (month code, YY)
    open_interest: int


@dataclass
class ForexTerms:
    """A currency pair: its description ("Euro/USDollar Spot")."""

    description: str


Terms = EquityTerms | OptionTerms | FutureTerms | ForexTerms

#: A tape instrument left alone longer than this starts again at its current session.
REBASE_MS = 3 * 86_400_000

#: Daily resets per kind: (minute since midnight New York of the trade date, what resets).
#: Equities and options follow the Streamer Guide (docs/schwab-api.md §11); futures and forex
#: start their day when their session opens (the evening before), a simplification.
RESETS: dict[str, tuple[tuple[int, str], ...]] = {
    "equity": ((3 * 60 + 30, "day"), (7 * 60 + 28, "volume")),
    "index": ((3 * 60 + 30, "day"), (7 * 60 + 28, "volume")),
    "option": ((3 * 60 + 30, "range"), (7 * 60 + 28, "open"), (7 * 60 + 29, "close")),
    "future": ((18 * 60 - 24 * 60, "session"),),
    "future_option": ((18 * 60 - 24 * 60, "session"),),
    "forex": ((17 * 60 - 24 * 60, "session"),),
}


# ---- the walk --------------------------------------------------------------------------------


@dataclass
class Instrument:
    """One symbol's live state; `step` is one market event (a quote move and maybe a trade)."""

    symbol: str
    kind: Kind
    rng: random.Random
    tick: float
    places: int
    lot: int  # bid/ask size unit as reported (1 = lots of 100 shares for equities)
    trade_lot: int  # granularity of trade sizes
    close: float
    last: float
    terms: Terms
    hours: Schedule
    bid: float = 0.0
    ask: float = 0.0
    bid_size: int = 1
    ask_size: int = 1
    last_size: int = 0
    volume: int = 0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    quote_ms: int = 0
    trade_ms: int = 0
    bid_ms: int = 0
    ask_ms: int = 0
    bid_venue: Venue = QUOTE_VENUES[0]
    ask_venue: Venue = QUOTE_VENUES[0]
    last_venue: Venue = QUOTE_VENUES[0]
    sigma: float = 0.00012  # per-event relative volatility: ~0.1% a second at demo rates
    trades: int = 0
    high52: float = 0.0  # the 52-week range, fixed at creation
    low52: float = 0.0
    underlying: Instrument | None = None
    bar: Bar | None = None
    bars: deque[Bar] = field(default_factory=lambda: deque(maxlen=240))
    last_event_ms: int = 0
    #: The last trade of a regular session (equity fields 29-31 and 36 keep it after the close).
    regular: Print | None = None
    #: Reset minute -> the trade date (ordinal) of the last reset applied (see RESETS).
    marks: dict[int, int] = field(default_factory=dict)
    #: Equities, indexes, futures and forex trade their tape (tape.py): every trade is a pure
    #: function of (seed, symbol, trade date), read up to the market clock; `tape_ms` is how far.
    #: Options and futures options (None) re-quote from their underlying and trade at random.
    tape: Tape | None = None
    tape_ms: int = 0

    def step(self, now_ms: int) -> None:
        """One market event at now_ms if the market is open (options re-quote from their
        underlying's move); closed, only the daily resets and the last bar happen."""
        if self.tape is not None:
            self.walk(now_ms)
            return
        if not self.hours.open_at(now_ms):
            self.settle(now_ms)
            return
        if self.underlying is None:
            self.walk(now_ms)
            return
        now_ms = max(now_ms, self.last_event_ms)
        self.last_event_ms = now_ms
        self.settle(now_ms)
        self.underlying.walk(now_ms, trade=self.rng.random() < 0.5)
        self.quote_from_underlying(now_ms)
        if self.rng.random() < 0.3:
            self.trade(now_ms)

    def settle(self, now_ms: int) -> None:
        """Apply the daily resets due by now_ms (once per trade date) and close a finished bar."""
        self.finish_bar(now_ms)
        for minute, what in RESETS[self.kind]:
            day = self.hours.reset_day(now_ms, minute)
            if self.marks.setdefault(minute, day) != day:
                self.marks[minute] = day
                self._reset(what)

    def _reset(self, what: str) -> None:
        if what in ("day", "range", "session"):
            self.high = self.low = 0.0
        if what in ("day", "session"):
            self.open = 0.0
            self.close = self.regular.price if what == "day" and self.regular else self.last
        if what in ("volume", "range", "session"):
            self.volume = 0
        if what == "open":
            self.open = 0.0
        if what == "close":
            self.close = self.last

    def walk(self, now_ms: int, trade: bool | None = None) -> None:
        """One random-walk event at now_ms: move the quote, and trade with some probability
        (nothing but the resets while the market is closed)."""
        now_ms = max(now_ms, self.last_event_ms)
        if self.tape is not None:
            fresh = self.consume(now_ms)
            self.settle(now_ms)
            if self.hours.open_at(now_ms):
                self.last_event_ms = now_ms
                self.quote_around_last(now_ms, force=fresh)
            return
        self.settle(now_ms)
        if not self.hours.open_at(now_ms):
            return
        self.last_event_ms = now_ms
        rng = self.rng
        if rng.random() < 0.8 or self.bid <= 0:
            self._move_quote(now_ms)
        if rng.random() < 0.6 if trade is None else trade:
            self.trade(now_ms)

    def consume(self, now_ms: int) -> bool:
        """Print the tape's trades up to now_ms (resets applied minute by minute on the way);
        True if there was one. After a long pause (REBASE_MS) it starts again at the session.
        Minutes wholly inside (tape_ms, now_ms] print a run at a time from their bars."""
        tape = self.tape
        if tape is None or now_ms <= self.tape_ms:
            return False
        if now_ms - self.tape_ms > REBASE_MS:
            self.tape_ms = tape.session_start(now_ms)[1] - 1
        after = self.tape_ms
        printed = False
        run: list[Minute] = []
        edge = 0
        for day, i, minute in tape.minutes(after, now_ms):
            if minute.start_ms > after and minute.last_ms <= now_ms:
                if run and minute.start_ms >= edge:
                    self.print_minutes(run)
                    run = []
                if not run:
                    edge = min(e for e in self._edges(day) if e > minute.start_ms)
                run.append(minute)
                printed = True
                continue
            if run:
                self.print_minutes(run)
                run = []
            first = True
            for ms, price, size in day.trades(i):
                if after < ms <= now_ms:
                    if first:
                        self.settle(ms)
                        first = False
                    self.print_trade(price, size, ms, tape_venue(ms))
                    printed = True
        if run:
            self.print_minutes(run)
        self.tape_ms = now_ms
        return printed

    def _edges(self, day: DayTape) -> list[int]:
        """The moments of a trade date's session where printing a trade may start to differ:
        its end, its regular session's edges and every daily reset near it (more is harmless:
        a run of whole minutes only stops there)."""
        near = [day.day + timedelta(days=k) for k in (-1, 0, 1)]
        edges = [at(d, minute) for d in near for minute, _ in RESETS[self.kind]]
        edges.extend(ms for span in self.hours.spans(day.day, regular=True) for ms in span)
        edges.append(day.end_ms)
        return edges

    def quote_around_last(self, now_ms: int, force: bool = False) -> None:
        """A tape instrument's quote: a spread of 1-5 ticks with the last trade inside it (so
        every trade printed at the bid, the ask or between); re-drawn on a trade or at random."""
        rng = self.rng
        if not (force or self.bid <= 0 or rng.random() < 0.8):
            return
        tick, places = self.tick, self.places
        width = rng.choice((1, 1, 1, 2, 2, 3, 5))
        bid = round_tick(max(self.last - rng.randint(0, width) * tick, tick), tick, places)
        ask = round_tick(bid + width * tick, tick, places)
        if bid != self.bid:
            self.bid_ms = now_ms
            self.bid_venue = rng.choice(QUOTE_VENUES)
        if ask != self.ask:
            self.ask_ms = now_ms
            self.ask_venue = rng.choice(QUOTE_VENUES)
        self.bid, self.ask = bid, ask
        if rng.random() < 0.7:
            self.bid_size = self.lot * rng.randint(1, 30)
            self.ask_size = self.lot * rng.randint(1, 30)
        self.quote_ms = now_ms

    def catch_up(self, now_ms: int, spacing_ms: int = 10_000) -> None:
        """Bring the trades up to now: a tape instrument prints its tape; another trades at
        least every spacing_ms of open market time, so every minute of a session has a bar (and
        no minute outside one)."""
        if self.tape is not None:
            self.consume(max(now_ms, self.tape_ms))
            self.settle(now_ms)
            return
        if now_ms - self.last_event_ms > 2 * 3_600_000:
            self.last_event_ms = now_ms - 2 * 3_600_000
        while self.last_event_ms + spacing_ms <= now_ms:
            at = self.hours.next_open(self.last_event_ms + spacing_ms)
            if at > now_ms:
                break
            self.walk(at, trade=True)
        self.settle(now_ms)

    def mid(self) -> float:
        return (self.bid + self.ask) / 2 if self.ask > 0 else self.last

    def mark(self) -> float:
        """Schwab's mark: last if it lies inside the spread, else the mid."""
        if self.bid <= self.last <= self.ask:
            return self.last
        return round(self.mid(), self.places + 1)

    def _fair(self) -> float:
        """Where the quote centres next: a mean-reverting random walk around the close."""
        drift = (self.close - self.mid()) * 0.001
        return self.mid() * math.exp(self.sigma * self.rng.gauss(0.0, 1.0)) + drift

    def _move_quote(self, now_ms: int) -> None:
        rng = self.rng
        fair = self._fair() if self.bid > 0 else self.last
        spread = self.tick * rng.choice((1, 1, 1, 2, 2, 3, 5))
        bid = round_tick(max(fair - spread / 2, self.tick), self.tick, self.places)
        ask = round_tick(bid + max(spread, self.tick), self.tick, self.places)
        if ask <= bid:
            ask = round_tick(bid + self.tick, self.tick, self.places)
        if bid != self.bid:
            self.bid_ms = now_ms
            self.bid_venue = rng.choice(QUOTE_VENUES)
        if ask != self.ask:
            self.ask_ms = now_ms
            self.ask_venue = rng.choice(QUOTE_VENUES)
        self.bid, self.ask = bid, ask
        if rng.random() < 0.7:
            self.bid_size = self.lot * rng.randint(1, 30)
            self.ask_size = self.lot * rng.randint(1, 30)
        self.quote_ms = now_ms

    def quote_from_underlying(self, now_ms: int) -> None:
        """Options quote around their model value from the underlying's mid, not a random walk."""
        und, terms = self.underlying, self.terms
        assert und is not None and isinstance(terms, OptionTerms)
        terms.iv = min(2.0, max(0.05, terms.iv * math.exp(self.rng.gauss(0, 0.002))))
        greeks = terms.greeks(und.mid(), now_ms)
        tick = 0.01 if greeks.price < 3 else 0.05
        half = max(tick, greeks.price * 0.01)
        bid = max(0.0, math.floor((greeks.price - half) / tick) * tick)
        ask = max(bid + tick, math.ceil((greeks.price + half) / tick) * tick)
        new_bid, new_ask = round(bid, 2), round(ask, 2)
        if new_bid != self.bid:
            self.bid_ms = now_ms
        if new_ask != self.ask:
            self.ask_ms = now_ms
        self.bid, self.ask, self.tick = new_bid, new_ask, tick
        self.quote_ms = now_ms
        if self.rng.random() < 0.7:
            self.bid_size = self.rng.randint(1, 60)
            self.ask_size = self.rng.randint(1, 60)

    def trade(self, now_ms: int) -> None:
        """A random trade at the bid, the ask or the mid (instruments without a tape)."""
        rng = self.rng
        side = rng.random()
        if side < 0.4:
            price = self.bid
        elif side < 0.8:
            price = self.ask
        else:
            price = round_tick(self.mid(), self.tick, self.places)
        size = self.trade_lot * rng.choice((1, 1, 1, 2, 3, 5, 10, 20))
        self.print_trade(price, size, now_ms, rng.choice(TRADE_VENUES))

    def print_trade(self, price: float, size: int, now_ms: int, venue: Venue) -> None:
        """A trade happened: last, volume, the regular-session open/high/low, the bar."""
        self.last, self.last_size = price, size
        self.volume += size
        self.trades += 1
        if self.hours.regular_at(now_ms):  # only regular-session trades set open, high, low
            self.regular = Print(price, size, now_ms)
            if self.open == 0:
                self.open = price
            self.high = max(self.high, price)
            self.low = min(self.low, price) if self.low else price
        self.trade_ms = now_ms
        self.last_venue = venue
        start = now_ms - now_ms % MINUTE_MS
        if self.bar is None or self.bar.start_ms != start:
            self.bar = Bar(start, price, price, price, price, size)
        else:
            bar = self.bar
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.close = price
            bar.volume += size

    def print_minutes(self, run: list[Minute]) -> None:
        """Consecutive tape minutes with no `_edges` between them at once, from their bars: the
        state that `settle` and `print_trade` leave after each of their trades in turn."""
        first, last = run[0], run[-1]
        self.settle(first.start_ms)
        self.bars.extend(m.bar() for m in run[-1 - (self.bars.maxlen or len(run)) : -1])
        self.bar = last.bar()
        self.last, self.last_size = last.close, last.last_size
        self.volume += sum(m.volume for m in run)
        self.trades += sum(m.trades for m in run)
        if self.hours.regular_at(first.start_ms):
            self.regular = Print(last.close, last.last_size, last.last_ms)
            if self.open == 0:
                self.open = first.open
            self.high = max(self.high, *(m.high for m in run))
            low = min(m.low for m in run)
            self.low = min(self.low, low) if self.low else low
        self.trade_ms = last.last_ms
        self.last_venue = tape_venue(last.last_ms)

    def finish_bar(self, now_ms: int) -> None:
        if self.bar is not None and now_ms - now_ms % MINUTE_MS > self.bar.start_ms:
            self.bars.append(self.bar)
            self.bar = None
