"""MarketDataClient: Schwab's market-data REST (price history, quotes, market hours) for the
bridge's back-fill and quote refresh (docs/schwab-protocol.md §14).

Tokens come from the process's `SchwabAuthClient`; the retry loop is its own rather than the auth
client's because every attempt must pass the shared `RateLimiter`, a 429 pauses every caller, and
each outcome is counted in `RestStats` for telemetry.

One per process: the limiter is per instance, so two clients would together send twice the rate.
The pipeline builds one beside its auth client, hands it to whatever needs market data (back-fill,
the quote refresh) and closes it with `aclose()` when it stops. Every method is safe to call from
many tasks at once; calls queue for the limiter in arrival order.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TypeVar

import httpx

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.backoff import Backoff
from schwab_stream.errors import RestError, RestReason, SchwabStreamError
from schwab_stream.rest.models import (
    CandleList,
    MarketHours,
    Quote,
    QuotesAnswer,
    decode_candles,
    decode_market_hours,
    decode_quotes,
)
from schwab_stream.rest.ratelimit import RateLimiter, retry_after_seconds
from schwab_stream.rest.stats import AUTH_FAILED, OK, Endpoint, RestStats

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_REQUESTS_PER_MINUTE = 120
DEFAULT_BURST = 20
DEFAULT_TIMEOUT = 15.0
DEFAULT_MAX_ATTEMPTS = 4
#: Symbols per quotes request: an OAS error example says 500 (UNVERIFIED as a hard limit)
DEFAULT_SYMBOLS_PER_CALL = 500
#: The longest pause a Retry-After may impose, so a wrong header cannot stop us for hours
DEFAULT_MAX_RETRY_AFTER = 60.0

MARKETS = frozenset({"equity", "option", "bond", "future", "forex"})
QUOTE_FIELDS = frozenset({"quote", "fundamental", "extended", "reference", "regular"})
#: The blocks `Quote` models; asking for no more keeps answers small
DEFAULT_QUOTE_FIELDS = ("quote", "regular")

_PRINTABLE = re.compile(r"[^\x20-\x7e]+")


class MarketDataClient:
    """Price history, quotes and market hours through one rate limiter.

    Failures are `RestError`s with a bounded `reason`; a `LoginRequiredError` or `AuthError` from
    the auth client (the refresh token is dead, or a refresh failed) passes through unchanged.
    `clock` and `sleep` are the limiter's time (tests pass fakes); `http` replaces the client's own
    httpx client, which is then not closed by `aclose()`.
    """

    #: First backoff delay in seconds; doubles per attempt, with jitter, up to retry_max_delay
    retry_base_delay = 0.5
    retry_max_delay = 8.0

    def __init__(
        self,
        auth: SchwabAuthClient,
        *,
        requests_per_minute: int = DEFAULT_REQUESTS_PER_MINUTE,
        burst: int = DEFAULT_BURST,
        timeout: float = DEFAULT_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        symbols_per_call: int = DEFAULT_SYMBOLS_PER_CALL,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        if max_attempts < 1 or symbols_per_call < 1:
            raise ValueError("max_attempts and symbols_per_call must be at least 1")
        self._auth = auth
        self._base = auth.settings.api_base_url.rstrip("/")
        self.limiter = RateLimiter(requests_per_minute, burst)
        self._timeout = httpx.Timeout(timeout, connect=min(timeout, 10.0))
        self.max_attempts = max_attempts
        self.symbols_per_call = symbols_per_call
        self.max_retry_after = max_retry_after
        self._http = http or httpx.AsyncClient(timeout=self._timeout)
        self._owns_http = http is None
        self._clock = clock
        self._sleep = sleep
        self.stats = RestStats()

    def __repr__(self) -> str:
        return (
            f"MarketDataClient(api_base_url={self._base!r}, "
            f"requests_per_minute={self.limiter.per_minute})"
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # --- the calls ------------------------------------------------------------------------

    async def price_history(
        self, symbol: str, start_ms: int, end_ms: int, *, extended: bool = True
    ) -> CandleList:
        """One-minute candles from `start_ms` to `end_ms` (epoch ms), as Schwab sent them.

        Schwab may send more than the range (a whole day, schwab-py#148) and its endDate may or
        may not be inclusive: keep the window with `rest.candles.candles_between`. `extended`
        asks for pre- and post-market bars too.
        """
        if start_ms > end_ms:
            raise ValueError("start_ms is after end_ms")
        params = {
            "symbol": symbol,
            "periodType": "day",
            "frequencyType": "minute",
            "frequency": "1",
            "startDate": str(start_ms),
            "endDate": str(end_ms),
            "needExtendedHoursData": "true" if extended else "false",
        }
        return await self._call(
            Endpoint.PRICE_HISTORY,
            f"price history for {_printable(symbol)}",
            "/marketdata/v1/pricehistory",
            params,
            decode_candles,
        )

    async def quotes(
        self, symbols: Iterable[str], fields: Sequence[str] = DEFAULT_QUOTE_FIELDS
    ) -> QuotesAnswer:
        """Quotes for `symbols`, `symbols_per_call` per request. Unknown symbols are reported in
        the answer (`invalid_symbols`, `unreadable`, `missing`), never raised; a request that
        fails for good raises its `RestError`, and the chunks already answered are dropped."""
        unknown = set(fields) - QUOTE_FIELDS
        if unknown or not fields:
            raise ValueError(f"quote fields are some of {sorted(QUOTE_FIELDS)}")
        wanted = list(dict.fromkeys(symbols))
        quotes: dict[str, Quote] = {}
        invalid: list[str] = []
        unreadable: list[str] = []
        missing: list[str] = []
        for first in range(0, len(wanted), self.symbols_per_call):
            chunk = wanted[first : first + self.symbols_per_call]
            params = {"symbols": ",".join(chunk), "fields": ",".join(fields)}

            def decode(body: bytes, chunk: list[str] = chunk) -> QuotesAnswer:
                return decode_quotes(body, chunk)

            what = f"quotes for {len(chunk)} symbols"
            answer = await self._call(
                Endpoint.QUOTES, what, "/marketdata/v1/quotes", params, decode
            )
            quotes.update(answer.quotes)
            invalid.extend(answer.invalid_symbols)
            unreadable.extend(answer.unreadable)
            missing.extend(answer.missing)
        self.stats.invalid_symbols += len(invalid)
        self.stats.unreadable_quotes += len(unreadable)
        return QuotesAnswer(
            quotes=quotes,
            invalid_symbols=tuple(invalid),
            unreadable=tuple(unreadable),
            missing=tuple(missing),
        )

    async def market_hours(
        self, markets: Iterable[str], date: dt.date | None = None
    ) -> MarketHours:
        """Session hours of `markets` (equity, option, bond, future, forex) on `date` (Schwab's
        default: today; it takes up to a year ahead)."""
        wanted = list(dict.fromkeys(markets))
        if not wanted or not set(wanted) <= MARKETS:
            raise ValueError(f"markets are some of {sorted(MARKETS)}")
        params = {"markets": ",".join(wanted)}
        if date is not None:
            params["date"] = date.isoformat()
        return await self._call(
            Endpoint.MARKET_HOURS,
            f"market hours for {params['markets']}",
            "/marketdata/v1/markets",
            params,
            decode_market_hours,
        )

    # --- one call, with retries -------------------------------------------------------------

    async def _call(
        self,
        endpoint: Endpoint,
        what: str,
        path: str,
        params: dict[str, str],
        decode: Callable[[bytes], T],
    ) -> T:
        """GET `path` until it succeeds or fails for good; every outcome counted once."""
        try:
            result = await self._attempts(endpoint, what, path, params, decode)
        except RestError as exc:
            self.stats.calls[endpoint.value, exc.reason.value] += 1
            raise
        except SchwabStreamError:
            self.stats.calls[endpoint.value, AUTH_FAILED] += 1
            raise
        self.stats.calls[endpoint.value, OK] += 1
        return result

    async def _attempts(
        self,
        endpoint: Endpoint,
        what: str,
        path: str,
        params: dict[str, str],
        decode: Callable[[bytes], T],
    ) -> T:
        url = f"{self._base}{path}"
        backoff = Backoff(self.retry_base_delay, self.retry_max_delay)
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            await self._wait_turn()
            token = await self._auth.access_token()
            asked: float | None = None  # a 429's Retry-After
            try:
                response = await self._http.get(
                    url, params=params, headers=_headers(token), timeout=self._timeout
                )
            except httpx.RequestError as exc:  # timeouts, connections, a body cut or garbled
                failure = RestError(
                    RestReason.NETWORK, f"{what}: {type(exc).__name__}", attempts=attempt
                )
            else:
                status = response.status_code
                if status == 200:
                    try:
                        return decode(response.content)
                    except RestError as exc:
                        raise RestError(
                            exc.reason, f"{what}: {exc}", status=200, attempts=attempt
                        ) from None
                if status == 401 and not refreshed:
                    # One refresh per call; this attempt does not count against max_attempts.
                    refreshed = True
                    attempt -= 1
                    await self._refresh_after_401(token)
                    continue
                failure = _failure(response, what, token, attempt)
                if status == 429:
                    self.stats.rate_limited += 1
                    asked = retry_after_seconds(response.headers.get("Retry-After"), time.time())
            delay = backoff.next()
            if failure.reason is RestReason.RATE_LIMITED:
                # Pause every caller, even when this call gives up: for Retry-After when sent
                # (up to max_retry_after), else for this call's own backoff delay.
                pause = delay if asked is None else min(asked, self.max_retry_after)
                self.limiter.pause(self._clock(), pause)
            if not failure.transient or attempt >= self.max_attempts:
                raise failure
            self.stats.retries[endpoint.value] += 1
            log.info(
                "%s failed (%s); retry %d of %d in %.1f s",
                what,
                failure,
                attempt,
                self.max_attempts - 1,
                delay,
            )
            await self._sleep(delay)

    async def _wait_turn(self) -> None:
        """Sleep until the limiter gives this request a slot outside any pause."""
        waited = 0.0
        while True:
            wait = self.limiter.acquire(self._clock())
            if wait <= 0:
                break
            waited += wait
            await self._sleep(wait)
            if self.limiter.paused_for(self._clock()) <= 0:
                break
        if waited > 0:
            self.stats.limiter_waits += 1
            self.stats.limiter_wait_seconds += waited

    async def _refresh_after_401(self, token: str) -> None:
        """Refresh the access token, unless another call already did since this one sent it."""
        if await self._auth.access_token() != token:
            return
        log.info("market data answered 401; refreshing the access token once")
        self.stats.token_refreshes += 1
        await self._auth.refresh(force=True)


def _headers(token: str) -> dict[str, str]:
    # A correlation id per request: reported (2024, UNVERIFIED today) to be needed for a body.
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json",
        "Schwab-Client-CorrelId": str(uuid.uuid4()),
    }


def _reason(status: int) -> RestReason:
    if status == 429:
        return RestReason.RATE_LIMITED
    if status >= 500:
        return RestReason.SERVER_ERROR
    if status in (401, 403):
        return RestReason.UNAUTHORIZED
    if status == 404:
        return RestReason.NOT_FOUND
    if 400 <= status < 500:
        return RestReason.BAD_REQUEST
    return RestReason.BAD_ANSWER  # a 1xx, another 2xx or a redirect: nothing we asked for


def _failure(response: httpx.Response, what: str, token: str, attempt: int) -> RestError:
    status = response.status_code
    detail = _schwab_detail(response).replace(token, "***")
    message = f"{what}: HTTP {status}" + (f" ({detail})" if detail else "")
    return RestError(_reason(status), message, status=status, attempts=attempt)


def _schwab_detail(response: httpx.Response) -> str:
    """Schwab's own words for a failure, short and printable: the first error's title and
    detail, or the gateway's faultstring; '' for anything else (an HTML page, say)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    words: list[str] = []
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            words = [str(errors[0].get(key, "")) for key in ("title", "detail")]
        elif isinstance(body.get("fault"), dict):
            words = [str(body["fault"].get("faultstring", ""))]
        elif "error" in body:  # OAuth's form
            words = [str(body.get("error", ""))]
    return _printable(": ".join(word for word in words if word))[:200]


def _printable(text: str) -> str:
    return _PRINTABLE.sub(" ", text).strip()
