"""The fault suite: each fault the bridge must live through, with what a user sees (log lines,
metrics, status events) and what reaches Redis. Simulator and a real redis-server, loopback only.

Already covered elsewhere, and not repeated here: the basic recovery from each socket fault and
code (test_pipeline.py), every bar kept across a Redis restart (test_pipeline_process.py), SIGKILL
during a token write (test_token_crash.py), the token commands and `.env` (test_env_untouched.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from schwab_stream.auth.token_store import TokenStore
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import decode_event
from schwab_stream.sim.server import SimThread

from .fault_helpers import (
    Bridges,
    assert_contiguous,
    finish,
    run_env,
    spawn_run,
)
from .pipeline_helpers import (
    sim_post,
    sim_stats,
    statuses,
    wait_for,
    write_tokens,
    xlen_at_least,
)

QUOTES = {"LEVELONE_EQUITIES": ["AAPL", "MSFT"], "NASDAQ_BOOK": ["AAPL"]}


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")


def messages(caplog: pytest.LogCaptureFixture, needle: str, level: int | None = None) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if needle in r.getMessage() and (level is None or r.levelno == level)
    ]


async def xlen_total(client: aioredis.Redis) -> int:
    total = 0
    async for key in client.scan_iter(match="schwab:*", _type="stream"):
        total += int(await client.xlen(key))
    return total


async def test_socket_faults_are_logged_counted_and_lose_nothing(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = sim_factory(rate=40, heartbeat_interval=0.5, book_interval=0.2)
    bridge = await bridges.start(sim, QUOTES, watchdog_seconds=1.5)

    async def snapshots_in(n: int) -> bool:
        """Both symbols' snapshots of subscription n are in Redis (so the next fault is fair)."""
        ticks = [*(await bridge.ticks("AAPL")), *(await bridge.ticks("MSFT"))]
        return sum(t.snapshot for t in ticks) >= 2 * n

    async def after(path: str) -> None:
        nonlocal subscribed
        await sim_post(sim, path)
        subscribed += 1
        await wait_for(lambda: bridge.has_state("subscribed", subscribed), timeout=10)
        await wait_for(lambda: snapshots_in(subscribed))

    subscribed = 1
    await wait_for(lambda: snapshots_in(subscribed))
    await after("/sim/fault/drop")
    await after("/sim/fault/silence?seconds=3")
    await sim_post(sim, "/sim/fault/garbage")
    await sim_post(sim, "/sim/fault/garbage")
    await wait_for(lambda: sum(bridge.pipeline.client.stats.bad_frames.values()) == 2)
    await after("/sim/fault/code/30")
    await after("/sim/fault/code/3")
    await sim_post(sim, "/sim/fault/code/19")  # armed: answers the next SUBS
    await sim_post(sim, "/sim/fault/drop")
    await wait_for(lambda: bridge.has_state("symbol_limit"), timeout=10)
    await wait_for(lambda: bridge.has_state("subscribed", subscribed + 1), timeout=10)
    await asyncio.sleep(0.3)
    logins = (await sim_stats(sim))["logins"]
    await sim_post(sim, "/sim/fault/code/12")
    assert await asyncio.wait_for(bridge.task, 10) == 3

    # Metrics: each reconnect under its reason, bad frames counted, heartbeats seen.
    assert bridge.metric("reconnects_total", reason="closed") == 2
    assert bridge.metric("reconnects_total", reason="silence") == 1
    assert bridge.metric("reconnects_total", reason="code_30") == 1
    assert bridge.metric("reconnects_total", reason="code_3") == 1
    assert bridge.metric("frames_bad_total", reason="not_json") == 2  # the error kind, no prose
    assert bridge.metric("frames_received_total", kind="heartbeat") > 0
    assert bridge.metric("events_dropped_total", type="tick", reason="queue_full") == 0
    # Logs: a line per disconnect with the reason, a malformed frame only once, codes by number.
    assert len(messages(caplog, "malformed frame")) == 1
    assert len(messages(caplog, "streamer code 30 from ADMIN notify", logging.WARNING)) == 1
    assert len(messages(caplog, "streamer code 12", logging.WARNING)) == 1
    assert messages(caplog, "not reconnecting so the two sessions do not fight", logging.ERROR)
    reconnecting = [r for r in caplog.records if getattr(r, "state", None) == "reconnecting"]
    assert len(reconnecting) == 5 and all(r.attempt >= 1 for r in reconnecting)  # type: ignore[attr-defined]
    # Status events: the user can tell each fault apart.
    events = await statuses(bridge.redis)
    details = " | ".join(s.detail for s in events if s.state == "disconnected")
    for reason in ("websocket closed", "watchdog", "code 30", "code 3)"):
        assert reason in details
    limit = next(s for s in events if s.state == "symbol_limit")
    assert limit.code == 19 and "LEVELONE_EQUITIES" in limit.detail
    assert events[-1].state == "stopped"
    assert any(s.state == "stopped" and s.code == 12 for s in events)
    # Redis: every tick the normalizer made is there (seq never resets and has no holes), one
    # snapshot per subscription, and the published counter matches what the streams hold.
    for symbol in ("AAPL", "MSFT"):
        ticks = await bridge.ticks(symbol)
        assert_contiguous([t.seq for t in ticks])
        assert sum(t.snapshot for t in ticks) == 5  # subscriptions 1-5; the 6th got code 19
    published = sum(bridge.pipeline.publisher.stats.published.values())
    assert published == await xlen_total(bridge.redis)
    assert bridge.pipeline.publisher.stats.conflated.total() == 0
    assert (await sim_stats(sim))["logins"] == logins  # code 12: no fight


async def test_bad_items_inside_a_good_frame_are_counted_by_kind(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """Item-level problems (no key, a value of the wrong type, an unknown field) reach
    `frames_bad_total` under a bounded reason, each logged once; the good items still stream."""
    items = [
        {"key": "AAPL", "1": 233.22, "2": 233.33},
        {"1": 1.5},  # no key: dropped
        {"key": "AAPL", "1": "n/a"},  # bid of the wrong type: left out of the event
        {"key": "AAPL", "99": 7},  # a field Schwab added: kept as f99
        {"3": 2.0},
    ]
    frames = [
        {
            "data": [
                {"service": "LEVELONE_EQUITIES", "timestamp": 1, "command": "SUBS", "content": c}
            ]
        }
        for c in (items, [{"key": "AAPL", "3": 233.3}])
    ]
    replay = tmp_path / "bad_items.jsonl"
    replay.write_text("".join(json.dumps(f) + "\n" for f in frames))
    sim = sim_factory(replay=replay)
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 4))
    assert bridge.metric("frames_bad_total", reason="item_no_key") == 2
    assert bridge.metric("frames_bad_total", reason="bad_value") == 1
    assert bridge.metric("frames_bad_total", reason="unknown_field") == 1
    assert len(messages(caplog, "stream data problem", logging.WARNING)) == 3  # once per kind
    ticks = await bridge.ticks("AAPL")
    assert [t.bid for t in ticks] == [233.22, 233.22, 233.22, 233.22]
    assert ticks[2].fields["f99"] == 7
    assert await bridge.stop() == 0


async def test_access_token_dying_early_is_refreshed_on_401(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = sim_factory(rate=40)
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: bridge.has_state("subscribed"))
    before = bridge.pipeline.auth.token_seconds_left()[0]
    await sim_post(sim, "/sim/tokens/expire-access")  # Schwab no longer honours it
    await sim_post(sim, "/sim/fault/drop")
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=10)
    n = await bridge.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))
    assert messages(caplog, "userPreference answered 401; refreshing the access token once")
    assert messages(caplog, "access token refreshed; valid for")
    assert (await sim_stats(sim))["token_refreshes"] >= 1
    after = bridge.pipeline.auth.token_seconds_left()[0]
    assert before is not None and after is not None and after > 1700
    assert bridge.metric("access_token_seconds_left") > 1700
    assert "login_needed" not in await bridge.states()
    assert await bridge.stop() == 0
    assert_contiguous([t.seq for t in await bridge.ticks("AAPL")])


async def test_login_after_a_401_uses_the_refreshed_token(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=40)
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: bridge.has_state("subscribed"))
    await sim_post(sim, "/sim/tokens/expire-access")
    await sim_post(sim, "/sim/fault/drop")
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=10)
    await bridge.stop()
    assert (await sim_stats(sim))["token_refreshes"] == 1
    assert bridge.pipeline.client.stats.reconnects.total() == 1


async def test_refresh_token_expiry_is_announced_everywhere_while_streaming(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    """1 h + 2 s left at start: the 24 h alert at once, the 1 h alert 2 s later, each once."""
    sim = sim_factory(rate=40, refresh_ttl=3602)
    out = tmp_path / "hook.jsonl"
    hook = f"{shlex.quote(sys.executable)} -c " + shlex.quote(
        f"import json, os; open({str(out)!r}, 'a').write(json.dumps(dict(os.environ)) + '\\n')"
    )
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, expiry_hook=hook)
    await wait_for(lambda: bridge.has_state("token_expiring", 2), timeout=10)
    n = await bridge.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))
    await bridge.pipeline.expiry.wait()

    alerts = [s for s in await statuses(bridge.redis) if s.state == "token_expiring"]
    assert [a.info["threshold"] for a in alerts] == ["24h", "1h"]
    assert 3500 < alerts[1].info["seconds_left"] <= 3600
    assert "run `schwab-stream login`" in alerts[1].detail
    warnings = messages(caplog, "the Schwab refresh token expires in", logging.WARNING)
    assert len(warnings) == 2 and warnings[1] == alerts[1].detail
    assert 3500 < bridge.metric("refresh_token_seconds_left") <= 3600
    runs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["SCHWAB_STREAM_THRESHOLD"] for r in runs] == ["24h", "1h"]
    assert runs[1]["SCHWAB_STREAM_MESSAGE"] == alerts[1].detail
    assert runs[1]["SCHWAB_STREAM_EXPIRES_AT"] == alerts[1].info["expires_at"]
    assert 3500 < int(runs[1]["SCHWAB_STREAM_SECONDS_LEFT"]) <= 3600
    record = TokenStore(tmp_path / "token.json").load()
    hook_text = out.read_text()
    assert record.access_token not in hook_text and record.refresh_token not in hook_text
    assert len(messages(caplog, "expiry hook ran")) == 2
    assert (await bridge.states()).count("connected") == 1  # streaming was never disturbed
    assert await bridge.stop() == 0


async def test_revoked_refresh_token_asks_for_login_once_and_resumes_after_it(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    sim = sim_factory(rate=40)
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 3))
    await sim_post(sim, "/sim/tokens/revoke")
    await sim_post(sim, "/sim/tokens/expire-access")
    await sim_post(sim, "/sim/fault/drop")
    await wait_for(lambda: bridge.has_state("login_needed"), timeout=10)
    kept = await bridge.redis.xlen("schwab:tick:AAPL")
    calls = await sim_stats(sim)
    await asyncio.sleep(2.5)  # waiting for a person: nothing is retried against Schwab

    assert (await bridge.states()).count("login_needed") == 1
    assert (await sim_stats(sim))["user_preferences"] == calls["user_preferences"]
    errors = messages(caplog, "schwab-stream login", logging.ERROR)
    assert len(errors) == 1 and "revoked" in errors[0]
    assert bridge.metric("connection_state", state="login_needed") == 1
    await wait_for(lambda: bridge.pipeline.health.login_needed)  # synced each second
    healthy, reason = bridge.pipeline.health.check(time.monotonic(), 45)
    assert not healthy and "revoked" in reason and reason.count("schwab-stream login") == 1
    assert await bridge.redis.xlen("schwab:tick:AAPL") == kept  # what it had stays
    assert await bridge.redis.get("schwab:latest:tick:AAPL") is not None
    assert not bridge.task.done()

    write_tokens(sim, tmp_path / "token.json")  # what `schwab-stream login` does
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=10)
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", kept + 3))
    assert "a new token file was picked up" in [s.detail for s in await statuses(bridge.redis)]
    assert bridge.metric("connection_state", state="subscribed") == 1
    assert bridge.pipeline.health.login_needed is None
    assert await bridge.stop() == 0


async def test_no_token_file_says_so_in_healthz_and_a_login_is_picked_up(
    sim_factory: Callable[..., SimThread], bridges: Bridges, tmp_path: Path
) -> None:
    """Started before any login: /healthz names the real cause (no token file, and where),
    not a dead refresh token; writing the file is enough to start streaming."""
    sim = sim_factory(rate=40)
    token_path = tmp_path / "later" / "token.json"  # nobody has logged in yet
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, token_path=token_path)
    await wait_for(lambda: bridge.pipeline.health.login_needed, timeout=10)
    healthy, reason = bridge.pipeline.health.check(time.monotonic(), 45)
    assert not healthy and f"no token file at {token_path}" in reason
    assert reason.count("schwab-stream login") == 1
    write_tokens(sim, token_path)
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 3), timeout=15)
    await wait_for(lambda: bridge.pipeline.health.login_needed is None)
    assert await bridge.stop() == 0


async def test_slow_redis_never_stalls_the_reader(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = sim_factory(rate=40, heartbeat_interval=0.5)
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, watchdog_seconds=1.5)
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 3))
    admin = redis.Redis.from_url(redis_url)
    admin.execute_command("CLIENT", "PAUSE", 2500)  # every client waits 2.5 s, ours included
    admin.close()
    deepest = 0
    for _ in range(20):
        deepest = max(deepest, bridge.pipeline.publisher.depth)
        await asyncio.sleep(0.1)
    await wait_for(lambda: bridge.pipeline.publisher.depth == 0, timeout=10)
    n = await bridge.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))
    assert await bridge.stop() == 0

    assert deepest > 0  # events waited in the queue, not in the websocket reader
    # The reader kept reading (a stalled reader would have tripped the 1.5 s watchdog).
    assert bridge.metric("reconnects_total", reason="silence") == 0
    assert (await bridge.states()).count("connected") == 1
    # ... and the wait shows in the publish latency (from receive to Redis acknowledging).
    slow = bridge.metric("publish_latency_seconds_count") - bridge.metric(
        "publish_latency_seconds_bucket", le="0.5"
    )
    assert slow >= 1
    # Slow is not down: no gap, nothing conflated or dropped, every tick in order.
    assert "gap" not in await bridge.states()
    assert not messages(caplog, "redis unavailable")
    assert bridge.pipeline.publisher.stats.conflated.total() == 0
    assert_contiguous([t.seq for t in await bridge.ticks("AAPL")])


async def test_redis_stalled_past_the_write_timeout_writes_no_bar_or_quote_twice(
    sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    """The simulator streams quotes and bars while Redis stops (SIGSTOP) three times for longer
    than the publisher's write timeout: the publisher gives up on the flights on the wire and
    sends them again, and Redis, resumed, may run the first copies too. Only those flights
    check the watermarks (#22); every bar arrives once and in order, no quote twice."""
    server = EmbeddedRedis().start()
    assert server.proc is not None
    client = aioredis.Redis.from_url(server.url)
    symbols = ["AAPL", "MSFT"]
    try:
        sim = sim_factory(rate=40, time_scale=600)  # a bar every 0.1 s
        subs = {"LEVELONE_EQUITIES": symbols, "CHART_EQUITY": symbols}
        bridge = await bridges.start(sim, subs, redis_url=server.url)
        publisher = bridge.pipeline.publisher
        publisher.write_timeout = 0.3
        await wait_for(lambda: xlen_at_least(client, "schwab:bar:AAPL", 3), timeout=20)
        for _ in range(3):
            server.proc.send_signal(signal.SIGSTOP)
            await asyncio.sleep(0.8)
            server.proc.send_signal(signal.SIGCONT)
            await asyncio.sleep(0.5)
        written = int(await client.xlen("schwab:bar:AAPL"))
        await wait_for(lambda: xlen_at_least(client, "schwab:bar:AAPL", written + 5), timeout=20)
        assert publisher.stats.redis_errors >= 1  # the stalls were seen
        assert await bridge.stop() == 0
        for symbol in symbols:
            bars = [e.seq for e in await read_events(client, f"schwab:bar:{symbol}")]
            assert_contiguous(bars)
            ticks = [e.seq for e in await read_events(client, f"schwab:tick:{symbol}")]
            assert ticks == sorted(set(ticks)), symbol
    finally:
        server.proc.send_signal(signal.SIGCONT)
        await client.aclose()
        server.stop()


async def read_events(client: aioredis.Redis, key: str) -> list[Any]:
    return [decode_event(fields[b"data"]) for _, fields in await client.xrange(key)]


async def test_redis_restart_is_seen_in_metrics_logs_and_the_lease_comes_back(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    redis_server: EmbeddedRedis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = sim_factory(rate=40)
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, lease_ttl=1.5)
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 3))
    redis_server.kill()
    await wait_for(lambda: not bridge.pipeline.publisher.redis_ok, timeout=5)
    assert bridge.metric("redis_up") == 0
    assert bridge.pipeline.health.check(time.monotonic(), 45)[0]  # within the Redis grace
    await asyncio.sleep(2.0)  # longer than the lease TTL: streaming goes on regardless
    redis_server.start()
    await bridge.redis.aclose()
    bridge.redis = aioredis.Redis.from_url(redis_server.url)
    await wait_for(lambda: bridge.has_state("gap"), timeout=10)
    await wait_for(lambda: bridge.redis.get("schwab:lease"), timeout=5)

    assert bridge.metric("redis_up") == 1
    assert await bridge.redis.get("schwab:lease") == bridge.pipeline.lease.instance_id.encode()
    assert len(messages(caplog, "redis unavailable, holding events", logging.ERROR)) == 1
    assert len(messages(caplog, "redis back after", logging.WARNING)) == 1
    gap = next(s for s in await statuses(bridge.redis) if s.state == "gap")
    assert gap.info["conflated"] == bridge.metric("events_conflated_total", type="tick")
    assert gap.info["dropped"] == 0 and gap.info["start_ns"] < gap.info["end_ns"]
    assert not bridge.task.done()  # no lease lost, no restart needed
    assert await bridge.stop() == 0


async def test_a_refused_stream_key_holds_that_stream_only(
    sim_factory: Callable[..., SimThread], bridges: Bridges, caplog: pytest.LogCaptureFixture
) -> None:
    """Another program wrote a string where MSFT's tick stream belongs: MSFT is held (said once,
    in the log and in /healthz), AAPL keeps flowing untouched, and once the key is deleted MSFT
    resumes and a `gap` status event names it."""
    sim = sim_factory(rate=40)
    admin = aioredis.Redis.from_url(bridges.redis_url)
    await admin.set("schwab:tick:MSFT", "not a stream")
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL", "MSFT"]})
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 20))
    await wait_for(lambda: bridge.pipeline.health.redis_refused_streams)  # synced each second
    health = bridge.pipeline.health.report(time.monotonic(), 45)
    assert health["redis_refused_streams"] == ["schwab:tick:MSFT"] and health["redis_ok"]
    assert bridge.metric("redis_up") == 1
    await admin.delete("schwab:tick:MSFT")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:MSFT", 3), timeout=10)
    await wait_for(lambda: not bridge.pipeline.health.redis_refused_streams)
    assert len(messages(caplog, "refused writes to schwab:tick:MSFT", logging.ERROR)) == 1
    assert len(messages(caplog, "takes writes to schwab:tick:MSFT again", logging.WARNING)) == 1
    gap = next(s for s in await statuses(bridge.redis) if s.state == "gap")
    assert gap.info["stream"] == "schwab:tick:MSFT"
    assert bridge.pipeline.publisher.stats.conflated["tick"] == gap.info["conflated"]
    assert_contiguous([t.seq for t in await bridge.ticks("AAPL")])
    assert await bridge.stop() == 0
    await admin.aclose()


async def test_sigkilled_active_is_replaced_by_the_standby(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(rate=40)
    token_path = tmp_path / "token.json"
    write_tokens(sim, token_path)
    env = run_env(
        sim, redis_url, token_path, SCHWAB_LEASE_TTL="2", SCHWAB_LEVELONE_EQUITIES="AAPL,MSFT"
    )
    client = aioredis.Redis.from_url(redis_url)
    first = spawn_run(env, tmp_path)
    second: subprocess.Popen[str] | None = None
    try:
        await wait_for(lambda: client.xlen("schwab:tick:AAPL"), timeout=15)
        second = spawn_run(env, tmp_path)
        await wait_for(lambda: _has(client, "standby"), timeout=15)
        await asyncio.sleep(0.5)
        assert (await sim_stats(sim))["connections"] == 1  # the standby holds no connection
        first.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        first.wait(5)
        await wait_for(lambda: _has(client, "active", 2), timeout=10)
        took_over = time.monotonic() - killed
        n = await client.xlen("schwab:tick:AAPL")
        await wait_for(lambda: xlen_at_least(client, "schwab:tick:AAPL", n + 5), timeout=10)
        code, err = finish(second)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert took_over < 2 * 2 + 1  # the TTL, one standby poll, start-up
    assert first.returncode == -signal.SIGKILL and code == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    waiting = [r for r in records if r["msg"].startswith("standby: another instance")]
    assert len(waiting) == 1
    assert any(r["msg"] == "active: holding the lease" for r in records)
    events = await statuses(client)
    actives = [s.info["instance"] for s in events if s.state == "active"]
    assert len(set(actives)) == 2
    assert (await sim_stats(sim))["logins"] == 2  # one each, no code 12 between them
    assert not any(s.code == 12 for s in events)
    await client.aclose()


async def _has(client: aioredis.Redis, state: str, n: int = 1) -> bool:
    return [s.state for s in await statuses(client)].count(state) >= n


def test_run_sim_demo_and_tail_leave_env_alone(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    """The token commands are checked in test_env_untouched.py; these are the others."""
    sim = sim_factory(rate=40, app_secret="app-secret-" + secrets.token_hex(8))
    workdir = tmp_path / "work"
    workdir.mkdir()
    token_path = tmp_path / "state" / "token.json"
    token_path.parent.mkdir()
    write_tokens(sim, token_path)
    settings = run_env(sim, redis_url, token_path, SCHWAB_LEVELONE_EQUITIES="AAPL")
    dotenv = workdir / ".env"
    original = (
        "# settings for this test\n"
        + "".join(f"{k}={v}\n" for k, v in settings.items() if k.startswith(("SCHWAB_", "REDIS_")))
    ).encode()
    dotenv.write_bytes(original)
    env = {k: v for k, v in settings.items() if not k.startswith(("SCHWAB_", "REDIS_"))}
    outputs: list[str] = []

    def command(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "schwab_stream", *args],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
        return proc

    run = spawn_run(env, workdir)
    client = redis.Redis.from_url(redis_url)
    deadline = time.monotonic() + 15
    while client.xlen("schwab:tick:AAPL") < 3:
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.05)
    code, err = finish(run)
    outputs.append(err)
    client.close()
    assert code == 0, err

    assert "AAPL" in command("tail", "--from-start", "-n", "3", "-t", "tick").stdout
    sim_proc = subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "sim", "--port", "0"],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert sim_proc.stdout is not None
    first = sim_proc.stdout.readline()
    assert "listening on http://127.0.0.1:" in first
    httpx.get(f"{first.split()[-1]}/sim/stats").raise_for_status()
    sim_code, sim_err = finish(sim_proc)
    assert sim_code == 0, sim_err
    command("demo", "--duration", "2", "--no-ui")
    for name in ("run", "sim", "demo", "tail"):
        assert "Usage" in command(name, "--help").stdout

    assert dotenv.read_bytes() == original
    assert sorted(p.name for p in workdir.iterdir()) == [".env"]
    assert sim.config.app_secret not in "\n".join(outputs)
