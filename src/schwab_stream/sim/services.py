"""The streamer services the simulator serves: their names, field counts and instrument kinds.

One table per rule, so the session (which services exist, how many fields each has) and the feed
(which instruments a keyed service serves) read the same facts (docs/schwab-protocol.md §9).
"""

from __future__ import annotations

from schwab_stream.sim.symbols import Kind

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
SERVICE_KINDS: dict[str, frozenset[Kind]] = {
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
