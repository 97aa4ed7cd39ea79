"""The whole pipeline, end to end: simulator over real HTTP + websocket, a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from schwab_stream.events import Level2Event, TickEvent
from schwab_stream.pipeline import Pipeline
from schwab_stream.sim.server import SimThread
from tests.frames import load_frames

from .pipeline_helpers import (
    make_settings,
    sim_post,
    sim_stats,
    statuses,
    stream,
    wait_for,
    write_tokens,
    xlen_at_least,
)


class Running:
    """A pipeline task plus a Redis client to look at what it wrote."""

    def __init__(self, pipeline: Pipeline, task: asyncio.Task[int], redis: aioredis.Redis):
        self.pipeline = pipeline
        self.task = task
        self.redis = redis

    async def states(self) -> list[str]:
        return [s.state for s in await statuses(self.redis)]

    async def stop(self) -> int:
        self.pipeline.stop()
        return await asyncio.wait_for(self.task, 15)


@pytest.fixture
async def start_pipeline(redis_url: str, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    running: list[Running] = []

    async def start(sim: SimThread, subs: dict[str, list[str]], **overrides: Any) -> Running:
        token_path = tmp_path / "token.json"
        if not token_path.exists():
            write_tokens(sim, token_path)
        settings = make_settings(sim, redis_url, token_path, **overrides)
        pipeline = Pipeline.from_settings(settings, subs)
        task = asyncio.create_task(pipeline.run())
        run = Running(pipeline, task, aioredis.Redis.from_url(redis_url))
        running.append(run)
        return run

    yield start
    for run in running:
        if not run.task.done():
            await run.stop()
        await run.redis.aclose()


EQUITIES = {"LEVELONE_EQUITIES": ["AAPL", "MSFT"], "NASDAQ_BOOK": ["AAPL"]}


async def test_startup_to_first_event_ticks_and_books(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=50, book_interval=0.1)
    run = await start_pipeline(sim, EQUITIES)
    await wait_for(lambda: run.redis.xlen("schwab:tick:AAPL"), timeout=10)
    await wait_for(lambda: run.redis.xlen("schwab:level2:AAPL"), timeout=10)
    await asyncio.sleep(1.0)
    assert await run.stop() == 0

    ticks = [e for e in await stream(run.redis, "schwab:tick:AAPL") if isinstance(e, TickEvent)]
    assert ticks[0].snapshot and not any(t.snapshot for t in ticks[1:])
    seqs = [t.seq for t in ticks]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    last = ticks[-1]
    assert last.bid is not None and last.ask is not None and last.bid < last.ask
    assert last.volume is not None and last.delayed is not None
    volumes = [t.volume for t in ticks if t.volume is not None]
    assert volumes == sorted(volumes)
    latest = json.loads(await run.redis.get("schwab:latest:tick:AAPL"))
    assert latest["seq"] == last.seq and latest["bid"] == last.bid

    books = [e for e in await stream(run.redis, "schwab:level2:AAPL")]
    book = books[-1]
    assert isinstance(book, Level2Event) and book.venue == "NASDAQ"
    assert book.bids and book.asks and book.bids[0].price < book.asks[0].price
    for level in book.bids + book.asks:
        assert level.size == sum(m.size for m in level.makers)
        assert level.count == len(level.makers)
    states = await run.states()
    for state in ("started", "connected", "logged_in", "subscribed", "stopped"):
        assert state in states
    assert (await sim_stats(sim))["logins"] == 1


def _transcript_jsonl(tmp_path: Path) -> Path:
    """The live AAPL transcript (login, heartbeat, snapshot, deltas) as a replay file."""
    frames = load_frames()
    lines = [
        json.dumps(f["message"])
        for f in frames
        if f["name"].startswith("live transcript")
        and ("data" in f["message"] or "heartbeat" in json.dumps(f["message"]))
    ]
    path = tmp_path / "transcript.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


async def test_level_one_deltas_are_merged_exactly(
    sim_factory: Callable[..., SimThread],
    start_pipeline: Callable[..., Any],
    tmp_path: Path,
) -> None:
    sim = sim_factory(replay=_transcript_jsonl(tmp_path))
    run = await start_pipeline(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: xlen_at_least(run.redis, "schwab:tick:AAPL", 6))
    await run.stop()
    ticks = [e for e in await stream(run.redis, "schwab:tick:AAPL") if isinstance(e, TickEvent)]
    assert [t.snapshot for t in ticks] == [True, False, False, False, False, False]
    assert ticks[0].bid == 233.22 and ticks[0].ask == 233.33 and ticks[0].last == 233.3
    assert ticks[1].changed == ["last", "volume"] and ticks[1].bid == 233.22
    final = ticks[-1]
    assert (final.bid, final.ask, final.last, final.volume) == (233.33, 233.39, 233.36, 69784645)
    assert final.ask_size == 1 and final.bid_size == 1 and final.high == 235
    assert final.changed == ["volume"] and final.delayed is False
    assert final.schwab_ts == 1755118716611


async def test_reconnect_after_dropped_socket_restores_subscriptions(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=50)
    run = await start_pipeline(sim, EQUITIES)
    await wait_for(lambda: run.redis.xlen("schwab:tick:MSFT"))
    await sim_post(sim, "/sim/fault/drop")
    await wait_for(lambda: _count_state(run, "subscribed", 2), timeout=15)
    before = await run.redis.xlen("schwab:tick:MSFT")
    await wait_for(lambda: xlen_at_least(run.redis, "schwab:tick:MSFT", before + 3))
    await run.stop()
    states = await run.states()
    assert "disconnected" in states and "reconnecting" in states
    ticks = [e for e in await stream(run.redis, "schwab:tick:MSFT") if isinstance(e, TickEvent)]
    assert sum(t.snapshot for t in ticks) == 2  # a fresh snapshot after the resubscribe
    assert (await sim_stats(sim))["connections"] >= 2


async def _count_state(run: Running, state: str, n: int) -> bool:
    return (await run.states()).count(state) >= n


async def test_token_refresh_while_streaming(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=20, access_ttl=4)
    run = await start_pipeline(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, token_refresh_margin=3)
    await wait_for(lambda: _count_state(run, "token_refreshed", 2), timeout=15)
    before = await run.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(run.redis, "schwab:tick:AAPL", before + 5))
    await run.stop()
    assert (await sim_stats(sim))["token_refreshes"] >= 2
    assert (await run.states()).count("connected") == 1  # refreshing did not disturb the stream


async def test_code_3_refreshes_the_token_and_logs_in_again(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=20)
    run = await start_pipeline(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: _count_state(run, "subscribed", 1))
    await sim_post(sim, "/sim/fault/code/3")
    await wait_for(lambda: _count_state(run, "subscribed", 2), timeout=15)
    await run.stop()
    stats = await sim_stats(sim)
    assert stats["token_refreshes"] >= 1 and stats["logins"] >= 2


async def test_code_12_stops_without_fighting(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=20)
    run = await start_pipeline(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: _count_state(run, "subscribed", 1))
    await sim_post(sim, "/sim/fault/code/12")
    code = await asyncio.wait_for(run.task, 15)
    assert code == 3
    events = await statuses(run.redis)
    last = events[-1]  # what a supervisor reads: one `stopped`, the last, with Schwab's code
    assert last.state == "stopped" and last.code == 12 and "took over" in last.detail
    assert [s.state for s in events].count("stopped") == 1
    assert (await sim_stats(sim))["logins"] == 1


async def test_code_19_reports_the_symbols_that_did_not_fit(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=20, symbol_limit=2)
    run = await start_pipeline(
        sim, {"LEVELONE_EQUITIES": ["AAPL", "MSFT", "NVDA"], "NASDAQ_BOOK": ["AAPL"]}
    )
    await wait_for(lambda: _count_state(run, "symbol_limit", 1))
    await run.stop()
    limit = next(s for s in await statuses(run.redis) if s.state == "symbol_limit")
    assert limit.code == 19 and "SUBS failed" in limit.detail


async def test_code_30_resubscribes(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=20)
    run = await start_pipeline(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: _count_state(run, "subscribed", 1))
    await sim_post(sim, "/sim/fault/code/30")
    await wait_for(lambda: _count_state(run, "subscribed", 2), timeout=15)
    await run.stop()
    disconnected = [s for s in await statuses(run.redis) if s.state == "disconnected"]
    assert "code 30" in disconnected[0].detail


async def test_silence_trips_the_watchdog(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=20, heartbeat_interval=0.5)
    run = await start_pipeline(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, watchdog_seconds=1.5)
    await wait_for(lambda: _count_state(run, "subscribed", 1))
    await sim_post(sim, "/sim/fault/silence?seconds=4")
    await wait_for(lambda: _count_state(run, "subscribed", 2), timeout=15)
    await run.stop()
    disconnected = [s for s in await statuses(run.redis) if s.state == "disconnected"]
    assert "watchdog" in disconnected[0].detail


async def test_garbage_frame_is_counted_and_streaming_goes_on(
    sim_factory: Callable[..., SimThread], start_pipeline: Callable[..., Any]
) -> None:
    sim = sim_factory(rate=20)
    run = await start_pipeline(sim, {"LEVELONE_EQUITIES": ["AAPL"]})
    await wait_for(lambda: _count_state(run, "subscribed", 1))
    await sim_post(sim, "/sim/fault/garbage")
    await wait_for(lambda: sum(run.pipeline.client.stats.bad_frames.values()) >= 1)
    before = await run.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(run.redis, "schwab:tick:AAPL", before + 3))
    await run.stop()
    assert (await run.states()).count("connected") == 1
