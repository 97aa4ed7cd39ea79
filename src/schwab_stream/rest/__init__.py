"""Schwab's market-data REST: one `MarketDataClient` per process (rate-limited, retried), the
answers as msgspec Structs, and the sans-I/O rules it needs (the limiter, the candle window)."""

from schwab_stream.rest.candles import CandleWindow, candles_between
from schwab_stream.rest.client import MarketDataClient
from schwab_stream.rest.models import (
    Candle,
    CandleList,
    Hours,
    Interval,
    MarketHours,
    Quote,
    QuoteFields,
    QuotesAnswer,
    RegularFields,
    SessionHours,
)
from schwab_stream.rest.ratelimit import RateLimiter
from schwab_stream.rest.stats import Endpoint, RestStats

__all__ = [
    "Candle",
    "CandleList",
    "CandleWindow",
    "Endpoint",
    "Hours",
    "Interval",
    "MarketDataClient",
    "MarketHours",
    "Quote",
    "QuoteFields",
    "QuotesAnswer",
    "RateLimiter",
    "RegularFields",
    "RestStats",
    "SessionHours",
    "candles_between",
]
