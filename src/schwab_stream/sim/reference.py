"""Reference data: real names, CUSIPs, exchanges and rough prices for well-known instruments.

Known symbols look like their real selves on the wire (the fixtures' MSFT, /ES, EUR/USD); any
other symbol gets plausible made-up values drawn from its own RNG at creation (`registry`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta


@dataclass(frozen=True)
class EquityRef:
    """An equity's (or index's) static fields: LEVELONE_EQUITIES 13, 15, 21, 22 and the extras."""

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
    """A futures root's product: name, tick, contract multiplier, exchange, quarterly or monthly."""

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

#: Book market makers as the real frames name them (NASDAQ_BOOK's in lower case).
NYSE_VENUES = ("NYSE", "ARCX", "NSDQ", "BATX", "EDGX", "IEXG", "MEMX", "AMEX", "MWSE", "G")
NASDAQ_VENUES = ("NSDQ", "arcx", "edgx", "batx", "iexg", "memx", "nyse", "edga", "baty", "G")
OPTION_VENUES = ("CBOE", "AMEX", "PHLX", "ISEX", "MIAX", "BOSX", "EDGX", "NSDQ", "GMNI", "PACX")
#: A venue as level one names it: (exchange id char, MIC), equity fields 6/39, 7/40 and 16/41.
#: Each pair is one exchange: the SIP participant letters, and the pairs real frames show
#: (Z BATS; Q XBOS, Nasdaq BX quoting under Nasdaq's letter; L TRFC, an off-exchange print).
Venue = tuple[str, str]
QUOTE_VENUES: tuple[Venue, ...] = (
    ("Q", "XNAS"),
    ("Q", "XBOS"),
    ("Z", "BATS"),
    ("Y", "BATY"),
    ("K", "EDGX"),
    ("J", "EDGA"),
    ("P", "ARCX"),
    ("N", "XNYS"),
    ("X", "XPSX"),
    ("V", "IEXG"),
    ("U", "MEMX"),
)
#: Where trades print: any quoting venue, or off exchange through a FINRA TRF.
TRADE_VENUES: tuple[Venue, ...] = (*QUOTE_VENUES, ("L", "TRFC"), ("L", "TRFC"))


def dividend_and_borrow(symbol: str, dividend: float, today: date) -> tuple[str, int, float]:
    """(last ex-dividend date as Schwab writes it, hard-to-borrow quantity, rate): per symbol,
    from the symbol alone, so every stock differs and each is the same on every run."""
    rng = random.Random(f"static|{symbol}")
    phase = rng.randint(0, 90)
    ex_date = today - timedelta(days=(today.toordinal() - phase) % 91)
    hard = rng.random() < 0.15
    quantity = rng.randint(10_000, 900_000) if hard else rng.randint(2, 300) * 10**6
    rate = round(rng.uniform(0.3, 40), 4) if quantity < 1_000_000 else 0.0
    return (f"{ex_date:%Y-%m-%d} 00:00:00.0" if dividend else "", quantity, rate)
