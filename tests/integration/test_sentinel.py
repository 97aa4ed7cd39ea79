"""The bridge behind Redis Sentinel (#18): it asks the sentinels for the primary and follows a
failover; bars and account events stay exactly once and in order, the gap says what happened.
A wrong primary name or sentinel address, or sentinels away: one line, /healthz 503 with the
cause, and nothing lost once they answer."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import redis.asyncio as aioredis

from schwab_stream.embedded_redis import free_port
from schwab_stream.events import AccountEvent, BarEvent, TickEvent
from schwab_stream.redis_client import async_redis
from schwab_stream.sim.server import SimThread
from tests.topologies import PRIMARY_NAME, SentinelSet, sentinel_set

from .fault_helpers import Bridge, Bridges, assert_contiguous
from .health_helpers import said_once, wait_healthz, watched
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


async def test_a_wrong_primary_name_or_sentinel_address_is_one_clear_line_and_unhealthy(
    sentinels: SentinelSet,
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20)
    wrong_name = sentinels.url.replace("/bridge/", "/nosuchprimary/")
    wrong_address = f"redis+sentinel://127.0.0.1:{free_port()}/{PRIMARY_NAME}/0"
    subs = {"LEVELONE_EQUITIES": ["AAPL"]}
    named = await bridges.start(sim, subs, redis_url=wrong_name, **watched())
    addressed = await bridges.start(sim, subs, redis_url=wrong_address, **watched())
    body = await wait_healthz(named, 503, "unknown_primary")
    assert (
        "standby: redis is unreachable (the sentinels do not know primary 'nosuchprimary'"
        in (body["reason"])
    )
    body = await wait_healthz(addressed, 503, "no_sentinel")
    assert "no sentinel answers (1 address: 127.0.0.1:" in body["reason"]
    await said_once(caplog, "s: the sentinels do not know primary 'nosuchprimary'")
    await said_once(caplog, "s: no sentinel answers (1 address:")
    assert sim.state.stats.get("logins", 0) == 0  # nobody streams without the lease


async def test_sentinels_away_mid_stream_are_unhealthy_with_the_cause_and_lose_nothing(
    sentinels: SentinelSet,
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """All sentinels down, then sentinels that forgot the primary: each time the bridge must ask
    them (its connections cut), /healthz says why, and it resumes with every bar, account and
    status event once they answer again."""
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20, time_scale=60)
    bridge = await bridges.start(sim, SUBS, redis_url=sentinels.url, **watched())
    primary = aioredis.Redis(port=sentinels.primary.port)  # the sentinels will be away
    try:
        await wait_for(lambda: _count(primary, "schwab:bar:AAPL", 2), timeout=20)
        await wait_healthz(bridge, 200)
        for sentinel in sentinels.sentinels:
            sentinel.kill()
        await primary.client_kill_filter(_type="normal", skipme=True)
        await sim_post(sim, "/sim/account/order?symbol=AAPL&spacing=0.01")
        body = await wait_healthz(bridge, 503, "no_sentinel")
        assert "no sentinel answers (3 addresses: 127.0.0.1:" in body["reason"]
        for sentinel in sentinels.sentinels:
            sentinel.start()
        await wait_healthz(bridge, 200)

        for sentinel in sentinels.sentinels:
            async with aioredis.Redis(port=sentinel.port) as client:
                await client.sentinel_remove(PRIMARY_NAME)
        await primary.client_kill_filter(_type="normal", skipme=True)
        await sim_post(sim, "/sim/account/order?symbol=AAPL&spacing=0.01")
        body = await wait_healthz(bridge, 503, "unknown_primary")
        assert f"the sentinels do not know primary '{PRIMARY_NAME}'" in body["reason"]
        for sentinel in sentinels.sentinels:
            async with aioredis.Redis(port=sentinel.port) as client:
                await client.sentinel_monitor(PRIMARY_NAME, "127.0.0.1", sentinels.primary.port, 2)
        await wait_healthz(bridge, 200)
        assert not bridge.task.done()
        await said_once(caplog, "s: no sentinel answers (3 addresses")
        await said_once(caplog, f"s: the sentinels do not know primary '{PRIMARY_NAME}'")
        await _nothing_lost(primary, bridge)
    finally:
        await primary.aclose()


async def _nothing_lost(client: aioredis.Redis, bridge: Bridge) -> None:
    """After the outages: bars and the account and status events, each once, with no hole."""
    before = int(await client.xlen("schwab:bar:AAPL"))
    await wait_for(lambda: _count(client, "schwab:bar:AAPL", before + 2), timeout=20)
    bars = [e for e in await stream(client, "schwab:bar:AAPL") if isinstance(e, BarEvent)]
    starts = [b.start for b in bars if b.start is not None]
    assert starts == list(range(starts[0], starts[0] + 60_000 * len(starts), 60_000)), starts
    account = [e for e in await stream(client, "schwab:account") if isinstance(e, AccountEvent)]
    assert len(account) >= 2
    assert_contiguous([a.seq for a in account])
    states = await statuses(client)
    assert_contiguous([s.seq for s in states])
    assert [s.state for s in states].count("gap") >= 2
