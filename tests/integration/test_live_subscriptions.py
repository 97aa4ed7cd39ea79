"""Live subscriptions end to end: a real bridge on the simulator and Redis, changed while it runs
through `SubscriptionControl` (what `schwab-stream subscribe` uses) (#16)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from schwab_stream.control import ResultKind, SubscriptionControl
from schwab_stream.sim.server import SimThread
from tests.env import clean_env

from .fault_helpers import Bridge, Bridges
from .pipeline_helpers import readme_snippet, sim_post, sim_stats, wait_for

EQ = "LEVELONE_EQUITIES"


async def started(bridges: Bridges, sim: SimThread, subs: dict[str, list[str]]) -> Bridge:
    bridge = await bridges.start(sim, subs)
    await wait_for(lambda: bridge.has_state("subscribed"), timeout=15)
    return bridge


async def tick_count(redis: aioredis.Redis, symbol: str) -> int:
    return int(await redis.xlen(f"schwab:tick:{symbol}"))


async def test_subscribe_and_unsubscribe_on_a_running_bridge_without_a_reconnect(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str
) -> None:
    sim = sim_factory(rate=20)
    bridge = await started(bridges, sim, {EQ: ["AAPL"]})
    before = await sim_stats(sim)
    async with SubscriptionControl(redis_url, holder="strategy-1") as control:
        result = await control.subscribe({EQ: ["nvda"], "CHART_EQUITY": ["NVDA"]})
        assert result.kind is ResultKind.APPLIED, result.detail
        assert result.answer is not None
        assert result.answer.applied == {EQ: ["NVDA"], "CHART_EQUITY": ["NVDA"]}
        await wait_for(lambda: _has(bridge.redis, "NVDA", 3))
        (first, *_) = await bridge.ticks("NVDA")
        assert first.snapshot  # an added key starts with a snapshot

        after = await sim_stats(sim)
        assert (after["logins"], after["connections"]) == (before["logins"], before["connections"])
        assert after["commands"].get("ADD", 0) == 1  # one ADD, no resubscribe of AAPL
        assert after["commands"]["SUBS"] == before["commands"]["SUBS"] + 1  # CHART_EQUITY's first

        # listed with its holder, Schwab's state and its last data
        await asyncio.sleep(1.2)  # the view is refreshed every second
        view = await control.view()
        assert view is not None
        nvda = next(k for k in view["keys"] if k["service"] == EQ and k["key"] == "NVDA")
        assert nvda["state"] == "active" and nvda["last_data_ns"]
        assert nvda["holders"] == [{"holder": "strategy-1", "kind": "pinned"}]
        aapl = next(k for k in view["keys"] if k["key"] == "AAPL")
        assert aapl["holders"] == [{"holder": "settings", "kind": "settings"}]

        result = await control.unsubscribe({EQ: ["NVDA"], "CHART_EQUITY": ["NVDA"]})
        assert result.kind is ResultKind.APPLIED, result.detail
        count = await tick_count(bridge.redis, "NVDA")
        await asyncio.sleep(0.6)  # 20 frames/s: NVDA would have had several
        assert await tick_count(bridge.redis, "NVDA") == count
        assert await tick_count(bridge.redis, "AAPL") > 0

        # the settings' keys are kept for the settings: reported, not an error
        result = await control.unsubscribe({EQ: ["AAPL"]})
        assert result.kind is ResultKind.APPLIED and result.answer is not None
        assert [(k.key, k.holders) for k in result.answer.kept] == [("AAPL", ["settings"])]
        assert result.not_held == {EQ: ["AAPL"]}  # strategy-1 never held it

        # a key nobody holds: nothing is done, and the answer says so instead of "unsubscribed"
        result = await control.unsubscribe({EQ: ["NVDA", "MSFT"]})
        assert result.kind is ResultKind.APPLIED and result.answer is not None
        assert result.answer.applied == {}
        assert result.not_held == {EQ: ["NVDA", "MSFT"]}
        assert result.detail.startswith("unsubscribed 0 keys; 2 not held by 'strategy-1'")
    await wait_for(lambda: bridge.has_state("subscription_changed", 2), timeout=5)
    assert bridge.metric("reconnects_total", reason="closed") == 0


async def _has(redis: aioredis.Redis, symbol: str, n: int) -> bool:
    return await tick_count(redis, symbol) >= n


async def test_the_changed_set_is_replayed_after_a_drop_and_kept_across_a_restart(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str
) -> None:
    sim = sim_factory(rate=20)
    bridge = await started(bridges, sim, {EQ: ["AAPL"]})
    async with SubscriptionControl(redis_url, holder="scanner") as control:
        assert (await control.subscribe({EQ: ["MSFT"]})).kind is ResultKind.APPLIED
        await sim_post(sim, "/sim/fault/drop")
        await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=15)
        count = await tick_count(bridge.redis, "MSFT")
        await wait_for(lambda: _has(bridge.redis, "MSFT", count + 3))

        assert await bridge.stop() == 0
        bridge = await started(bridges, sim, {EQ: ["AAPL"]})  # the same settings as before
        count = await tick_count(bridge.redis, "MSFT")
        await wait_for(lambda: _has(bridge.redis, "MSFT", count + 3))
        assert bridge.pipeline.client.book.wanted == {EQ: ["AAPL", "MSFT"]}

        # cleared: the next bridge streams the settings alone
        assert await control.clear() == 1
        await wait_for(lambda: _wanted(bridge) == {EQ: ["AAPL"]}, timeout=5)


def _wanted(bridge: Bridge) -> dict[str, list[str]]:
    return bridge.pipeline.client.book.wanted


async def test_a_lease_not_renewed_releases_its_keys(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str
) -> None:
    sim = sim_factory(rate=20)
    bridge = await started(bridges, sim, {EQ: ["AAPL"]})
    async with SubscriptionControl(redis_url, holder="short-lived") as control:
        result = await control.subscribe({EQ: ["AMD"]}, ttl=1.0)
        assert result.kind is ResultKind.APPLIED
        for _ in range(3):  # renewed: kept
            await asyncio.sleep(0.5)
            await control.renew(1.0)
        assert "AMD" in _wanted_keys(bridge)
        await wait_for(lambda: _gone(bridge, "AMD"), timeout=5)  # the program "crashed"
    stats = await sim_stats(sim)
    assert stats["commands"]["UNSUBS"] == 1


def _wanted_keys(bridge: Bridge) -> list[str]:
    return bridge.pipeline.client.book.wanted.get(EQ, [])


async def _gone(bridge: Bridge, key: str) -> bool:
    return key not in _wanted_keys(bridge) and not bridge.pipeline.client.book.on_wire(EQ, key)


async def test_over_the_symbol_limit_the_keys_that_did_not_fit_are_named(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str
) -> None:
    sim = sim_factory(rate=20, symbol_limit=2)
    bridge = await started(bridges, sim, {EQ: ["AAPL"]})
    async with SubscriptionControl(redis_url, holder="greedy") as control:
        result = await control.subscribe({EQ: ["MSFT", "NVDA", "AMD"]})
    assert result.kind is ResultKind.REFUSED
    assert result.answer is not None
    refused = {r.key for r in result.answer.refused}
    assert {"NVDA", "AMD"} <= refused and {r.code for r in result.answer.refused} == {19}
    assert "refused by Schwab (code 19" in result.detail
    await wait_for(lambda: bridge.has_state("subscription_refused"), timeout=5)


async def test_no_bridge_is_its_own_answer_and_the_change_applies_at_start(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str
) -> None:
    sim = sim_factory(rate=20)
    async with SubscriptionControl(redis_url, holder="early") as control:
        result = await control.subscribe({EQ: ["TSLA"]}, timeout=1)
    assert result.kind is ResultKind.NO_BRIDGE
    bridge = await started(bridges, sim, {})  # nothing in the settings: the stored hold streams
    await wait_for(lambda: _has(bridge.redis, "TSLA", 2))


async def test_malformed_control_messages_are_ignored_and_streaming_goes_on(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    redis_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim = sim_factory(rate=20)
    bridge = await started(bridges, sim, {EQ: ["AAPL"]})
    for junk in (b"", b"{", b"[1,2]", json.dumps({"id": "x1", "op": "explode"}).encode()):
        await bridge.redis.xadd("schwab:subs:requests", {"request": junk})
    await bridge.redis.xadd("schwab:subs:requests", {"other": b"field"})
    await bridge.redis.hset("schwab:subs:holds", "not-json", "pinned")
    async with SubscriptionControl(redis_url, holder="after-junk") as control:
        assert (await control.subscribe({EQ: ["MSFT"]})).kind is ResultKind.APPLIED
    answer = await bridge.redis.blpop(["schwab:subs:answer:x1"], timeout=2)
    assert answer is not None and b'"outcome":"invalid"' in answer[1]
    assert not bridge.task.done()
    assert "ignored a control message" in caplog.text


def test_the_commands_exit_codes_name_what_happened(redis_url: str) -> None:
    """Usage errors exit 2 before anything is written; no bridge exits 6."""

    def cli(*args: str, url: str = redis_url) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "schwab_stream", *args, "--redis-url", url, "--prefix", "t"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )

    bad_service = cli("subscribe", "LEVELONE_STONKS=AAPL")
    assert bad_service.returncode == 2 and "LEVELONE_STONKS" in bad_service.stderr
    bad_key = cli("subscribe", "LEVELONE_FUTURES=ES")
    assert bad_key.returncode == 2 and "/ES" in bad_key.stderr
    none = cli("subscribe", "LEVELONE_EQUITIES=AAPL", "--timeout", "1")
    assert none.returncode == 6 and "no bridge is running" in none.stderr
    listed = cli("subscriptions")
    assert listed.returncode == 6 and "cli (pinned)" in listed.stdout
    assert "Traceback" not in bad_service.stderr + bad_key.stderr + none.stderr + listed.stderr

    # the ACL of docs/subscriptions.md: a reader cannot change subscriptions
    import redis

    admin = redis.Redis.from_url(redis_url)
    admin.execute_command(
        *[
            "ACL",
            "SETUSER",
            "reader",
            "on",
            ">rpw",
            "~t:tick:*",
            "~t:latest:*",
            "+@read",
            "+@connection",
        ]
    )
    admin.close()
    reader_url = redis_url.replace("redis://", "redis://reader:rpw@")
    denied = cli("subscribe", "LEVELONE_EQUITIES=AAPL", url=reader_url)
    assert denied.returncode == 1 and "refused: NoPermissionError" in denied.stderr
    assert "rpw" not in denied.stderr and "Traceback" not in denied.stderr
    unreachable = cli("subscriptions", url="redis://:secret@127.0.0.1:1/0")
    assert (
        unreachable.returncode == 1 and "cannot reach Redis at redis://:***@" in unreachable.stderr
    )


async def test_the_readme_python_snippet_subscribes_and_unsubscribes(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(rate=20)
    await started(bridges, sim, {EQ: ["AAPL"]})
    script = tmp_path / "control.py"
    script.write_text(readme_snippet("control:python") + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env={**clean_env(), "REDIS_URL": redis_url},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().splitlines() == ["applied subscribed 1 key", "applied unsubscribed 1 key"]
    commands = (await sim_stats(sim))["commands"]
    assert (commands.get("ADD"), commands.get("UNSUBS")) == (1, 1)
