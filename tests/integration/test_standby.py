"""Hot standby: the lease in Redis, a standby that holds nothing, takeover, and a lost lease."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from schwab_stream.embedded_redis import EmbeddedRedis, free_port
from schwab_stream.errors import ExitCode
from schwab_stream.sim.server import SimThread
from schwab_stream.standby import Lease

from .fault_helpers import Bridges
from .pipeline_helpers import sim_post, sim_stats, statuses, wait_for, xlen_at_least

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


async def test_a_redis_stall_hands_over_at_once_when_the_standby_took_the_lease(
    sim_factory: Callable[..., SimThread], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops answering (SIGSTOP: a fork, a slow disk) for longer than the TTL. Commands sent
    meanwhile sit in the socket and run when it resumes, after their clients timed out. The
    standby's SET NX, sent before the active's next renew, runs first and takes the expired lease:
    the standby must see its own id there and take over at once, not wait for its own lease to
    expire while nobody streams; the active finds the lease gone and exits 4 (LEASE_LOST)."""
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20)
    own = EmbeddedRedis(port=free_port()).start()  # this test stops it; no other test shares it
    made = Bridges(own.url, tmp_path)
    assert own.proc is not None
    pid = own.proc.pid
    try:
        active = await made.start(sim, AAPL, lease_ttl=2.0)
        await wait_for(lambda: active.has_state("subscribed"))
        standby = await made.start(sim, AAPL, lease_ttl=2.0)
        await wait_for(lambda: standby.pipeline.health.standby)
        await asyncio.sleep(0.3)
        for _ in range(3):
            # Stop Redis just after the active renewed: the standby's next try (at most 0.67 s
            # away) nearly always comes before the active's next renew (0.67 s after this one).
            last = await active.redis.pttl("schwab:lease")
            while (now := await active.redis.pttl("schwab:lease")) <= last:
                last = now
                await asyncio.sleep(0.005)
            os.kill(pid, signal.SIGSTOP)
            try:
                await asyncio.sleep(3.0)  # > the TTL (2 s) and the clients' timeouts (0.5 s)
            finally:
                os.kill(pid, signal.SIGCONT)
            resumed = time.monotonic()
            first = await wait_for(lambda: active.redis.get("schwab:lease"), timeout=5)
            if first != active.pipeline.lease.instance_id.encode():
                break
            await asyncio.sleep(1.0)  # the active's renew ran first (rare): it streams on; again
        await wait_for(lambda: not standby.pipeline.health.standby, timeout=5)
        took_over = time.monotonic() - resumed
        code = await asyncio.wait_for(active.task, 5)
        n = await standby.redis.xlen("schwab:tick:AAPL")
        await wait_for(lambda: xlen_at_least(standby.redis, "schwab:tick:AAPL", n + 3), timeout=5)
        holder = await standby.redis.get("schwab:lease")
        events = await statuses(standby.redis)
    finally:
        await made.aclose()
        own.stop()
    me = standby.pipeline.lease.instance_id
    lines = [r.getMessage() for r in caplog.records]
    assert not any(f"holds the lease: {me}" in m for m in lines), "the standby waited on itself"
    assert took_over < 1.0  # one standby poll (0.67 s), not its own lease's TTL (2 s)
    assert holder == me.encode()
    assert code == ExitCode.LEASE_LOST
    assert not any("renewed again" in m for m in lines)  # the renew found another holder
    assert [s.info.get("instance") for s in events if s.state == "lease_lost"] == [
        active.pipeline.lease.instance_id
    ]


async def test_code_12_while_another_instance_holds_the_lease_is_a_lost_lease(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    """The stall above, when the standby's LOGIN comes before the active's next renew: Schwab
    ends the active's session (code 12) while our own standby holds the lease. That is exit 4
    (restart: it comes back as the standby), not exit 3 (another Schwab client: do not restart)."""
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, AAPL, lease_ttl=30.0)  # no renew for 10 s
    await wait_for(lambda: bridge.has_state("subscribed"))
    await bridge.redis.set("schwab:lease", "the-standby", px=60_000)
    await sim_post(sim, "/sim/fault/code/12")
    code = await asyncio.wait_for(bridge.task, 5)
    assert code == ExitCode.LEASE_LOST
    assert await bridge.redis.get("schwab:lease") == b"the-standby"  # not released: not ours
    events = await statuses(bridge.redis)
    lost = [s for s in events if s.state == "lease_lost"]
    assert len(lost) == 1 and "the-standby" in lost[0].detail
    assert lost[0].info["instance"] == bridge.pipeline.lease.instance_id


async def test_code_12_while_the_lease_is_ours_stays_exit_3(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, AAPL, lease_ttl=30.0)
    await wait_for(lambda: bridge.has_state("subscribed"))
    await sim_post(sim, "/sim/fault/code/12")
    assert await asyncio.wait_for(bridge.task, 5) == ExitCode.TAKEN_OVER
    assert "lease_lost" not in [s.state for s in await statuses(bridge.redis)]
