"""The bridge behind Redis Sentinel (#18): it asks the sentinels for the primary and follows a
failover; bars and account events stay exactly once and in order, the gap says what happened."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis

from schwab_stream.events import AccountEvent, BarEvent, TickEvent
from schwab_stream.redis_client import async_redis
from schwab_stream.sim.server import SimThread
from tests.topologies import SentinelSet, sentinel_set

from .fault_helpers import Bridges
from .pipeline_helpers import sim_post, statuses, stream, wait_for

SUBS = {"LEVELONE_EQUITIES": ["AAPL"], "CHART_EQUITY": ["AAPL"], "ACCT_ACTIVITY": ["ACCOUNT"]}


@pytest.fixture
def sentinels() -> Iterator[SentinelSet]:
    """(Asked for before `bridges` by every test, so the bridges stop before the servers.)"""
    with sentinel_set() as made:
        yield made


async def test_streams_through_sentinel_and_follows_a_failover(
    sentinels: SentinelSet, sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20, time_scale=60)
    bridge = await bridges.start(sim, SUBS, redis_url=sentinels.url)
    reader: aioredis.Redis = async_redis(sentinels.url)
    try:
        await wait_for(lambda: _count(reader, "schwab:tick:AAPL", 20), timeout=20)
        for _ in range(3):
            await sim_post(sim, "/sim/account/order?symbol=AAPL&spacing=0.01")
        sentinels.kill_primary_and_wait_failover()
        after = len(await stream(reader, "schwab:tick:AAPL"))
        await wait_for(lambda: _count(reader, "schwab:tick:AAPL", after + 20), timeout=20)
        for _ in range(3):
            await sim_post(sim, "/sim/account/order?symbol=AAPL&spacing=0.01")
        await wait_for(lambda: _count(reader, "schwab:bar:AAPL", 4), timeout=20)
        ticks = [e for e in await stream(reader, "schwab:tick:AAPL") if isinstance(e, TickEvent)]
        assert ticks
        bars = [e for e in await stream(reader, "schwab:bar:AAPL") if isinstance(e, BarEvent)]
        starts = [b.start for b in bars]
        assert starts == sorted(set(starts))
        account = [e for e in await stream(reader, "schwab:account") if isinstance(e, AccountEvent)]
        keys = [(a.item_seq, a.message_type) for a in account]
        assert len(keys) == len(set(keys))
        states = [s.state for s in await statuses(reader)]
        assert "gap" in states
        gap = [s for s in await statuses(reader) if s.state == "gap"][-1]
        assert "failover" in gap.detail or gap.info.get("failover")
    finally:
        await reader.aclose()
        await bridge.stop()


async def _count(client: aioredis.Redis, key: str, n: int) -> bool:
    return int(await client.xlen(key)) >= n


async def test_one_bridge_streams_across_a_failover_with_a_standby_waiting(
    sentinels: SentinelSet, sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    """The lease lives on the primary, replicated before each write is trusted (WAIT): after the
    failover exactly one of the two instances holds it and Schwab has one connection."""
    sim = sim_factory(rate=20)
    active = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, redis_url=sentinels.url)
    await wait_for(lambda: active.pipeline.client.stats.subscribed, timeout=15)
    standby = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, redis_url=sentinels.url)
    await wait_for(lambda: standby.pipeline.health.standby, timeout=10)
    sentinels.kill_primary_and_wait_failover()
    reader: aioredis.Redis = async_redis(sentinels.url)
    try:
        before = int(await reader.xlen("schwab:tick:AAPL"))
        await wait_for(lambda: _count(reader, "schwab:tick:AAPL", before + 20), timeout=20)
        holder = (await reader.get("schwab:lease") or b"").decode()
        streaming = [
            b for b in (active, standby) if b.pipeline.client.stats.subscribed and not b.task.done()
        ]
        assert len(streaming) == 1
        assert holder == streaming[0].pipeline.lease.instance_id
    finally:
        await reader.aclose()


async def test_a_wrong_primary_name_is_one_clear_line_and_unhealthy(
    sentinels: SentinelSet, sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20)
    wrong = sentinels.url.replace("/bridge/", "/nosuchprimary/")
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, redis_url=wrong)
    await wait_for(lambda: bridge.pipeline.health.standby, timeout=10)
    healthy, reason = bridge.pipeline.health.check(0.0, 45)
    assert not healthy and "redis is unreachable" in reason
    assert sim.state.stats.get("logins", 0) == 0  # nobody streams without the lease
