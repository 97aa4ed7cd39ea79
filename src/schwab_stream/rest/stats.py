"""The market-data client's own counters: plain ints and Counters that telemetry reads (one event
loop, no locks), as ClientStats and PublisherStats are for their parts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class Endpoint(StrEnum):
    """The calls, as metric labels."""

    PRICE_HISTORY = "price_history"
    QUOTES = "quotes"
    MARKET_HOURS = "market_hours"


#: The outcome label of a call that succeeded; a failed one is labelled by its `RestReason`, or
#: AUTH_FAILED when the auth client itself failed (a refresh refused or impossible).
OK = "ok"
AUTH_FAILED = "auth"


@dataclass
class RestStats:
    #: Calls by (endpoint, outcome): OK, a RestReason value or AUTH_FAILED. A quotes call for
    #: more symbols than one request takes counts once per request.
    calls: Counter[tuple[str, str]] = field(default_factory=Counter)
    #: Attempts made again after a 429, a 5xx or a network failure, by endpoint
    retries: Counter[str] = field(default_factory=Counter)
    #: HTTP 429 answers received (each one paused every caller)
    rate_limited: int = 0
    #: Access-token refreshes this client asked for after a 401
    token_refreshes: int = 0
    #: Requests that had to wait for the rate limiter, and the seconds they waited in all
    limiter_waits: int = 0
    limiter_wait_seconds: float = 0.0
    #: Quote symbols Schwab called invalid, and entries we could not read
    invalid_symbols: int = 0
    unreadable_quotes: int = 0
