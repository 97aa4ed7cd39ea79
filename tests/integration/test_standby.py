"""Hot standby: the lease in Redis, a standby that holds nothing, takeover, and a lost lease."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis

from schwab_stream.embedded_redis import EmbeddedRedis, free_port
from schwab_stream.errors import ExitCode
from schwab_stream.sim.server import SimThread
from schwab_stream.standby import Lease

from .fault_helpers import Bridges
from .pipeline_helpers import sim_stats, statuses, wait_for, xlen_at_least

AAPL = {"LEVELONE_EQUITIES": ["AAPL"]}


async def test_lease_renews_retakes_when_free_and_never_frees_another(redis_url: str) -> None:
    a = Lease(redis_url, "t:lease", ttl=2.0, instance_id="a")
    b = Lease(redis_url, "t:lease", ttl=2.0, instance_id="b")
    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await a.try_acquire() and not await b.try_acquire()
        assert await a.renew() and not await b.renew()
        assert 1500 < await client.pttl("t:lease") <= 2000
        await b.release()  # not b's to release
        assert await a.holder() == "a"
        await client.delete("t:lease")  # as after a Redis restart without persistence
        assert await a.renew() and await a.holder() == "a"
        await a.release()
        assert await b.try_acquire()
    finally:
        await client.aclose()
        await a.aclose()
        await b.aclose()


async def test_standby_holds_nothing_and_takes_over_on_a_clean_stop(
    sim_factory: Callable[..., SimThread], bridges: Bridges, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20)
    active = await bridges.start(sim, AAPL, lease_ttl=2.0)
    await wait_for(lambda: active.has_state("subscribed"))
    standby = await bridges.start(sim, AAPL, lease_ttl=2.0)
    await wait_for(lambda: active.has_state("standby"))

    assert standby.pipeline.health.standby
    assert standby.pipeline.health.check(0.0, 45)[0]  # a healthy standby is not restarted
    assert standby.metric("connection_state", state="standby") == 1
    assert standby.pipeline.auth.token_seconds_left() == (None, None)  # no token loaded
    stats = await sim_stats(sim)
    assert stats["connections"] == 1 and stats["logins"] == 1
    waiting = next(s for s in await statuses(active.redis) if s.state == "standby")
    assert waiting.info["instance"] == standby.pipeline.lease.instance_id
    assert "another instance holds the lease" in waiting.detail
    assert standby.pipeline.lease.instance_id not in str(await active.redis.get("schwab:lease"))

    assert await active.stop() == 0  # logs out and releases: no need to wait for the TTL
    await wait_for(lambda: standby.has_state("subscribed", 2), timeout=3)
    assert not standby.pipeline.health.standby
    holder = (await active.redis.get("schwab:lease")).decode()
    assert holder == standby.pipeline.lease.instance_id
    before = await standby.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(standby.redis, "schwab:tick:AAPL", before + 3))
    assert (await sim_stats(sim))["logins"] == 2
    lines = [r.getMessage() for r in caplog.records if r.name == "schwab_stream.pipeline"]
    assert sum("standby: another instance holds the lease" in m for m in lines) == 1


async def test_a_lost_lease_stops_streaming_at_once(
    sim_factory: Callable[..., SimThread], bridges: Bridges, caplog: pytest.LogCaptureFixture
) -> None:
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, AAPL, lease_ttl=1.5)
    await wait_for(lambda: bridge.has_state("subscribed"))
    await bridge.redis.set("schwab:lease", "intruder", px=60_000)
    code = await asyncio.wait_for(bridge.task, 5)  # within one renew interval (0.5 s) + logout
    assert code == ExitCode.LEASE_LOST
    assert await bridge.redis.get("schwab:lease") == b"intruder"  # not released: not ours
    lost = [s for s in await statuses(bridge.redis) if s.state == "lease_lost"]
    assert lost and "intruder" in lost[0].detail
    assert any(
        r.levelno == logging.ERROR and "held by intruder" in r.getMessage() for r in caplog.records
    )
    assert not bridge.pipeline.client.stats.logged_in


async def test_redis_unreachable_at_start_waits_as_standby_then_streams(
    sim_factory: Callable[..., SimThread], bridges: Bridges, caplog: pytest.LogCaptureFixture
) -> None:
    sim = sim_factory(rate=20)
    late = EmbeddedRedis(port=free_port())
    bridges.redis_url = late.url  # where the test looks, once it exists
    bridge = await bridges.start(sim, AAPL, lease_ttl=1.5, redis_url=late.url)
    try:
        await wait_for(lambda: bridge.pipeline.health.standby, timeout=5)
        await asyncio.sleep(1.0)
        stats = await sim_stats(sim)
        assert stats["connections"] == 0 and stats["token_refreshes"] == 0
        warned = [r for r in caplog.records if "redis is unreachable" in r.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        assert late.url in warned[0].getMessage()  # says which Redis
        healthy, reason = bridge.pipeline.health.check(time.monotonic(), 45)
        assert not healthy and "redis is unreachable" in reason  # a supervisor must notice
        await asyncio.to_thread(late.start)
        await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 3), timeout=10)
        assert await bridge.redis.get("schwab:lease") == bridge.pipeline.lease.instance_id.encode()
        assert await bridge.stop() == 0
    finally:
        late.stop()


async def test_a_standby_stops_promptly_without_touching_schwab(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str
) -> None:
    sim = sim_factory(rate=20)
    client = aioredis.Redis.from_url(redis_url)
    await client.set("schwab:lease", "someone-else", px=60_000)
    standby = await bridges.start(sim, AAPL, lease_ttl=1.5)
    await wait_for(lambda: standby.has_state("standby"))
    await asyncio.sleep(1.0)  # a few lease attempts
    assert await standby.stop() == 0
    assert await client.get("schwab:lease") == b"someone-else"
    assert [s.state for s in await statuses(client)] == ["standby"]  # no heartbeat, no "stopped"
    assert await client.exists("schwab:heartbeat") == 0
    stats = await sim_stats(sim)
    assert stats["connections"] == stats["token_refreshes"] == 0
    assert stats.get("user_preferences", 0) == 0
    await client.aclose()
