"""The simulator's market-data REST side: /marketdata/v1/pricehistory, /quotes, /markets.

Every call passes one gate, in this order: a planned failure (`POST /sim/fault/rest`), the
access token (401 as userPreference), the per-minute limit (`rest_limit_per_minute`: 429 past it,
counted over the last 60 s of wall time, accepted calls only), then the endpoint (400 for bad
parameters, 404 for an unknown path or symbol on the single-symbol path). Errors use Schwab's
envelope `{"errors":[{"id","status","title","detail"[, "source"]}]}` (schwab-api.md §9); every
answer carries `Schwab-Client-CorrelId`, errors also `Schwab-Resource-Version`. /sim/stats
counts calls by endpoint and answers by status (`"rest": {"pricehistory": 3, "status_429": 2}`).
"""

from __future__ import annotations

import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

from aiohttp import web

from schwab_stream.sim import history, quotes
from schwab_stream.sim.clock import et_date
from schwab_stream.sim.registry import Market
from schwab_stream.sim.state import SimState
from schwab_stream.sim.streamer import HUB_KEY

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
Handler = Callable[[web.Request], Awaitable[web.Response]]


def error_response(
    status: int,
    detail: str,
    parameter: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Schwab's error envelope (401 with a number `status`, as the real one; others a string)."""
    error: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "status": status if status == 401 else str(status),
        "title": TITLES.get(status, "Error"),
        "detail": detail,
    }
    if parameter is not None:
        error["source"] = {"parameter": parameter}
    return web.json_response(
        {"errors": [error]},
        status=status,
        headers={
            "Schwab-Client-CorrelId": str(uuid.uuid4()),
            "Schwab-Resource-Version": "1.0.0",
            **(headers or {}),
        },
    )


def ok(body: Any) -> web.Response:
    return web.json_response(body, headers={"Schwab-Client-CorrelId": str(uuid.uuid4())})


class RestGate:
    """The per-minute limit and the planned failures, shared by every market-data route."""

    def __init__(self, limit_per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.limit = limit_per_minute
        self.clock = clock
        self.calls: deque[float] = deque()
        self.fail_status = 500
        self.fail_count = 0

    def fail_next(self, status: int, count: int) -> None:
        self.fail_status, self.fail_count = status, count

    def take_failure(self) -> int | None:
        if self.fail_count <= 0:
            return None
        self.fail_count -= 1
        return self.fail_status

    def admit(self) -> float | None:
        """None if the call may go on (and it is counted), else seconds until one may."""
        if self.limit <= 0:
            return None
        now = self.clock()
        while self.calls and self.calls[0] <= now - 60.0:
            self.calls.popleft()
        if len(self.calls) >= self.limit:
            return max(0.0, self.calls[0] + 60.0 - now)
        self.calls.append(now)
        return None


REST_GATE_KEY: web.AppKey[RestGate] = web.AppKey("sim_rest_gate", RestGate)


def _bearer(request: web.Request) -> str:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value if scheme.lower() == "bearer" else ""


def _too_many(wait: float) -> web.Response:
    seconds = max(1, math.ceil(wait))
    return error_response(
        429,
        f"Rate limit exceeded: more than the allowed requests per minute; retry in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def setup(app: web.Application, state: SimState) -> None:
    """Register the market-data routes (the hub, hence the market, comes from streamer.setup)."""
    config = state.config
    gate = app[REST_GATE_KEY] = RestGate(config.rest_limit_per_minute)
    policy = history.HistoryPolicy(
        depth_days=config.history_days,
        futures=config.futures_history,
        whole_days=config.history_whole_days,
    )

    def guarded(endpoint: str, handler: Callable[[web.Request, Market], web.Response]) -> Handler:
        async def route(request: web.Request) -> web.Response:
            state.rest[endpoint] += 1
            response = _gate(request)
            if response is None:
                response = handler(request, request.app[HUB_KEY].market)
            if response.status != 200:
                state.rest[f"status_{response.status}"] += 1
            return response

        return route

    def _gate(request: web.Request) -> web.Response | None:
        failure = gate.take_failure()
        if failure is not None:
            headers = {"Retry-After": "1"} if failure == 429 else None
            return error_response(failure, "simulated failure", headers=headers)
        if not state.tokens.is_access_valid(_bearer(request)):
            return error_response(401, "Client not authorized")
        wait = gate.admit()
        if wait is not None:
            return _too_many(wait)
        return None

    def price_history(request: web.Request, market: Market) -> web.Response:
        try:
            req = history.parse(request.query)
        except history.BadParameter as exc:
            return error_response(400, exc.detail, exc.parameter)
        if quotes.lookup(market, req.symbol) is None and not _plausible(req.symbol):
            return error_response(400, f"Invalid symbol {req.symbol!r}", "symbol")
        return ok(history.answer(market, req, policy))

    def quotes_route(request: web.Request, market: Market) -> web.Response:
        raw = request.query.get("symbols", "")
        symbols = list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
        if not symbols:
            return error_response(400, "Search combination should have min of 1.", "symbols")
        if len(symbols) > quotes.MAX_SYMBOLS:
            return error_response(400, "Search combination should not exceed 500.", "symbols")
        fields = _fields(request)
        if isinstance(fields, web.Response):
            return fields
        now_ms = market.now_ms()
        body: dict[str, Any] = {}
        invalid: list[str] = []
        for symbol in symbols:
            inst = quotes.lookup(market, symbol)
            if inst is None:
                invalid.append(symbol)
            else:
                body[symbol] = quotes.quote(inst, now_ms, fields)
        if invalid:
            body["errors"] = {"invalidSymbols": invalid}
        return ok(body)

    def single_quote(request: web.Request, market: Market) -> web.Response:
        symbol = request.match_info["symbol"]
        fields = _fields(request)
        if isinstance(fields, web.Response):
            return fields
        inst = quotes.lookup(market, symbol)
        if inst is None:
            return error_response(404, f"Symbol {symbol!r} not found")
        return ok({symbol: quotes.quote(inst, market.now_ms(), fields)})

    def markets(request: web.Request, market: Market) -> web.Response:
        raw = request.query.get("markets", "")
        names = list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip()))
        bad = [n for n in names if n not in quotes.MARKETS]
        if not names or bad:
            return error_response(
                400, f"markets must be some of {', '.join(quotes.MARKETS)}", "markets"
            )
        today = et_date(market.now_ms())
        text = request.query.get("date")
        day = today
        if text:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                return error_response(400, "date must be YYYY-MM-DD", "date")
            if not today <= day <= today + timedelta(days=365):
                return error_response(
                    400, "date must be between today and one year from today", "date"
                )
        return ok({name: quotes.market_hours(market, name, day) for name in names})

    def unknown(request: web.Request, market: Market) -> web.Response:
        return error_response(404, f"No resource at {request.path}")

    app.router.add_get("/marketdata/v1/pricehistory", guarded("pricehistory", price_history))
    app.router.add_get("/marketdata/v1/quotes", guarded("quotes", quotes_route))
    app.router.add_get("/marketdata/v1/markets", guarded("markets", markets))
    app.router.add_get("/marketdata/v1/{symbol}/quotes", guarded("quotes", single_quote))
    app.router.add_route("*", "/marketdata/{tail:.*}", guarded("unknown", unknown))


def _fields(request: web.Request) -> frozenset[str] | web.Response:
    raw = request.query.get("fields")
    if raw is None or not raw.strip():
        return quotes.DEFAULT_FIELDS
    asked = {f.strip() for f in raw.split(",") if f.strip()}
    if not asked <= set(quotes.QUOTE_FIELDS):
        return error_response(
            400, f"fields must be some of {', '.join(quotes.QUOTE_FIELDS)}", "fields"
        )
    return frozenset(asked)


def _plausible(symbol: str) -> bool:
    """A symbol in one of Schwab's formats (an expired option still has no history: empty)."""
    from schwab_stream.sim.symbols import classify

    return classify(symbol) is not None
