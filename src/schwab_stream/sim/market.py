"""The simulator's market model (sans-I/O): instruments, walks, books, bars, screeners, orders.

Everything here is pure computation over a seeded RNG and an injectable clock, so the same seed and
the same sequence of calls give the same frames (tests pin the clock; the server passes wall time).
Each symbol draws from its own `random.Random(f"{seed}|{symbol}")`, so one symbol's path does not
depend on which other symbols happen to be subscribed.

Values come out in Schwab's wire types (see ../shared/schwab-api.md §2.7-2.13 and the real frames
in tests/fixtures): strings, booleans, ints for sizes, volumes and epoch-ms times, and doubles as
Schwab's serializer writes them, i.e. a whole double goes out without ".0" (`"10": 235`,
`"13": 100`, `"6": 11730` in real frames).
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from schwab_stream.sim.tokens import SIM_ACCOUNT

ET = ZoneInfo("America/New_York")
DAY_MS = 86_400_000
MINUTE_MS = 60_000

LEVELONE_SERVICES = (
    "LEVELONE_EQUITIES",
    "LEVELONE_OPTIONS",
    "LEVELONE_FUTURES",
    "LEVELONE_FUTURES_OPTIONS",
    "LEVELONE_FOREX",
)
BOOK_SERVICES = ("NYSE_BOOK", "NASDAQ_BOOK", "OPTIONS_BOOK")
CHART_SERVICES = ("CHART_EQUITY", "CHART_FUTURES")
SCREENER_SERVICES = ("SCREENER_EQUITY", "SCREENER_OPTION")
ACCT_SERVICE = "ACCT_ACTIVITY"
ALL_SERVICES = (
    *LEVELONE_SERVICES,
    *BOOK_SERVICES,
    *CHART_SERVICES,
    *SCREENER_SERVICES,
    ACCT_SERVICE,
)

#: Number of numeric fields (0..N-1) per service, from the field tables.
FIELD_COUNTS: dict[str, int] = {
    "LEVELONE_EQUITIES": 52,
    "LEVELONE_OPTIONS": 56,
    "LEVELONE_FUTURES": 41,
    "LEVELONE_FUTURES_OPTIONS": 32,
    "LEVELONE_FOREX": 30,
    "NYSE_BOOK": 4,
    "NASDAQ_BOOK": 4,
    "OPTIONS_BOOK": 4,
    "CHART_EQUITY": 9,
    "CHART_FUTURES": 7,
    "SCREENER_EQUITY": 5,
    "SCREENER_OPTION": 5,
    "ACCT_ACTIVITY": 4,
}

#: Which instrument kinds each keyed service serves (anything else gets no data).
SERVICE_KINDS: dict[str, frozenset[str]] = {
    "LEVELONE_EQUITIES": frozenset({"equity", "index"}),
    "LEVELONE_OPTIONS": frozenset({"option"}),
    "LEVELONE_FUTURES": frozenset({"future"}),
    "LEVELONE_FUTURES_OPTIONS": frozenset({"future_option"}),
    "LEVELONE_FOREX": frozenset({"forex"}),
    "NYSE_BOOK": frozenset({"equity"}),
    "NASDAQ_BOOK": frozenset({"equity"}),
    "OPTIONS_BOOK": frozenset({"option"}),
    "CHART_EQUITY": frozenset({"equity", "index"}),
    "CHART_FUTURES": frozenset({"future"}),
}

MONTH_CODES = "FGHJKMNQUVXZ"
MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

OPTION_RE = re.compile(r"^([A-Z0-9.]{1,6}) *(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
FUTURE_RE = re.compile(r"^/([A-Z0-9]+?)(?:([FGHJKMNQUVXZ])(\d{2}))?$")
FUTURE_OPTION_RE = re.compile(r"^\./([A-Z0-9]+?)([FGHJKMNQUVXZ])(\d{2})([CP])(\d+(?:\.\d+)?)$")
FOREX_RE = re.compile(r"^([A-Z]{3})/([A-Z]{3})$")
EQUITY_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
INDEX_RE = re.compile(r"^\$[A-Z0-9.]{1,10}$")


# ---- reference data --------------------------------------------------------------------------


@dataclass(frozen=True)
class EquityRef:
    description: str
    cusip: str
    exchange: str  # field 13 char
    price: float
    sub_type: str = "COE"
    pe: float = 25.0
    dividend: float = 0.0


EQUITIES: dict[str, EquityRef] = {
    "AAPL": EquityRef("Apple Inc", "037833100", "Q", 190.0, pe=29.6, dividend=1.0),
    "MSFT": EquityRef("Microsoft Corp", "594918104", "Q", 417.0, pe=36.1, dividend=3.0),
    "GOOG": EquityRef("Alphabet Inc. C", "02079K107", "Q", 172.0, pe=26.4, dividend=0.8),
    "GOOGL": EquityRef("Alphabet Inc. A", "02079K305", "Q", 171.0, pe=26.3, dividend=0.8),
    "AMZN": EquityRef("Amazon.com Inc", "023135106", "Q", 185.0, pe=51.2),
    "NVDA": EquityRef("NVIDIA Corp", "67066G104", "Q", 120.0, pe=70.4, dividend=0.04),
    "TSLA": EquityRef("Tesla Inc", "88160R101", "Q", 180.0, pe=45.9),
    "META": EquityRef("Meta Platforms Inc A", "30303M102", "Q", 470.0, pe=27.2, dividend=2.0),
    "AMD": EquityRef("Advanced Micro Devic", "007903107", "Q", 160.0, pe=230.1),
    "INTC": EquityRef("Intel Corp", "458140100", "Q", 31.0, pe=31.9, dividend=0.5),
    "SCHW": EquityRef("Charles Schwab Corp", "808513105", "N", 74.0, pe=28.5, dividend=1.0),
    "F": EquityRef("Ford Motor Co", "345370860", "N", 12.5, pe=12.8, dividend=0.6),
    "JPM": EquityRef("JPMorgan Chase & Co", "46625H100", "N", 200.0, pe=12.1, dividend=4.6),
    "XOM": EquityRef("Exxon Mobil Corp", "30231G102", "N", 115.0, pe=13.9, dividend=3.8),
    "KO": EquityRef("Coca-Cola Co", "191216100", "N", 62.0, pe=25.1, dividend=1.94),
    "BAC": EquityRef("Bank of America Corp", "060505104", "N", 39.0, pe=13.5, dividend=0.96),
    "GME": EquityRef("Gamestop Corp A", "36467W109", "N", 23.0, pe=0.0),
    "CAVA": EquityRef("CAVA Group Inc", "148929102", "N", 65.0, pe=0.0),
    "SPY": EquityRef("SPDR S&P 500 ETF", "78462F103", "P", 519.0, "ETF", 0.0, 6.8),
    "QQQ": EquityRef("INVSC QQQ TRUST SRS 1 ETF IV", "46090E103", "Q", 440.0, "ETF", 0.0, 2.7),
    "IWM": EquityRef("ISHARES RUSSELL 2000 ETF", "464287655", "P", 205.0, "ETF", 0.0, 2.6),
    "XLF": EquityRef("SELECT STR FINANCIAL SELECT SPDR ETF", "81369Y605", "P", 41.0, "ETF"),
}
EXCHANGE_NAMES = {"Q": "NASDAQ", "N": "NYSE", "P": "NYSE Arca", "A": "AMEX", "0": "Index"}
INDEXES: dict[str, tuple[str, float]] = {
    "$SPX": ("S&P 500 INDEX", 5300.0),
    "$DJI": ("DOW JONES 30 INDUSTRIALS", 39000.0),
    "$COMPX": ("NASDAQ COMPOSITE", 16800.0),
    "$VIX": ("VOLATILITY S&P 500", 13.0),
}


@dataclass(frozen=True)
class FutureRef:
    name: str
    tick: float
    multiplier: float
    exchange: str
    price: float
    quarterly: bool = True


FUTURES: dict[str, FutureRef] = {
    "ES": FutureRef("E-mini S&P 500 Index Futures", 0.25, 50, "XCME", 5500.0),
    "NQ": FutureRef("E-mini Nasdaq-100 Index Futures", 0.25, 20, "XCME", 19800.0),
    "YM": FutureRef("E-mini Dow Jones Industrial Average Index Futures", 1.0, 5, "XCBT", 39000.0),
    "RTY": FutureRef("E-mini Russell 2000 Index Futures", 0.1, 50, "XCME", 2050.0),
    "CL": FutureRef("Light Sweet Crude Oil Futures", 0.01, 1000, "XNYM", 80.0, False),
    "NG": FutureRef("Henry Hub Natural Gas Futures", 0.001, 10000, "XNYM", 2.7, False),
    "GC": FutureRef("Gold Futures", 0.1, 100, "XCEC", 2350.0, False),
    "SI": FutureRef("Silver Futures", 0.005, 5000, "XCEC", 30.0, False),
    "ZB": FutureRef("30-Year U.S. Treasury Bond Futures", 0.03125, 1000, "XCBT", 118.0),
    "ZN": FutureRef("10-Year U.S. Treasury Note Futures", 0.015625, 1000, "XCBT", 110.0),
    "6E": FutureRef("Euro FX Futures", 0.00005, 125000, "XCME", 1.08),
}
#: Futures-option roots -> (underlying futures root, product description).
FUTURE_OPTION_ROOTS: dict[str, tuple[str, str]] = {
    "ES": ("ES", "E-mini S&P 500 Options"),
    "EW": ("ES", "E-mini S&P 500 Options"),
    "E1A": ("ES", "E-mini S&P 500 Options"),
    "E3D": ("ES", "E-mini S&P 500 Options"),
    "NQ": ("NQ", "E-mini NASDAQ-100 Options"),
    "Q3D": ("NQ", "E-mini NASDAQ-100 Options"),
    "LO": ("CL", "Crude Oil Options"),
    "OG": ("GC", "Gold Options"),
    "OZB": ("ZB", "Treasury Bond Options"),
    "OZN": ("ZN", "10-Year T-Note Options"),
}
#: USD value of one unit of each currency (for cross rates).
CURRENCIES: dict[str, tuple[str, float]] = {
    "USD": ("USDollar", 1.0),
    "EUR": ("Euro", 1.08),
    "GBP": ("GBPound", 1.27),
    "JPY": ("JPYen", 1 / 155.0),
    "CHF": ("SwissFranc", 1 / 0.90),
    "CAD": ("CanadianDollar", 1 / 1.36),
    "AUD": ("AustralianDollar", 0.66),
    "NZD": ("NZDollar", 0.61),
}

NYSE_VENUES = ("NYSE", "ARCX", "NSDQ", "BATX", "EDGX", "IEXG", "MEMX", "AMEX", "MWSE", "G")
NASDAQ_VENUES = ("NSDQ", "arcx", "edgx", "batx", "iexg", "memx", "nyse", "edga", "baty", "G")
OPTION_VENUES = ("CBOE", "AMEX", "PHLX", "ISEX", "MIAX", "BOSX", "EDGX", "NSDQ", "GMNI", "PACX")
MIC_IDS = ("XNAS", "BATS", "ARCX", "EDGX", "XBOS", "MEMX", "IEXG", "XNYS")
QUOTE_IDS = "QZPNKJYXB"
SCREENER_PREFIXES = (
    "$COMPX",
    "$DJI",
    "$SPX.X",
    "$SPX",
    "INDEX_ALL",
    "NYSE",
    "NASDAQ",
    "OTCBB",
    "EQUITY_ALL",
    "OPTION_PUT",
    "OPTION_CALL",
    "OPTION_ALL",
)
SCREENER_SORTS = (
    "VOLUME",
    "TRADES",
    "PERCENT_CHANGE_UP",
    "PERCENT_CHANGE_DOWN",
    "AVERAGE_PERCENT_VOLUME",
)
SCREENER_FREQUENCIES = (0, 1, 5, 10, 30, 60)
SCREENER_OPTION_ROOTS = ("SPY", "QQQ", "NVDA", "TSLA", "AAPL", "IWM")
ORDER_LIFE = (
    "OrderCreated",
    "OrderAccepted",
    "ExecutionRequested",
    "ExecutionRequestCreated",
    "ExecutionRequestCompleted",
    "OrderFillCompleted",
)


# ---- helpers ---------------------------------------------------------------------------------


def wire_double(value: float, places: int) -> float | int:
    """A double as Schwab puts it on the wire: rounded, and without ".0" when whole."""
    r = round(float(value), places)
    return int(r) if r.is_integer() else r


def _round_tick(value: float, tick: float, places: int) -> float:
    return round(round(value / tick) * tick, places)


def _places(tick: float) -> int:
    text = f"{tick:.10f}".rstrip("0")
    return max(2, len(text.partition(".")[2]))


@lru_cache(maxsize=4096)
def _et_offset_ms(hour_key: int) -> int:
    """New York's UTC offset for the UTC hour starting at hour_key*3600 s (DST moves on hours)."""
    offset = datetime.fromtimestamp(hour_key * 3600, ET).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)


def et_local_ms(epoch_ms: int) -> int:
    """Epoch ms shifted to New York wall-clock ms (so // DAY_MS is the ET day number)."""
    return epoch_ms + _et_offset_ms(epoch_ms // 3_600_000)


def et_ms_of_day(epoch_ms: int) -> int:
    """Milliseconds since midnight America/New_York (book market-maker times)."""
    return et_local_ms(epoch_ms) % DAY_MS


def et_date(epoch_ms: int) -> date:
    return date(1970, 1, 1) + timedelta(days=et_local_ms(epoch_ms) // DAY_MS)


def chart_sequence(start_ms: int) -> int:
    """CHART_EQUITY field 1: the candle's minutes since 07:00 ET (779 is the 19:59 candle)."""
    return et_ms_of_day(start_ms) // MINUTE_MS - 7 * 60


def chart_day(start_ms: int) -> int:
    """CHART_EQUITY field 8: days since 1970-01-01 of the candle's New York date."""
    return et_local_ms(start_ms) // DAY_MS


def _regular_hours(epoch_ms: int) -> bool:
    minute = et_ms_of_day(epoch_ms) // MINUTE_MS
    return 9 * 60 + 30 <= minute < 16 * 60 and et_date(epoch_ms).weekday() < 5


def _utc_midnight_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def _third_friday(year: int, month: int) -> date:
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def classify(symbol: str) -> str | None:
    """Instrument kind from Schwab's symbol formats (§3), or None if it is none of them."""
    if symbol.startswith("./"):
        return "future_option" if FUTURE_OPTION_RE.match(symbol) else None
    if symbol.startswith("/"):
        return "future" if FUTURE_RE.match(symbol) else None
    if FOREX_RE.match(symbol):
        return "forex"
    if len(symbol) == 21 and OPTION_RE.match(symbol):
        return "option"
    if INDEX_RE.match(symbol):
        return "index"
    if EQUITY_RE.match(symbol):
        return "equity"
    return None


def option_symbol(root: str, expiry: date, call: bool, strike: float) -> str:
    """Schwab's option symbol: root padded to 6, YYMMDD, C/P, strike x1000 in 8 digits."""
    return f"{root:<6}{expiry:%y%m%d}{'C' if call else 'P'}{round(strike * 1000):08d}"


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Greeks:
    price: float
    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float


def black_scholes(s: float, k: float, t: float, vol: float, call: bool, r: float) -> Greeks:
    """Textbook Black-Scholes: enough for plausible option quotes and greeks."""
    if t <= 0 or vol <= 0 or s <= 0:
        intrinsic = max(0.0, s - k) if call else max(0.0, k - s)
        delta = (1.0 if s > k else 0.0) if call else (-1.0 if s < k else 0.0)
        return Greeks(intrinsic, delta, 0.0, 0.0, 0.0, 0.0)
    sq = vol * math.sqrt(t)
    d1 = (math.log(s / k) + (r + vol * vol / 2) * t) / sq
    d2 = d1 - sq
    disc = k * math.exp(-r * t)
    gamma = _norm_pdf(d1) / (s * sq)
    vega = s * _norm_pdf(d1) * math.sqrt(t) / 100
    decay = -s * _norm_pdf(d1) * vol / (2 * math.sqrt(t))
    if call:
        price = s * _norm_cdf(d1) - disc * _norm_cdf(d2)
        theta = (decay - r * disc * _norm_cdf(d2)) / 365
        return Greeks(price, _norm_cdf(d1), gamma, theta, vega, t * disc * _norm_cdf(d2) / 100)
    price = disc * _norm_cdf(-d2) - s * _norm_cdf(-d1)
    theta = (decay + r * disc * _norm_cdf(-d2)) / 365
    return Greeks(price, _norm_cdf(d1) - 1, gamma, theta, vega, -t * disc * _norm_cdf(-d2) / 100)


# ---- instruments -----------------------------------------------------------------------------


@dataclass
class Bar:
    """One one-minute candle built from simulated trades."""

    start_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: int


@dataclass
class Instrument:
    """One symbol's live state; `step` is one market event (a quote move and maybe a trade)."""

    symbol: str
    kind: str
    rng: random.Random
    tick: float
    places: int
    lot: int  # bid/ask size unit as reported (1 = lots of 100 shares for equities)
    trade_lot: int  # granularity of trade sizes
    close: float
    last: float
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
    bid_id: str = "Q"
    ask_id: str = "Q"
    last_id: str = "Q"
    sigma: float = 0.00012  # per-event relative volatility: ~0.1% a second at demo rates
    trades: int = 0
    static: dict[str, Any] = field(default_factory=dict)
    underlying: Instrument | None = None
    bar: Bar | None = None
    bars: deque[Bar] = field(default_factory=lambda: deque(maxlen=240))
    last_event_ms: int = 0

    def step(self, now_ms: int, trade: bool | None = None) -> None:
        """Advance by one event at now_ms: move the quote, and trade with some probability."""
        now_ms = max(now_ms, self.last_event_ms)
        self.last_event_ms = now_ms
        rng = self.rng
        self.finish_bar(now_ms)
        if rng.random() < 0.8 or self.bid <= 0:
            self._move_quote(now_ms)
        if rng.random() < 0.6 if trade is None else trade:
            self.trade(now_ms)

    def catch_up(self, now_ms: int, spacing_ms: int = 10_000) -> None:
        """Trade at least every spacing_ms of market time up to now, so every minute has a bar."""
        if now_ms - self.last_event_ms > 2 * 3_600_000:
            self.last_event_ms = now_ms - 2 * 3_600_000
        while self.last_event_ms + spacing_ms <= now_ms:
            self.step(self.last_event_ms + spacing_ms, trade=True)
        self.finish_bar(now_ms)

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
        bid = _round_tick(max(fair - spread / 2, self.tick), self.tick, self.places)
        ask = _round_tick(bid + max(spread, self.tick), self.tick, self.places)
        if ask <= bid:
            ask = _round_tick(bid + self.tick, self.tick, self.places)
        if bid != self.bid:
            self.bid_ms = now_ms
            self.bid_id = rng.choice(QUOTE_IDS)
        if ask != self.ask:
            self.ask_ms = now_ms
            self.ask_id = rng.choice(QUOTE_IDS)
        self.bid, self.ask = bid, ask
        if rng.random() < 0.7:
            self.bid_size = self.lot * rng.randint(1, 30)
            self.ask_size = self.lot * rng.randint(1, 30)
        self.quote_ms = now_ms

    def trade(self, now_ms: int) -> None:
        rng = self.rng
        side = rng.random()
        if side < 0.4:
            price = self.bid
        elif side < 0.8:
            price = self.ask
        else:
            price = _round_tick(self.mid(), self.tick, self.places)
        size = self.trade_lot * rng.choice((1, 1, 1, 2, 3, 5, 10, 20))
        self.last, self.last_size = price, size
        self.volume += size
        self.trades += 1
        if self.open == 0:
            self.open = self.high = self.low = price
        self.high = max(self.high, price)
        self.low = min(self.low, price)
        self.trade_ms = now_ms
        self.last_id = rng.choice(QUOTE_IDS)
        start = now_ms - now_ms % MINUTE_MS
        if self.bar is None or self.bar.start_ms != start:
            self.bar = Bar(start, price, price, price, price, size)
        else:
            bar = self.bar
            bar.high = max(bar.high, price)
            bar.low = min(bar.low, price)
            bar.close = price
            bar.volume += size

    def finish_bar(self, now_ms: int) -> None:
        if self.bar is not None and now_ms - now_ms % MINUTE_MS > self.bar.start_ms:
            self.bars.append(self.bar)
            self.bar = None


class Market:
    """Every instrument the simulator knows, created on first use, plus derived views."""

    def __init__(
        self,
        seed: int,
        time_scale: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.seed = seed
        self.time_scale = time_scale
        self.clock = clock
        self._t0 = clock()
        self.instruments: dict[str, Instrument] = {}
        self._order_rng = random.Random(f"{seed}|orders")
        self._screen_rng = random.Random(f"{seed}|screener")

    def now_ms(self) -> int:
        """Market time: wall time at start, running time_scale times faster since."""
        now = self.clock()
        return int((self._t0 + (now - self._t0) * self.time_scale) * 1000)

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
        inst = self.instrument(symbol)
        if inst is None or inst.kind not in SERVICE_KINDS.get(service, ()):
            return None
        return inst

    # -- creation --

    def _create(self, symbol: str, kind: str) -> Instrument:
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
        inst.last_event_ms = now
        inst.open = inst.high = inst.low = inst.last
        inst.trade_ms = inst.quote_ms = inst.bid_ms = inst.ask_ms = now - rng.randint(0, 5000)
        if inst.underlying is not None:
            self._reprice_option(inst, now)
        else:
            inst.step(now, trade=False)
        inst.static.setdefault("high52", round(max(inst.last, inst.close) * 1.25, inst.places))
        inst.static.setdefault("low52", round(min(inst.last, inst.close) * 0.7, inst.places))
        return inst

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
        )
        inst.volume = rng.randint(50_000, 30_000_000)
        inst.sigma = 0.0001
        inst.static.update(ref=ref, main_type="EQUITY")
        return inst

    def _create_index(self, symbol: str, rng: random.Random) -> Instrument:
        name, price = INDEXES.get(symbol, (f"{symbol[1:]} INDEX", round(rng.uniform(100, 5000), 2)))
        close = round(price * rng.uniform(0.98, 1.02), 2)
        inst = Instrument(symbol, "index", rng, 0.01, 2, 1, 100, close=close, last=close)
        inst.static.update(ref=EquityRef(name, "", "0", price, sub_type=""), main_type="INDEX")
        return inst

    def _create_option(self, symbol: str, rng: random.Random) -> Instrument:
        m = OPTION_RE.match(symbol)
        assert m is not None
        root, yy, mm, dd, cp, strike_raw = m.groups()
        expiry = date(2000 + int(yy), int(mm), int(dd))
        strike = int(strike_raw) / 1000
        und = self.instrument(root if root in EQUITIES or EQUITY_RE.match(root) else "SPY")
        assert und is not None
        inst = Instrument(symbol, "option", rng, 0.01, 2, 1, 1, close=0.0, last=0.0, underlying=und)
        inst.static.update(
            root=root,
            expiry=expiry,
            call=cp == "C",
            strike=strike,
            iv=rng.uniform(0.18, 0.6),
            open_interest=rng.randint(0, 40_000),
        )
        theo = self._option_greeks(inst, und.last, self.now_ms()).price
        inst.close = inst.last = max(0.01, round(theo * rng.uniform(0.95, 1.05), 2))
        inst.volume = rng.randint(0, 5_000)
        return inst

    def _create_future(self, symbol: str, rng: random.Random) -> Instrument:
        m = FUTURE_RE.match(symbol)
        assert m is not None
        root = m.group(1)
        ref = FUTURES.get(root) or FutureRef(
            f"{root} Futures", 0.01, 100, "XCME", round(rng.uniform(10, 500), 2)
        )
        places = _places(ref.tick)
        close = _round_tick(ref.price * rng.uniform(0.98, 1.02), ref.tick, places)
        inst = Instrument(symbol, "future", rng, ref.tick, places, 1, 1, close=close, last=close)
        inst.volume = rng.randint(10_000, 1_500_000)
        inst.sigma = 0.00008
        inst.static.update(
            ref=ref,
            root=root,
            contract=(m.group(2), m.group(3)),
            open_interest=rng.randint(50_000, 2_000_000),
        )
        return inst

    def _create_future_option(self, symbol: str, rng: random.Random) -> Instrument:
        m = FUTURE_OPTION_RE.match(symbol)
        assert m is not None
        root, month, yy, cp, strike_raw = m.groups()
        und_root, description = FUTURE_OPTION_ROOTS.get(root, (root, f"{root} Options"))
        und = self.instrument(f"/{und_root}{month}{yy}")
        assert und is not None
        year = 2000 + int(yy)
        expiry = _third_friday(year, MONTH_CODES.index(month) + 1)
        strike = float(strike_raw)
        inst = Instrument(
            symbol, "future_option", rng, 0.05, 2, 1, 1, close=0.0, last=0.0, underlying=und
        )
        inst.static.update(
            root=root,
            expiry=expiry,
            call=cp == "C",
            strike=strike,
            iv=rng.uniform(0.12, 0.35),
            description=description,
            open_interest=rng.randint(0, 20_000),
            style="Weeklys" if root[0] in "EQ" and root[1:2].isdigit() else "Monthlys",
        )
        theo = self._option_greeks(inst, und.last, self.now_ms()).price
        inst.close = inst.last = max(0.05, _round_tick(theo, 0.05, 2))
        inst.volume = rng.randint(0, 3_000)
        return inst

    def _create_forex(self, symbol: str, rng: random.Random) -> Instrument:
        m = FOREX_RE.match(symbol)
        assert m is not None
        base, quote = m.groups()
        base_name, base_usd = CURRENCIES.get(base, (base, rng.uniform(0.2, 2)))
        quote_name, quote_usd = CURRENCIES.get(quote, (quote, rng.uniform(0.2, 2)))
        rate = base_usd / quote_usd
        places = 3 if rate > 20 else 5
        tick = 10.0**-places
        close = round(rate * rng.uniform(0.995, 1.005), places)
        inst = Instrument(
            symbol, "forex", rng, tick, places, 1_000_000, 10_000, close=close, last=close
        )
        inst.volume = rng.randint(100, 2_000) * 10_000
        inst.sigma = 0.00003
        inst.static.update(description=f"{base_name}/{quote_name} Spot")
        return inst

    # -- option pricing --

    def _option_greeks(self, inst: Instrument, underlying: float, now_ms: int) -> Greeks:
        expiry: date = inst.static["expiry"]
        days = (expiry - et_date(now_ms)).days
        t = max(days, 0.5) / 365
        rate = 0.045 if inst.kind == "option" else 0.0
        return black_scholes(
            underlying, inst.static["strike"], t, inst.static["iv"], inst.static["call"], rate
        )

    def _reprice_option(self, inst: Instrument, now_ms: int) -> Greeks:
        """Options follow their underlying: quote around the model value, not a random walk."""
        und = inst.underlying
        assert und is not None
        inst.static["iv"] = min(
            2.0, max(0.05, inst.static["iv"] * math.exp(inst.rng.gauss(0, 0.002)))
        )
        greeks = self._option_greeks(inst, und.mid(), now_ms)
        tick = 0.01 if greeks.price < 3 else 0.05
        half = max(tick, greeks.price * 0.01)
        bid = max(0.0, math.floor((greeks.price - half) / tick) * tick)
        ask = max(bid + tick, math.ceil((greeks.price + half) / tick) * tick)
        new_bid, new_ask = round(bid, 2), round(ask, 2)
        if new_bid != inst.bid:
            inst.bid_ms = now_ms
        if new_ask != inst.ask:
            inst.ask_ms = now_ms
        inst.bid, inst.ask, inst.tick = new_bid, new_ask, tick
        inst.quote_ms = now_ms
        if inst.rng.random() < 0.7:
            inst.bid_size = inst.rng.randint(1, 60)
            inst.ask_size = inst.rng.randint(1, 60)
        return greeks

    # -- stepping --

    def step(self, inst: Instrument, now_ms: int) -> None:
        """One market event for inst (options re-quote from their underlying's move)."""
        if inst.underlying is None:
            inst.step(now_ms)
            return
        now_ms = max(now_ms, inst.last_event_ms)
        inst.last_event_ms = now_ms
        inst.underlying.step(now_ms, trade=inst.rng.random() < 0.5)
        inst.finish_bar(now_ms)
        self._reprice_option(inst, now_ms)
        if inst.rng.random() < 0.3:
            inst.trade(now_ms)

    # -- level one --

    def levelone(
        self, service: str, inst: Instrument, now_ms: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(extra keys for a snapshot, every numeric field 1..N as wire values) for a service."""
        builders = {
            "LEVELONE_EQUITIES": self._equity_fields,
            "LEVELONE_OPTIONS": self._option_fields,
            "LEVELONE_FUTURES": self._future_fields,
            "LEVELONE_FUTURES_OPTIONS": self._future_option_fields,
            "LEVELONE_FOREX": self._forex_fields,
        }
        return builders[service](inst, now_ms)

    def _equity_fields(self, i: Instrument, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        ref: EquityRef = i.static["ref"]
        p = i.places
        regular = _regular_hours(now_ms)
        if regular or "reg_last" not in i.static:
            i.static.update(reg_last=i.last, reg_size=i.last_size, reg_ms=i.trade_ms)
        reg_last: float = i.static["reg_last"]
        net = i.last - i.close
        pct = net / i.close * 100 if i.close else 0.0
        mark = i.mark()
        mark_net = mark - i.close
        extras: dict[str, Any] = {"delayed": False, "assetMainType": i.static["main_type"]}
        if ref.sub_type:
            extras["assetSubType"] = ref.sub_type
        extras["cusip"] = ref.cusip
        yield_pct = ref.dividend / i.last * 100 if i.last else 0.0
        values: dict[str, Any] = {
            "1": wire_double(i.bid, p),
            "2": wire_double(i.ask, p),
            "3": wire_double(i.last, p),
            "4": i.bid_size,
            "5": i.ask_size,
            "6": i.ask_id,
            "7": i.bid_id,
            "8": i.volume,
            "9": i.last_size,
            "10": wire_double(i.high, p),
            "11": wire_double(i.low, p),
            "12": wire_double(i.close, p),
            "13": ref.exchange,
            "14": ref.sub_type != "",
            "15": ref.description,
            "16": i.last_id,
            "17": wire_double(i.open, p),
            "18": wire_double(net, 4),
            "19": wire_double(max(i.static["high52"], i.high), p),
            "20": wire_double(min(i.static["low52"], i.low), p),
            "21": wire_double(ref.pe, 5),
            "22": wire_double(ref.dividend, 4),
            "23": wire_double(yield_pct, 5),
            "24": 0,
            "25": EXCHANGE_NAMES.get(ref.exchange, "NYSE"),
            "26": "2024-05-15 00:00:00.0" if ref.dividend else "",
            "27": regular,
            "28": regular,
            "29": wire_double(reg_last, p),
            "30": i.static["reg_size"],
            "31": wire_double(reg_last - i.close, 4),
            "32": "Normal",
            "33": wire_double(mark, p + 1),
            "34": i.quote_ms,
            "35": i.trade_ms,
            "36": i.static["reg_ms"],
            "37": i.bid_ms,
            "38": i.ask_ms,
            "39": MIC_IDS[QUOTE_IDS.index(i.ask_id) % len(MIC_IDS)],
            "40": MIC_IDS[QUOTE_IDS.index(i.bid_id) % len(MIC_IDS)],
            "41": MIC_IDS[QUOTE_IDS.index(i.last_id) % len(MIC_IDS)],
            "42": wire_double(pct, 7),
            "43": wire_double((reg_last - i.close) / i.close * 100 if i.close else 0.0, 7),
            "44": wire_double(mark_net, 4),
            "45": wire_double(mark_net / i.close * 100 if i.close else 0.0, 8),
            "46": -1 if ref.sub_type == "" else 95_711_793,
            "47": 0,
            "48": 0,
            "49": 1 if ref.sub_type else 0,
            "50": wire_double(i.last - reg_last, 4),
            "51": wire_double((i.last - reg_last) / reg_last * 100 if reg_last else 0.0, 7),
        }
        return extras, values

    def _option_fields(self, i: Instrument, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        s = i.static
        und = i.underlying
        assert und is not None
        expiry: date = s["expiry"]
        greeks = self._option_greeks(i, und.mid(), now_ms)
        strike: float = s["strike"]
        intrinsic = und.mid() - strike if s["call"] else strike - und.mid()
        mark = round((i.bid + i.ask) / 2, 2)
        net = i.last - i.close
        cp = "C" if s["call"] else "P"
        root: str = s["root"]
        extras = {"delayed": False, "assetMainType": "OPTION", "cusip": ""}
        values: dict[str, Any] = {
            "1": f"{root} {expiry:%m/%d/%Y} {strike:.2f} {cp}",
            "2": wire_double(i.bid, 2),
            "3": wire_double(i.ask, 2),
            "4": wire_double(i.last, 2),
            "5": wire_double(i.high, 2),
            "6": wire_double(i.low, 2),
            "7": wire_double(i.close, 4),
            "8": i.volume,
            "9": s["open_interest"],
            "10": wire_double(s["iv"] * 100, 8),
            "11": wire_double(intrinsic, 4),
            "12": expiry.year,
            "13": 100,
            "14": 2,
            "15": wire_double(i.open, 2),
            "16": i.bid_size,
            "17": i.ask_size,
            "18": i.last_size,
            "19": wire_double(net, 4),
            "20": wire_double(strike, 3),
            "21": cp,
            "22": root,
            "23": expiry.month,
            "24": f"100 {root}",
            "25": wire_double(i.last - max(intrinsic, 0.0), 8),
            "26": expiry.day,
            "27": max(0, (expiry - et_date(now_ms)).days),
            "28": wire_double(greeks.delta, 8),
            "29": wire_double(greeks.gamma, 8),
            "30": wire_double(greeks.theta, 8),
            "31": wire_double(greeks.vega, 8),
            "32": wire_double(greeks.rho, 8),
            "33": "Normal",
            "34": wire_double(greeks.price, 8),
            "35": wire_double(und.mid(), 4),
            "36": "S" if expiry == _third_friday(expiry.year, expiry.month) else "W",
            "37": wire_double(mark, 2),
            "38": i.quote_ms,
            "39": i.trade_ms,
            "40": "O",
            "41": "OPR",
            "42": _utc_midnight_ms(expiry + timedelta(days=1)),
            "43": "P",
            "44": wire_double(net / i.close * 100 if i.close else 0.0, 8),
            "45": wire_double(mark - i.close, 4),
            "46": wire_double((mark - i.close) / i.close * 100 if i.close else 0.0, 8),
            "47": 0,
            "48": True,
            "49": root,
            "50": wire_double(max(i.static["high52"], i.high), 2),
            "51": wire_double(min(i.static["low52"], i.low), 2),
            "52": 0,
            "53": 0,
            "54": 0,
            "55": "E" if root.startswith("SPX") else "A",
        }
        return extras, values

    def _front_contract(self, ref: FutureRef, today: date) -> tuple[str, int]:
        months = (3, 6, 9, 12) if ref.quarterly else tuple(range(1, 13))
        year, month = today.year, today.month + (0 if ref.quarterly else 1)
        if month > 12:
            year, month = year + 1, 1
        while month not in months or (
            ref.quarterly and month == today.month and today > _third_friday(year, month)
        ):
            month += 1
            if month > 12:
                year, month = year + 1, 1
        return MONTH_CODES[month - 1] + f"{year % 100:02d}", year * 100 + month

    def _future_fields(self, i: Instrument, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        s = i.static
        ref: FutureRef = s["ref"]
        root: str = s["root"]
        p = i.places
        today = et_date(now_ms)
        code, ym = self._front_contract(ref, today)
        if s["contract"][0]:
            month_code, yy = s["contract"]
            code, ym = month_code + yy, (2000 + int(yy)) * 100 + MONTH_CODES.index(month_code) + 1
        year, month = divmod(ym, 100)
        expiry = _third_friday(year, month)
        net = i.last - i.close
        extras = {"delayed": False, "assetMainType": "FUTURE"}
        values: dict[str, Any] = {
            "1": wire_double(i.bid, p),
            "2": wire_double(i.ask, p),
            "3": wire_double(i.last, p),
            "4": i.bid_size,
            "5": i.ask_size,
            "6": "?",
            "7": "?",
            "8": i.volume,
            "9": i.last_size,
            "10": i.quote_ms,
            "11": i.trade_ms,
            "12": wire_double(i.high, p),
            "13": wire_double(i.low, p),
            "14": wire_double(i.close, p),
            "15": "@",
            "16": f"{ref.name},{MONTH_ABBR[month - 1]}-{year},ETH",
            "17": "?",
            "18": wire_double(i.open, p),
            "19": wire_double(net, p),
            "20": wire_double(net / i.close * 100 if i.close else 0.0, 8),
            "21": ref.exchange,
            "22": "Normal",
            "23": s["open_interest"],
            "24": wire_double(i.mark(), p),
            "25": wire_double(ref.tick, 6),
            "26": wire_double(ref.tick * ref.multiplier, 4),
            "27": f"/{root}",
            "28": "D,D",
            "29": "GLBX(de=1640;0=-17001600;1=-17001600d-15551640;7=d-16401555)",
            "30": False,
            "31": wire_double(ref.multiplier, 2),
            "32": True,
            "33": wire_double(i.close, p),
            "34": f"/{root}{code}",
            "35": int(
                datetime(expiry.year, expiry.month, expiry.day, tzinfo=ET).timestamp() * 1000
            ),
            "36": "Unknown",
            "37": i.ask_ms,
            "38": i.bid_ms,
            "39": True,
            "40": _utc_midnight_ms(today),
        }
        return extras, values

    def _future_option_fields(
        self, i: Instrument, now_ms: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        s = i.static
        und = i.underlying
        assert und is not None
        und_ref: FutureRef = und.static["ref"]
        expiry: date = s["expiry"]
        extras = {"delayed": False, "assetMainType": "FUTURE_OPTION"}
        values: dict[str, Any] = {
            "1": wire_double(i.bid, 2),
            "2": wire_double(i.ask, 2),
            "3": wire_double(i.last, 2),
            "4": i.bid_size,
            "5": i.ask_size,
            "6": 63,
            "7": 63,
            "8": i.volume,
            "9": i.last_size,
            "10": i.quote_ms,
            "11": i.trade_ms,
            "12": wire_double(i.high, 2),
            "13": wire_double(i.low, 2),
            "14": wire_double(i.close, 2),
            "15": 63,
            "16": s["description"],
            "17": wire_double(i.open, 2),
            "18": s["open_interest"],
            "19": wire_double(i.mark(), 3),
            "20": wire_double(i.tick, 4),
            "21": wire_double(i.tick * und_ref.multiplier, 4),
            "22": wire_double(und_ref.multiplier, 2),
            "23": wire_double(i.close, 2),
            "24": und.symbol,
            "25": wire_double(s["strike"], 4),
            "26": _utc_midnight_ms(expiry) + 4 * 3_600_000,
            "27": s["style"],
            "28": "C" if s["call"] else "P",
            "29": "Normal",
            "30": "@",
            "31": und_ref.exchange,
        }
        return extras, values

    def _forex_fields(self, i: Instrument, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        p = i.places
        net = i.last - i.close
        extras = {"delayed": False, "assetMainType": "FOREX"}
        values: dict[str, Any] = {
            "1": wire_double(i.bid, p),
            "2": wire_double(i.ask, p),
            "3": wire_double(i.mid(), p + 1),
            "4": i.bid_size,
            "5": i.ask_size,
            "6": i.volume,
            "7": i.last_size,
            "8": i.quote_ms,
            "9": i.trade_ms,
            "10": wire_double(i.high, p + 1),
            "11": wire_double(i.low, p + 1),
            "12": wire_double(i.close, p + 1),
            "13": "!",
            "14": i.static["description"],
            "15": wire_double(i.open, p + 1),
            "16": wire_double(net, p + 1),
            "17": wire_double(net / i.close * 100 if i.close else 0.0, 6),
            "18": "GFT",
            "19": 2,
            "20": "Unknown",
            "21": 0,
            "22": 0,
            "23": "",
            "24": "",
            "25": False,
            "26": "",
            "27": wire_double(max(i.static["high52"], i.high), p + 1),
            "28": wire_double(min(i.static["low52"], i.low), p + 1),
            "29": wire_double(i.mid(), p + 1),
        }
        return extras, values

    # -- books --

    def book(self, service: str, inst: Instrument, now_ms: int) -> dict[str, Any]:
        """A whole book snapshot: levels best first, aggregate size = sum of the makers' sizes."""
        rng = inst.rng
        venues = {"NYSE_BOOK": NYSE_VENUES, "NASDAQ_BOOK": NASDAQ_VENUES}.get(
            service, OPTION_VENUES
        )
        option = inst.kind == "option"
        ms_of_day = et_ms_of_day(now_ms)

        def side(best: float, direction: int) -> list[dict[str, Any]]:
            levels: list[dict[str, Any]] = []
            price = best
            for depth in range(rng.randint(3, 8)):
                if price <= 0:
                    break
                makers = rng.sample(venues, rng.randint(1, 4 if depth == 0 else 2))
                quotes: list[tuple[int, str, int]] = []  # (size, maker, ms since midnight ET)
                for venue in makers:
                    size = rng.randint(1, 50) if option else 100 * rng.randint(1, 40)
                    age = 0 if depth == 0 and not quotes else rng.randint(0, 30_000 * (depth + 1))
                    quotes.append((size, venue, max(0, ms_of_day - age)))
                quotes.sort(key=lambda q: -q[0])
                levels.append(
                    {
                        "0": wire_double(price, inst.places),
                        "1": sum(q[0] for q in quotes),
                        "2": len(quotes),
                        "3": [{"0": venue, "1": size, "2": at} for size, venue, at in quotes],
                    }
                )
                price = round(
                    price + direction * inst.tick * rng.choice((1, 1, 2, 3, 5)), inst.places
                )
            return levels

        return {"1": now_ms, "2": side(inst.bid, -1), "3": side(inst.ask, 1)}

    # -- charts --

    @staticmethod
    def chart_item(service: str, bar: Bar) -> dict[str, Any]:
        """CHART_EQUITY (corrected order) or CHART_FUTURES fields for one finished bar."""
        ohlcv = {
            "2": wire_double(bar.open, 6),
            "3": wire_double(bar.high, 6),
            "4": wire_double(bar.low, 6),
            "5": wire_double(bar.close, 6),
            "6": wire_double(float(bar.volume), 0),
        }
        if service == "CHART_FUTURES":
            return {"1": bar.start_ms, **ohlcv}
        return {
            "1": chart_sequence(bar.start_ms),
            **ohlcv,
            "7": bar.start_ms,
            "8": chart_day(bar.start_ms),
        }

    # -- screeners --

    @staticmethod
    def parse_screener_key(key: str) -> tuple[str, str, int] | None:
        """(prefix, sort field, frequency) of a PREFIX_SORTFIELD_FREQUENCY key, or None."""
        head, _, freq = key.rpartition("_")
        if not freq.isdigit() or int(freq) not in SCREENER_FREQUENCIES:
            return None
        for sort in SCREENER_SORTS:
            if head.endswith("_" + sort):
                prefix = head[: -len(sort) - 1]
                if prefix in SCREENER_PREFIXES:
                    return prefix, sort, int(freq)
        return None

    def screener(self, service: str, key: str, now_ms: int) -> dict[str, Any] | None:
        """A whole screener snapshot (top 10 of a universe by the key's sort field)."""
        parsed = self.parse_screener_key(key)
        if parsed is None:
            return None
        prefix, sort, freq = parsed
        if service == "SCREENER_OPTION" and not prefix.startswith("OPTION_"):
            return None
        if service == "SCREENER_EQUITY" and prefix.startswith("OPTION_"):
            return None
        universe = self._screener_universe(prefix, now_ms)
        rng = self._screen_rng
        rows = []
        for inst in universe:
            self.step(inst, now_ms)
            window = (
                inst.volume
                if freq == 0
                else max(1, int(inst.volume * freq / 390 * rng.uniform(0.5, 2)))
            )
            rows.append((inst, window, max(1, window // (inst.trade_lot * rng.randint(2, 60)))))
        total = sum(w for _, w, _ in rows) or 1

        def pct(inst: Instrument) -> float:
            return (inst.last - inst.close) / inst.close if inst.close else 0.0

        sorters: dict[str, Callable[[tuple[Instrument, int, int]], float]] = {
            "VOLUME": lambda r: -r[1],
            "TRADES": lambda r: -r[2],
            "PERCENT_CHANGE_UP": lambda r: -pct(r[0]),
            "PERCENT_CHANGE_DOWN": lambda r: pct(r[0]),
            "AVERAGE_PERCENT_VOLUME": lambda r: -r[1] / max(1, r[0].volume),
        }
        rows.sort(key=sorters[sort])
        items = []
        for inst, window, trades in rows[:10]:
            items.append(
                {
                    "symbol": inst.symbol,
                    "description": self._screener_description(inst),
                    "lastPrice": wire_double(inst.last, 4),
                    "netChange": wire_double(inst.last - inst.close, 4),
                    "netPercentChange": wire_double(pct(inst), 8),
                    "marketShare": wire_double(window / total * 100, 8),
                    "totalVolume": total,
                    "volume": window,
                    "trades": trades,
                }
            )
        return {"1": now_ms, "2": sort, "3": freq, "4": items}

    def _screener_universe(self, prefix: str, now_ms: int) -> list[Instrument]:
        if prefix.startswith("OPTION_"):
            today = et_date(now_ms)
            friday = today + timedelta(days=(4 - today.weekday()) % 7)
            symbols = []
            for root in SCREENER_OPTION_ROOTS:
                und = self.instrument(root)
                assert und is not None
                base = round(und.last)
                sides = {"OPTION_PUT": (False,), "OPTION_CALL": (True,)}.get(prefix, (True, False))
                for offset in (-2, 0, 2):
                    for call in sides:
                        symbols.append(option_symbol(root, friday, call, base + offset))
        else:
            exchange = {"NYSE": "N", "NASDAQ": "Q"}.get(prefix)
            symbols = [s for s, ref in EQUITIES.items() if exchange in (None, ref.exchange)]
        found = [self.instrument(s) for s in symbols]
        return [i for i in found if i is not None]

    @staticmethod
    def _screener_description(inst: Instrument) -> str:
        if inst.kind != "option":
            ref: EquityRef = inst.static["ref"]
            return ref.description.upper()
        s = inst.static
        expiry: date = s["expiry"]
        kind = "Call" if s["call"] else "Put"
        month = MONTH_ABBR[expiry.month - 1]
        return f"{s['root']:<7}{month} {expiry.day} {expiry.year} {s['strike']:.1f} {kind}"

    # -- account activity --

    def order_life(
        self, symbol: str, quantity: int, side: str, now_ms: int
    ) -> list[tuple[str, str]]:
        """An order's account-activity messages: (message type, message data as a JSON string).

        The message data mirrors the structure seen in public captures (SchwabOrderID,
        AccountNumber, BaseEvent.EventType and one event-specific object; prices as
        {"lo": ..., "signScale": 12}); the full real payload is much larger and UNVERIFIED.
        """
        inst = self.instrument(symbol)
        price = (
            inst.ask
            if inst is not None and side == "BUY"
            else inst.bid
            if inst is not None
            else 0.0
        )
        order_id = str(1_000_000_000_000 + self._order_rng.randint(0, 999_999_999_999))
        exec_id = str(self._order_rng.randint(10**9, 10**10 - 1))

        def money(value: float) -> dict[str, Any]:
            return {"lo": str(round(value * 1_000_000)), "signScale": 12}

        stamp = datetime.fromtimestamp(now_ms / 1000, ET).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
        leg = {
            "LegID": "1",
            "Security": {
                "Symbol": symbol,
                "SecurityType": "Common_Stock"
                if inst is None or inst.kind == "equity"
                else inst.kind.title(),
            },
            "BuySellCode": "Buy" if side == "BUY" else "Sell",
            "Quantity": {"lo": str(quantity)},
        }
        payloads: dict[str, tuple[str, dict[str, Any]]] = {
            "OrderCreated": (
                "OrderCreatedEventEquityOrder",
                {
                    "EventType": "OrderCreated",
                    "Order": {
                        "SchwabOrderID": order_id,
                        "AccountNumber": SIM_ACCOUNT,
                        "Order": {
                            "LifecycleCreatedTimestamp": {"DateTimeString": stamp},
                            "LifecycleSchwabOrderID": order_id,
                            "AssetOrderEquityOrderLeg": {
                                "OrderInstruction": {
                                    "ExecutionStrategy": {
                                        "Type": "ES_Limit",
                                        "LimitExecutionStrategy": {"LimitPrice": money(price)},
                                    },
                                },
                                "TimeInForce": "TIF_Day",
                                "OrderLegs": [leg],
                            },
                        },
                    },
                },
            ),
            "OrderAccepted": (
                "OrderAcceptedEvent",
                {
                    "EventType": "OrderAccepted",
                    "CreatedTimeStamp": {"DateTimeString": stamp},
                    "Status": "Open",
                },
            ),
            "ExecutionRequested": (
                "ExecutionRequestedEventRoutedInfo",
                {
                    "EventType": "ExecutionRequested",
                    "RouteName": "SIMX",
                    "RouteRequestedQuantity": {"lo": str(quantity)},
                    "RouteRequestedPrice": money(price),
                },
            ),
            "ExecutionRequestCreated": (
                "ExecutionRequestCreatedEvent",
                {
                    "EventType": "ExecutionRequestCreated",
                    "ExecutionRequestID": exec_id,
                },
            ),
            "ExecutionRequestCompleted": (
                "ExecutionRequestCompletedEvent",
                {
                    "EventType": "ExecutionRequestCompleted",
                    "ExecutionRequestID": exec_id,
                },
            ),
            "OrderFillCompleted": (
                "OrderFillCompletedEventOrderLegQuantityInfo",
                {
                    "EventType": "OrderFillCompleted",
                    "LegId": "1",
                    "ExecutionInfo": {
                        "ExecutionSequenceNumber": 1,
                        "ExecutionQuantity": {"lo": str(quantity)},
                        "ExecutionPrice": money(price),
                        "ExecutionTimeStamp": {"DateTimeString": stamp},
                        "ExecutionID": exec_id,
                    },
                },
            ),
        }
        messages = []
        for kind in ORDER_LIFE:
            name, body = payloads[kind]
            data = {
                "SchwabOrderID": order_id,
                "AccountNumber": SIM_ACCOUNT,
                "BaseEvent": {"EventType": kind, name: body},
            }
            messages.append((kind, json.dumps(data, separators=(",", ":"))))
        return messages
