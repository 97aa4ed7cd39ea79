"""The demo's view reads the latest values the way a user's program would: what someone else put
under its keys (not JSON, not an object, an entry without data, nested past recursion) shows as
not there yet, and a Redis that stops answering is one warning per outage, not one a frame."""

from __future__ import annotations

import logging

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from schwab_stream.cli.demo_view import RedisView, ViewData
from schwab_stream.publish.keys import StreamKeys

SUBS = {
    "LEVELONE_EQUITIES": ["AAPL", "MSFT", "SPY"],
    "NASDAQ_BOOK": ["AAPL"],
    "CHART_EQUITY": ["AAPL"],
    "SCREENER_EQUITY": ["$SPX_VOLUME_10"],
}


async def test_hostile_values_show_as_absent_and_an_outage_is_said_once(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    keys = StreamKeys("schwab-demo")
    sync = redis.Redis.from_url(redis_url)
    sync.set(keys.latest("tick", "AAPL"), b"not json")
    sync.set(keys.latest("tick", "MSFT"), b"[" * 100_000 + b"]" * 100_000)
    sync.set(keys.latest("tick", "SPY"), b'"a string"')
    sync.set(keys.latest("level2", "AAPL"), b"\xff\xfe")
    sync.xadd(keys.symbol_stream("bar", "AAPL"), {"other": b"1"})
    sync.xadd(keys.symbol_stream("screener", "$SPX_VOLUME_10"), {"data": b"[1]"})
    sync.close()
    client = aioredis.Redis.from_url(redis_url)
    view = ViewData(elapsed=0.0, snapshot=None)  # type: ignore[arg-type]
    reader = RedisView(client, keys, SUBS)
    await reader.read(view)
    assert view.quotes == [("AAPL", None), ("MSFT", None), ("SPY", None)]
    assert (view.book, view.bar, view.screener) == (None, None, None)
    await client.aclose()

    gone = aioredis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    reader.client = gone
    caplog.set_level(logging.INFO, logger="schwab_stream.demo")
    for _ in range(3):
        await reader.read(view)
    said = [r.getMessage() for r in caplog.records if r.name == "schwab_stream.demo"]
    assert len(said) == 1 and said[0].startswith("the view could not read redis"), said
    await gone.aclose()
