"""Back-fill end to end (#17): a real bridge, the simulator (its clock sped up, so a bar is a
second) and a real Redis. Afterwards every key's bar stream has every minute once, in order, and
the back-filled bars are what the simulator's price history serves."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import redis.asyncio as aioredis

from schwab_stream.backfill.quotes import seed_latest
from schwab_stream.events import BarEvent, TickEvent, decode_event
from schwab_stream.pipeline import Pipeline
from schwab_stream.sim.server import SimThread

from .fault_helpers import Bridge, Bridges
from .pipeline_helpers import make_settings, sim_post, wait_for, write_tokens

NY = ZoneInfo("America/New_York")
MINUTE = 60_000
KEYS = ["AAPL", "MSFT"]
SUBS = {"CHART_EQUITY": KEYS, "LEVELONE_EQUITIES": ["AAPL"]}


async def bars(redis: aioredis.Redis, symbol: str) -> list[BarEvent]:
    entries = await redis.xrange(f"schwab:bar:{symbol}")
    events = [decode_event(fields[b"data"]) for _, fields in entries]
    return [e for e in events if isinstance(e, BarEvent)]


def assert_every_minute_once_in_order(series: list[BarEvent]) -> None:
    starts = [b.start or 0 for b in series]
    assert starts == sorted(set(starts)), "bars out of order or a minute twice"
    assert [b.seq for b in series] == list(range(series[0].seq, series[0].seq + len(series)))
    holes = [(a, b) for a, b in itertools.pairwise(starts) if b - a != MINUTE]
    assert not holes, f"missing minutes: {holes[:5]}"


def assert_is_candle(bar: BarEvent, candle: dict[str, Any]) -> None:
    """A back-filled bar is the price-history candle of its minute."""
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (
        candle["open"],
        candle["high"],
        candle["low"],
        candle["close"],
        float(candle["volume"]),
    )
    assert bar.backfilled and bar.schwab_ts is None


async def history(sim: SimThread, token: str, symbol: str, start: int, end: int) -> dict[int, dict]:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        answer = await http.get(
            "/marketdata/v1/pricehistory",
            params={
                "symbol": symbol,
                "periodType": "day",
                "frequencyType": "minute",
                "frequency": 1,
                "startDate": start,
                "endDate": end,
                "needExtendedHoursData": "true",
            },
            headers={"Authorization": f"Bearer {token}"},
        )
        answer.raise_for_status()
        return {c["datetime"]: c for c in answer.json()["candles"]}


async def assert_backfilled_bars_are_the_history(
    sim: SimThread, bridge: Bridge, symbol: str
) -> int:
    series = await bars(bridge.redis, symbol)
    filled = [b for b in series if b.backfilled]
    if not filled:
        return 0
    token = await bridge.pipeline.auth.access_token()
    served = await history(sim, token, symbol, filled[0].start or 0, (filled[-1].start or 0) + 1)
    for bar in filled:
        assert_is_candle(bar, served[bar.start or 0])
    return len(filled)


async def test_a_socket_down_for_several_bar_minutes_loses_no_bar(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20, time_scale=60)
    bridge = await bridges.start(sim, SUBS, watchdog_seconds=3)
    for symbol in KEYS:
        await wait_for(lambda s=symbol: _has_bars(bridge.redis, s, 3), timeout=20)
    await sim_post(sim, "/sim/fault/silence?seconds=60")  # the watchdog ends it after 3 s
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=20)
    before = {s: len(await bars(bridge.redis, s)) for s in KEYS}
    for symbol in KEYS:
        await wait_for(lambda s=symbol: _has_bars(bridge.redis, s, before[s] + 3), timeout=20)
    filled = 0
    for symbol in KEYS:
        assert_every_minute_once_in_order(await bars(bridge.redis, symbol))
        filled += await assert_backfilled_bars_are_the_history(sim, bridge, symbol)
    assert filled >= 2 * 2  # two minutes or more of each key came from the price history
    assert bridge.metric("backfill_bars_total") >= filled
    assert bridge.metric("rest_requests_total", endpoint="price_history", outcome="ok") >= 2
    assert not await bridge.has_state("backfill_incomplete")


async def test_a_bridge_started_late_has_the_sessions_bars_from_the_open(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20, market_time=datetime(2025, 6, 10, 7, 40, tzinfo=NY))
    bridge = await bridges.start(sim, SUBS)
    await wait_for(lambda: _has_bars(bridge.redis, "AAPL", 40), timeout=30)
    series = await bars(bridge.redis, "AAPL")
    assert series[0].sequence == 0  # 07:00, CHART_EQUITY's first minute
    assert_every_minute_once_in_order(series)
    assert await assert_backfilled_bars_are_the_history(sim, bridge, "AAPL") >= 39


async def test_backfill_completes_after_the_rest_api_answers_500_and_429(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20, market_time=datetime(2025, 6, 10, 7, 10, tzinfo=NY))
    await sim_post(sim, "/sim/fault/rest?status=500&count=2")
    await sim_post(sim, "/sim/fault/rest?status=429&count=2")
    bridge = await bridges.start(sim, SUBS)
    await wait_for(lambda: _has_bars(bridge.redis, "AAPL", 10), timeout=60)
    series = await bars(bridge.redis, "AAPL")
    assert series[0].sequence == 0
    assert_every_minute_once_in_order(series)
    assert not await bridge.has_state("backfill_incomplete")


async def _has_bars(redis: aioredis.Redis, symbol: str, n: int) -> bool:
    return int(await redis.xlen(f"schwab:bar:{symbol}")) >= n


async def test_quotes_at_start_seed_only_latest_keys_that_have_none(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    """#17: a setting refreshes the latest-state keys from REST quotes at start, so a program that
    starts before the first tick sees a quote; a live tick already there is never overwritten."""
    sim = sim_factory(rate=20)
    token_path = tmp_path / "token.json"
    write_tokens(sim, token_path)
    settings = make_settings(sim, redis_url, token_path, quotes_at_start=True)
    pipeline = Pipeline.from_settings(settings, {})
    assert pipeline.rest is not None
    redis = aioredis.Redis.from_url(redis_url)
    await redis.set("schwab:latest:tick:MSFT", b"live")
    try:
        wanted = {"LEVELONE_EQUITIES": ["AAPL", "MSFT"]}
        written = await seed_latest(pipeline.rest, redis_url, "schwab", wanted)
        assert written == 1
        seeded = decode_event(await redis.get("schwab:latest:tick:AAPL"))
        assert isinstance(seeded, TickEvent) and seeded.snapshot and seeded.seq == 0
        assert seeded.fields == {"source": "rest"} and seeded.bid and seeded.ask
        assert await redis.get("schwab:latest:tick:MSFT") == b"live"
        assert await redis.xlen("schwab:tick:AAPL") == 0  # the stream gets nothing from REST
    finally:
        await pipeline.rest.aclose()
        await pipeline.auth.aclose()
        await redis.aclose()


async def test_stopping_while_a_backfill_is_out_loses_no_live_bar(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20, time_scale=60)
    await sim_post(sim, "/sim/fault/rest?status=500&count=100000")  # the back-fill never lands
    bridge = await bridges.start(sim, SUBS)
    await wait_for(lambda: bridge.has_state("subscribed"), timeout=15)
    received = bridge.pipeline.client.stats.frames
    await wait_for(lambda: received["data"] > 100, timeout=15)
    await wait_for(lambda: bridge.metric("backfill_fetches_total", outcome="retried") >= 1)
    assert await bars(bridge.redis, "AAPL") == []  # live bars wait for the back-fill
    await asyncio.sleep(3)  # three bar-minutes
    assert await bridge.stop() == 0
    series = await bars(bridge.redis, "AAPL")
    assert len(series) >= 2 and not any(b.backfilled for b in series)
    assert_every_minute_once_in_order(series)
    assert await bridge.has_state("backfill_incomplete")
