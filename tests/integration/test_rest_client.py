"""MarketDataClient over real HTTP against the simulator's market-data REST, logged in through a
SchwabAuthClient on the simulator's token authority: price history cut to the window asked (also
when the whole day comes back), quotes for more symbols than one request takes, market hours of
an open and a closed day, retries through the simulator's REST faults (500, 429 with
Retry-After), no retry on a 400, a refresh after an expired access token, and the simulator's
per-minute limit seen as `rate_limited`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.errors import RestError, RestReason
from schwab_stream.rest.candles import MINUTE_MS, candles_between
from schwab_stream.rest.client import MarketDataClient
from schwab_stream.sim.server import SimThread

from .pipeline_helpers import sim_post, sim_settings, sim_stats, write_tokens

ET = ZoneInfo("America/New_York")
MakeSim = Callable[..., SimThread]

#: The simulators start at 09:35 ET on Tuesday 2025-06-10 (tests/conftest.py REGULAR_SESSION).
PRE_MARKET = int(datetime(2025, 6, 10, 7, 0, tzinfo=ET).timestamp() * 1000)
OPEN = int(datetime(2025, 6, 10, 9, 30, tzinfo=ET).timestamp() * 1000)


@asynccontextmanager
async def market_data(
    sim: SimThread, tmp_path: Path, **options: Any
) -> AsyncIterator[MarketDataClient]:
    """A logged-in auth client and a MarketDataClient on it, with short backoff delays."""
    path = tmp_path / f"token-{id(sim)}.json"
    write_tokens(sim, path)
    auth = SchwabAuthClient(sim_settings(sim, path))
    client = MarketDataClient(auth, **options)
    client.retry_base_delay = 0.05
    client.retry_max_delay = 0.2
    try:
        yield client
    finally:
        await client.aclose()
        await auth.aclose()


async def test_price_history_is_cut_to_the_window_even_when_the_whole_day_comes_back(
    sim_factory: MakeSim, tmp_path: Path
) -> None:
    narrow_sim = sim_factory()
    whole_sim = sim_factory(history_whole_days=True)
    async with (
        market_data(narrow_sim, tmp_path) as narrow,
        market_data(whole_sim, tmp_path) as whole,
    ):
        asked = await narrow.price_history("AAPL", PRE_MARKET, OPEN)
        day = await whole.price_history("AAPL", PRE_MARKET, OPEN)
    assert asked.symbol == "AAPL" and not asked.empty
    window = candles_between(asked, PRE_MARKET, OPEN)
    assert [(c.datetime - PRE_MARKET) // MINUTE_MS for c in window.candles] == list(range(150))
    assert (window.duplicates, window.malformed, window.reordered) == (0, 0, False)
    # The simulator's endDate is inclusive: the 09:30 bar comes too and is left out.
    assert window.outside == len(asked.candles) - 150
    assert len(day.candles) > len(asked.candles)
    whole_window = candles_between(day, PRE_MARKET, OPEN)
    assert whole_window.candles == window.candles
    assert whole_window.outside == len(day.candles) - 150


async def test_quotes_for_more_symbols_than_one_request_takes(
    sim_factory: MakeSim, tmp_path: Path
) -> None:
    sim = sim_factory()
    unknown = [f"NOPE^{n}" for n in range(596)]
    symbols = ["AAPL", "$SPX", "/ES", "EUR/USD", *unknown, "AAPL"]
    async with market_data(sim, tmp_path) as client:
        answer = await client.quotes(symbols)
        stats = client.stats
    assert list(answer.quotes) == ["AAPL", "$SPX", "/ES", "EUR/USD"]
    assert set(answer.invalid_symbols) == set(unknown)
    assert (answer.unreadable, answer.missing) == ((), ())
    aapl = answer.quotes["AAPL"]
    assert aapl.asset_main_type == "EQUITY" and aapl.quote is not None and aapl.regular is not None
    assert aapl.quote.bid_price is not None and aapl.quote.ask_price is not None
    assert 0 < aapl.quote.bid_price <= aapl.quote.ask_price
    assert stats.calls == {("quotes", "ok"): 2}
    assert stats.invalid_symbols == 596
    assert (await sim_stats(sim))["rest"]["quotes"] == 2  # type: ignore[index]


async def test_market_hours_of_an_open_and_a_closed_day(
    sim_factory: MakeSim, tmp_path: Path
) -> None:
    sim = sim_factory()
    async with market_data(sim, tmp_path) as client:
        today = await client.market_hours(["equity"])
        saturday = await client.market_hours(["equity", "option"], date(2025, 6, 14))
    (open_day,) = today["equity"].values()
    assert open_day.is_open and open_day.date == date(2025, 6, 10)
    assert open_day.session_hours is not None
    (regular,) = open_day.session_hours.regular_market
    assert (regular.start.astimezone(ET).hour, regular.start.astimezone(ET).minute) == (9, 30)
    assert regular.end.astimezone(ET).hour == 16
    for market in ("equity", "option"):
        (closed,) = saturday[market].values()
        assert (closed.is_open, closed.session_hours) == (False, None)


async def test_5xx_and_429_faults_are_retried_and_retry_after_honoured(
    sim_factory: MakeSim, tmp_path: Path
) -> None:
    sim = sim_factory()
    async with market_data(sim, tmp_path) as client:
        await sim_post(sim, "/sim/fault/rest?status=500&count=2")
        await client.quotes(["AAPL"])
        await sim_post(sim, "/sim/fault/rest?status=429&count=1")  # Retry-After: 1
        started = time.monotonic()
        await client.market_hours(["equity"])
        waited = time.monotonic() - started
        stats = client.stats
    assert waited >= 0.95
    assert stats.calls == {("quotes", "ok"): 1, ("market_hours", "ok"): 1}
    assert stats.retries == {"quotes": 2, "market_hours": 1}
    assert stats.rate_limited == 1


async def test_a_400_is_not_retried(sim_factory: MakeSim, tmp_path: Path) -> None:
    sim = sim_factory()
    async with market_data(sim, tmp_path) as client:
        with pytest.raises(RestError) as caught:
            await client.price_history("NOT A SYMBOL!", PRE_MARKET, OPEN)
    assert (caught.value.reason, caught.value.status) == (RestReason.BAD_REQUEST, 400)
    assert "HTTP 400 (Bad Request: Invalid symbol" in str(caught.value)
    assert (await sim_stats(sim))["rest"] == {"pricehistory": 1, "status_400": 1}


async def test_an_expired_access_token_is_refreshed_once(
    sim_factory: MakeSim, tmp_path: Path
) -> None:
    sim = sim_factory()
    async with market_data(sim, tmp_path) as client:
        await client.quotes(["AAPL"])
        await sim_post(sim, "/sim/tokens/expire-access")
        answer = await client.quotes(["AAPL"])
        stats = client.stats
    assert "AAPL" in answer.quotes
    assert stats.token_refreshes == 1
    assert stats.calls == {("quotes", "ok"): 2}


async def test_the_simulators_limit_is_rate_limited_and_transient(
    sim_factory: MakeSim, tmp_path: Path
) -> None:
    sim = sim_factory(rest_limit_per_minute=3)
    async with market_data(sim, tmp_path, max_attempts=2, max_retry_after=0.2) as client:
        for _ in range(3):
            await client.market_hours(["equity"])
        with pytest.raises(RestError) as caught:
            await client.market_hours(["equity"])
        stats = client.stats
    assert (caught.value.reason, caught.value.status, caught.value.transient) == (
        RestReason.RATE_LIMITED,
        429,
        True,
    )
    assert stats.rate_limited == 2
    assert stats.calls == {("market_hours", "ok"): 3, ("market_hours", "rate_limited"): 1}
