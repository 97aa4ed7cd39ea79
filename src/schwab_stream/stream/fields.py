"""Numeric field tables of the Schwab streamer services, with the corrections real frames demand.

Schwab sends fields as numeric string keys ("1", "2", ...). Every field gets exactly one snake_case
name, used everywhere: in `TickEvent.changed`, as the key in `TickEvent.fields`, and in docs.
Level-one fields that are attributes of `TickEvent` (bid, ask, ...) are named after that attribute.

Corrections to Schwab's Streamer Guide and to schwab-py (docs/schwab-protocol.md §10):
CHART_EQUITY uses the real order (1 sequence, 2-5 OHLC, 6 volume, 7 chart time, 8 chart day),
LEVELONE_OPTIONS field 20 is the strike price, and field 2 of a book market maker is its quote
time in ms since midnight America/New_York.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

LEVELONE_EQUITIES: Final = "LEVELONE_EQUITIES"
LEVELONE_OPTIONS: Final = "LEVELONE_OPTIONS"
LEVELONE_FUTURES: Final = "LEVELONE_FUTURES"
LEVELONE_FUTURES_OPTIONS: Final = "LEVELONE_FUTURES_OPTIONS"
LEVELONE_FOREX: Final = "LEVELONE_FOREX"
NYSE_BOOK: Final = "NYSE_BOOK"
NASDAQ_BOOK: Final = "NASDAQ_BOOK"
OPTIONS_BOOK: Final = "OPTIONS_BOOK"
CHART_EQUITY: Final = "CHART_EQUITY"
CHART_FUTURES: Final = "CHART_FUTURES"
SCREENER_EQUITY: Final = "SCREENER_EQUITY"
SCREENER_OPTION: Final = "SCREENER_OPTION"
ACCT_ACTIVITY: Final = "ACCT_ACTIVITY"

#: The level-one attributes of `TickEvent`, in its declaration order.
TICK_CORE_ATTRS: Final[tuple[str, ...]] = (
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",
    "last_size",
    "volume",
    "open",
    "high",
    "low",
    "close",
    "mark",
    "net_change",
    "quote_time",
    "trade_time",
)

#: Core attributes holding epoch-ms integers; every other core attribute is a number.
TICK_TIME_ATTRS: Final[frozenset[str]] = frozenset({"quote_time", "trade_time"})

_EQUITIES = (
    "symbol",  # 0 (returned as `key`)
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",  # 5
    "ask_id",
    "bid_id",
    "volume",
    "last_size",
    "high",  # 10
    "low",
    "close",
    "exchange_id",
    "marginable",
    "description",  # 15
    "last_id",
    "open",
    "net_change",
    "high_52_week",
    "low_52_week",  # 20
    "pe_ratio",
    "annual_dividend_amount",
    "dividend_yield",
    "nav",
    "exchange_name",  # 25
    "dividend_date",
    "regular_market_quote",
    "regular_market_trade",
    "regular_market_last_price",
    "regular_market_last_size",  # 30
    "regular_market_net_change",
    "security_status",
    "mark",
    "quote_time",
    "trade_time",  # 35
    "regular_market_trade_time",
    "bid_time",
    "ask_time",
    "ask_mic_id",
    "bid_mic_id",  # 40
    "last_mic_id",
    "net_percent_change",
    "regular_market_percent_change",
    "mark_change",
    "mark_percent_change",  # 45
    "htb_quantity",
    "htb_rate",
    "hard_to_borrow",
    "is_shortable",
    "post_market_net_change",  # 50
    "post_market_percent_change",
)

_OPTIONS = (
    "symbol",  # 0
    "description",
    "bid",
    "ask",
    "last",
    "high",  # 5
    "low",
    "close",
    "volume",
    "open_interest",
    "volatility",  # 10
    "money_intrinsic_value",
    "expiration_year",
    "multiplier",
    "digits",
    "open",  # 15
    "bid_size",
    "ask_size",
    "last_size",
    "net_change",
    "strike_price",  # 20 (schwab-py: STRIKE_TYPE, wrong)
    "contract_type",
    "underlying",
    "expiration_month",
    "deliverables",
    "time_value",  # 25
    "expiration_day",
    "days_to_expiration",
    "delta",
    "gamma",
    "theta",  # 30
    "vega",
    "rho",
    "security_status",
    "theoretical_option_value",
    "underlying_price",  # 35
    "uv_expiration_type",
    "mark",
    "quote_time",
    "trade_time",
    "exchange_id",  # 40
    "exchange_name",
    "last_trading_day",
    "settlement_type",
    "net_percent_change",
    "mark_change",  # 45
    "mark_percent_change",
    "implied_yield",
    "is_penny_pilot",
    "option_root",
    "high_52_week",  # 50
    "low_52_week",
    "indicative_ask_price",
    "indicative_bid_price",
    "indicative_quote_time",
    "exercise_type",  # 55
)

_FUTURES = (
    "symbol",  # 0
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",  # 5
    "bid_id",
    "ask_id",
    "volume",
    "last_size",
    "quote_time",  # 10
    "trade_time",
    "high",
    "low",
    "close",
    "exchange_id",  # 15
    "description",
    "last_id",
    "open",
    "net_change",
    "future_percent_change",  # 20
    "exchange_name",
    "security_status",
    "open_interest",
    "mark",
    "tick",  # 25
    "tick_amount",
    "product",
    "future_price_format",
    "future_trading_hours",
    "future_is_tradable",  # 30
    "future_multiplier",
    "future_is_active",
    "future_settlement_price",
    "future_active_symbol",
    "future_expiration_date",  # 35
    "expiration_style",
    "ask_time",
    "bid_time",
    "quoted_in_session",
    "settlement_date",  # 40
)

_FUTURES_OPTIONS = (
    "symbol",  # 0
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",  # 5
    "bid_id",
    "ask_id",
    "volume",
    "last_size",
    "quote_time",  # 10
    "trade_time",
    "high",
    "low",
    "close",
    "last_id",  # 15
    "description",
    "open",
    "open_interest",
    "mark",
    "tick",  # 20
    "tick_amount",
    "future_multiplier",
    "future_settlement_price",
    "underlying_symbol",
    "strike_price",  # 25
    "future_expiration_date",
    "expiration_style",
    "contract_type",
    "security_status",
    "exchange_id",  # 30
    "exchange_name",
)

_FOREX = (
    "symbol",  # 0
    "bid",
    "ask",
    "last",
    "bid_size",
    "ask_size",  # 5
    "volume",
    "last_size",
    "quote_time",
    "trade_time",
    "high",  # 10
    "low",
    "close",
    "exchange_id",
    "description",
    "open",  # 15
    "net_change",
    "percent_change",
    "exchange_name",
    "digits",
    "security_status",  # 20
    "tick",
    "tick_amount",
    "product",
    "trading_hours",
    "is_tradable",  # 25
    "market_maker",
    "high_52_week",
    "low_52_week",
    "mark",
)

_BOOK = ("symbol", "book_time", "bids", "asks")
_CHART_EQUITY = (
    "symbol",
    "sequence",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "start",
    "chart_day",
)
_CHART_FUTURES = ("symbol", "start", "open", "high", "low", "close", "volume")
_SCREENER = ("symbol", "screener_ts", "sort_field", "frequency", "items")
_ACCT_ACTIVITY = ("symbol", "account", "message_type", "data")

#: Field names per service, indexed by field number.
FIELD_NAMES: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        LEVELONE_EQUITIES: _EQUITIES,
        LEVELONE_OPTIONS: _OPTIONS,
        LEVELONE_FUTURES: _FUTURES,
        LEVELONE_FUTURES_OPTIONS: _FUTURES_OPTIONS,
        LEVELONE_FOREX: _FOREX,
        NYSE_BOOK: _BOOK,
        NASDAQ_BOOK: _BOOK,
        OPTIONS_BOOK: _BOOK,
        CHART_EQUITY: _CHART_EQUITY,
        CHART_FUTURES: _CHART_FUTURES,
        SCREENER_EQUITY: _SCREENER,
        SCREENER_OPTION: _SCREENER,
        ACCT_ACTIVITY: _ACCT_ACTIVITY,
    }
)

#: Every streamer service, in the Streamer Guide's order (docs/schwab-protocol.md §9.1).
SERVICES: Final[tuple[str, ...]] = tuple(FIELD_NAMES)

#: The event type each service produces (the first part of its Redis stream name).
EVENT_TYPES: Final[Mapping[str, str]] = MappingProxyType(
    {
        LEVELONE_EQUITIES: "tick",
        LEVELONE_OPTIONS: "tick",
        LEVELONE_FUTURES: "tick",
        LEVELONE_FUTURES_OPTIONS: "tick",
        LEVELONE_FOREX: "tick",
        NYSE_BOOK: "level2",
        NASDAQ_BOOK: "level2",
        OPTIONS_BOOK: "level2",
        CHART_EQUITY: "bar",
        CHART_FUTURES: "bar",
        SCREENER_EQUITY: "screener",
        SCREENER_OPTION: "screener",
        ACCT_ACTIVITY: "account",
    }
)

LEVELONE_SERVICES: Final[tuple[str, ...]] = tuple(s for s in SERVICES if EVENT_TYPES[s] == "tick")

#: The `venue` of a Level2Event, per book service.
BOOK_VENUES: Final[Mapping[str, str]] = MappingProxyType(
    {NYSE_BOOK: "NYSE", NASDAQ_BOOK: "NASDAQ", OPTIONS_BOOK: "OPTIONS"}
)

#: A price level of a book side (the array elements of book fields 2 and 3).
BOOK_LEVEL_FIELDS: Final[tuple[str, ...]] = ("price", "size", "count", "makers")
#: A market maker of a price level; `time_ms` is ms since midnight America/New_York.
BOOK_MAKER_FIELDS: Final[tuple[str, ...]] = ("id", "size", "time_ms")

#: Screener item keys (Schwab's camelCase) to our names.
SCREENER_ITEM_FIELDS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "symbol": "symbol",
        "description": "description",
        "lastPrice": "last_price",
        "netChange": "net_change",
        "netPercentChange": "net_percent_change",
        "marketShare": "market_share",
        "totalVolume": "total_volume",
        "volume": "volume",
        "trades": "trades",
    }
)

#: Non-numeric keys of level-one items that go to `TickEvent.fields` (`delayed` has its own
#: attribute, `key` is the symbol).
LEVELONE_EXTRA_KEYS: Final[Mapping[str, str]] = MappingProxyType(
    {"assetMainType": "asset_main_type", "assetSubType": "asset_sub_type", "cusip": "cusip"}
)


def _core_map(names: tuple[str, ...]) -> Mapping[int, str]:
    core = set(TICK_CORE_ATTRS)
    return MappingProxyType({num: name for num, name in enumerate(names) if name in core})


#: Per level-one service: field number -> TickEvent attribute. Attributes a service lacks
#: (futures options have no net change) stay null in its events.
TICK_CORE: Final[Mapping[str, Mapping[int, str]]] = MappingProxyType(
    {service: _core_map(FIELD_NAMES[service]) for service in LEVELONE_SERVICES}
)

_ALL_FIELDS = {svc: ",".join(map(str, range(len(names)))) for svc, names in FIELD_NAMES.items()}


def all_fields(service: str) -> str:
    """The `fields` parameter that requests every field of a service ("0,1,...,N").

    Raises KeyError for a service Schwab does not stream.
    """
    return _ALL_FIELDS[service]
