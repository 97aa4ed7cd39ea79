"""The market: every instrument the simulator knows, created on first use from its symbol alone.

An instrument's RNG is seeded with `f"{seed}|{symbol}"` and its creation draws in a fixed order,
so the same seed gives the same market whatever else was asked for first. Market time starts at
`start_ms` (wall time by default: the real calendar) and runs `time_scale` times as fast; the
clock is injectable so tests can pin it. Each kind of instrument trades on its own `Schedule`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from datetime import date

from schwab_stream.sim.clock import MONTH_CODES, et_date, third_friday
from schwab_stream.sim.hours import MarketHours, Schedule
from schwab_stream.sim.instruments import (
    EquityTerms,
    ForexTerms,
    FutureOptionTerms,
    FutureTerms,
    Instrument,
    OptionTerms,
    Print,
    round_tick,
    tick_places,
)
from schwab_stream.sim.reference import (
    CURRENCIES,
    EQUITIES,
    FUTURE_OPTION_ROOTS,
    FUTURES,
    INDEXES,
    EquityRef,
    FutureRef,
    dividend_and_borrow,
)
from schwab_stream.sim.services import SERVICE_KINDS
from schwab_stream.sim.symbols import (
    EQUITY_RE,
    FOREX_RE,
    FUTURE_OPTION_RE,
    FUTURE_RE,
    OPTION_RE,
    Kind,
    classify,
)
from schwab_stream.sim.tape import Tape


class Market:
    """Every instrument the simulator knows, created on first use, plus the market clock."""

    def __init__(
        self,
        seed: int,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
        start_ms: int | None = None,
        hours: MarketHours | None = None,
        gap_rate: float = 0.0,
    ) -> None:
        self.seed = seed
        self.time_scale = time_scale
        self.clock = clock
        self._t0 = clock()
        self._start_ms = int(self._t0 * 1000) if start_ms is None else start_ms
        self.hours = hours or MarketHours()
        #: Chance that a minute of a session has no trade, hence no bar (tape.py).
        self.gap_rate = gap_rate
        self.schedules: dict[str, Schedule] = {}
        self.instruments: dict[str, Instrument] = {}
        #: Draws of the order ids (orders.py) and screener windows (screeners.py).
        self.order_rng = random.Random(f"{seed}|orders")
        self.screen_rng = random.Random(f"{seed}|screener")

    def now_ms(self) -> int:
        """Market time: start_ms at start, running time_scale times faster since."""
        return self._start_ms + int((self.clock() - self._t0) * self.time_scale * 1000)

    def schedule(self, kind: Kind) -> Schedule:
        """The sessions of one kind of instrument (one per market, so its cache is shared)."""
        found = self.schedules.get(kind)
        if found is None:
            found = self.schedules[kind] = Schedule(kind, self.hours)
        return found

    def instrument(self, symbol: str) -> Instrument | None:
        """The instrument for a symbol in one of Schwab's formats, or None if it has none."""
        inst = self.instruments.get(symbol)
        if inst is None:
            kind = classify(symbol)
            if kind is None:
                return None
            inst = self._create(symbol, kind)
            self.instruments[symbol] = inst
        return inst

    def for_service(self, service: str, symbol: str) -> Instrument | None:
        """The instrument if `service` serves its kind (an option on an equity service: None)."""
        inst = self.instrument(symbol)
        if inst is None or inst.kind not in SERVICE_KINDS.get(service, ()):
            return None
        return inst

    # ---- creation: the order of the RNG draws below is part of the market's determinism ----

    def _create(self, symbol: str, kind: Kind) -> Instrument:
        rng = random.Random(f"{self.seed}|{symbol}")
        now = self.now_ms()
        creators = {
            "equity": self._create_equity,
            "index": self._create_index,
            "option": self._create_option,
            "future": self._create_future,
            "future_option": self._create_future_option,
            "forex": self._create_forex,
        }
        inst = creators[kind](symbol, rng)
        if inst.underlying is None:
            self._start_tape(inst, now)
            return inst
        # Born as of its market's last regular moment, then brought forward to now: the resets
        # passed since apply, and a closed market keeps the bars of its last minutes.
        hours = inst.hours
        regular = hours.last_open(now, regular=True)
        inst.open = inst.high = inst.low = inst.last
        inst.regular = Print(inst.last, inst.trade_lot, regular - rng.randint(0, 5000))
        inst.settle(regular)
        born = hours.last_open(now)
        inst.last_event_ms = born
        inst.trade_ms = inst.quote_ms = inst.bid_ms = inst.ask_ms = born - rng.randint(0, 5000)
        inst.settle(born)
        if inst.underlying is not None:
            inst.quote_from_underlying(born)
        else:
            inst.walk(born, trade=False)
            if born < now:  # closed: the last minutes of the session, with their bars
                inst.last_event_ms = born - 5 * 60_000
                inst.catch_up(born + 1)
        inst.settle(now)
        inst.high52 = round(max(inst.last, inst.close) * 1.25, inst.places)
        inst.low52 = round(min(inst.last, inst.close) * 0.7, inst.places)
        return inst

    def _start_tape(self, inst: Instrument, now: int) -> None:
        """An instrument that trades its tape, born at the start of the session open at `now`
        (or of the last one) with the previous trade date's close, then brought up to now by
        printing the tape: so its day (volume, open/high/low, bars) is the tape's, whenever it
        was first asked for."""
        tape = inst.tape = Tape(
            self.seed,
            inst.symbol,
            inst.hours,
            inst.tick,
            inst.places,
            inst.trade_lot,
            inst.close,
            self.gap_rate,
        )
        day, start = tape.session_start(now)
        close, close_ms = tape.previous_close(day)
        inst.close = inst.last = close
        inst.volume = 0
        inst.open = inst.high = inst.low = 0.0
        inst.regular = Print(close, inst.trade_lot, close_ms)
        inst.trade_ms = inst.quote_ms = inst.bid_ms = inst.ask_ms = close_ms
        inst.settle(start)
        inst.tape_ms = inst.last_event_ms = start - 1
        inst.consume(now)
        inst.settle(now)
        moment = now if inst.hours.open_at(now) else inst.trade_ms
        inst.quote_around_last(moment, force=True)
        inst.bid_ms = inst.ask_ms = inst.quote_ms = moment
        inst.last_event_ms = min(now, max(inst.last_event_ms, moment))
        inst.high52 = round(max(inst.last, inst.close, tape.base) * 1.25, inst.places)
        inst.low52 = round(min(inst.last, inst.close, tape.base) * 0.7, inst.places)

    def _create_equity(self, symbol: str, rng: random.Random) -> Instrument:
        ref = EQUITIES.get(symbol)
        if ref is None:
            cusip = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRSTUVWXYZ") for _ in range(8))
            ref = EquityRef(
                f"{symbol} Common Stock",
                cusip + str(rng.randint(0, 9)),
                "N",
                round(rng.uniform(8, 400), 2),
            )
        close = round(ref.price * rng.uniform(0.97, 1.03), 2)
        today = et_date(self.now_ms())
        inst = Instrument(
            symbol,
            "equity",
            rng,
            0.01,
            2,
            1,
            1,
            close=close,
            last=round(close * rng.uniform(0.99, 1.01), 2),
            terms=EquityTerms(ref, "EQUITY", *dividend_and_borrow(symbol, ref.dividend, today)),
            hours=self.schedule("equity"),
        )
        inst.volume = rng.randint(50_000, 30_000_000)
        inst.sigma = 0.0001
        return inst

    def _create_index(self, symbol: str, rng: random.Random) -> Instrument:
        # .get's default is built (and draws) even for a known index: part of the seed's path
        name, price = INDEXES.get(symbol, (f"{symbol[1:]} INDEX", round(rng.uniform(100, 5000), 2)))
        close = round(price * rng.uniform(0.98, 1.02), 2)
        terms = EquityTerms(EquityRef(name, "", "0", price, sub_type=""), "INDEX")
        hours = self.schedule("index")
        return Instrument(
            symbol, "index", rng, 0.01, 2, 1, 100, close=close, last=close, terms=terms, hours=hours
        )

    def _create_option(self, symbol: str, rng: random.Random) -> Instrument:
        m = OPTION_RE.match(symbol)
        assert m is not None
        root, yy, mm, dd, cp, strike_raw = m.groups()
        expiry = date(2000 + int(yy), int(mm), int(dd))  # a bad date fails before the underlying
        und = self.instrument(root if root in EQUITIES or EQUITY_RE.match(root) else "SPY")
        assert und is not None
        terms = OptionTerms(
            root=root,
            expiry=expiry,
            call=cp == "C",
            strike=int(strike_raw) / 1000,
            iv=rng.uniform(0.18, 0.6),
            open_interest=rng.randint(0, 40_000),
            rate=0.045,
        )
        inst = Instrument(
            symbol,
            "option",
            rng,
            0.01,
            2,
            1,
            1,
            close=0.0,
            last=0.0,
            terms=terms,
            hours=self.schedule("option"),
            underlying=und,
        )
        theo = terms.greeks(und.last, self.now_ms()).price
        inst.close = inst.last = max(0.01, round(theo * rng.uniform(0.95, 1.05), 2))
        inst.volume = rng.randint(0, 5_000)
        return inst

    def _create_future(self, symbol: str, rng: random.Random) -> Instrument:
        m = FUTURE_RE.match(symbol)
        assert m is not None
        root, month_code, yy = m.groups()
        ref = FUTURES.get(root) or FutureRef(
            f"{root} Futures", 0.01, 100, "XCME", round(rng.uniform(10, 500), 2)
        )
        places = tick_places(ref.tick)
        close = round_tick(ref.price * rng.uniform(0.98, 1.02), ref.tick, places)
        volume = rng.randint(10_000, 1_500_000)
        terms = FutureTerms(
            ref=ref,
            root=root,
            contract=(month_code, yy) if month_code else None,
            open_interest=rng.randint(50_000, 2_000_000),
        )
        hours = self.schedule("future")
        inst = Instrument(
            symbol,
            "future",
            rng,
            ref.tick,
            places,
            1,
            1,
            close=close,
            last=close,
            terms=terms,
            hours=hours,
        )
        inst.volume = volume
        inst.sigma = 0.00008
        return inst

    def _create_future_option(self, symbol: str, rng: random.Random) -> Instrument:
        m = FUTURE_OPTION_RE.match(symbol)
        assert m is not None
        root, month, yy, cp, strike_raw = m.groups()
        und_root, description = FUTURE_OPTION_ROOTS.get(root, (root, f"{root} Options"))
        und = self.instrument(f"/{und_root}{month}{yy}")
        assert und is not None
        terms = FutureOptionTerms(
            root=root,
            expiry=third_friday(2000 + int(yy), MONTH_CODES.index(month) + 1),
            call=cp == "C",
            strike=float(strike_raw),
            iv=rng.uniform(0.12, 0.35),
            rate=0.0,
            description=description,
            open_interest=rng.randint(0, 20_000),
            style="Weeklys" if root[0] in "EQ" and root[1:2].isdigit() else "Monthlys",
        )
        inst = Instrument(
            symbol,
            "future_option",
            rng,
            0.05,
            2,
            1,
            1,
            close=0.0,
            last=0.0,
            terms=terms,
            hours=self.schedule("future_option"),
            underlying=und,
        )
        theo = terms.greeks(und.last, self.now_ms()).price
        inst.close = inst.last = max(0.05, round_tick(theo, 0.05, 2))
        inst.volume = rng.randint(0, 3_000)
        return inst

    def _create_forex(self, symbol: str, rng: random.Random) -> Instrument:
        m = FOREX_RE.match(symbol)
        assert m is not None
        base, quote = m.groups()
        # .get's defaults are built (and draw) even for known currencies: part of the seed's path
        base_name, base_usd = CURRENCIES.get(base, (base, rng.uniform(0.2, 2)))
        quote_name, quote_usd = CURRENCIES.get(quote, (quote, rng.uniform(0.2, 2)))
        rate = base_usd / quote_usd
        places = 3 if rate > 20 else 5
        tick = 10.0**-places
        close = round(rate * rng.uniform(0.995, 1.005), places)
        inst = Instrument(
            symbol,
            "forex",
            rng,
            tick,
            places,
            1_000_000,
            10_000,
            close=close,
            last=close,
            terms=ForexTerms(f"{base_name}/{quote_name} Spot"),
            hours=self.schedule("forex"),
        )
        inst.volume = rng.randint(100, 2_000) * 10_000
        inst.sigma = 0.00003
        return inst
