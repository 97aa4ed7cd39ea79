"""`schwab-stream tail` as a real process, against a Redis the real pipeline filled."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import redis
import redis.asyncio as aioredis

from schwab_stream.cli.formatting import describe, px
from schwab_stream.embedded_redis import free_port
from schwab_stream.pipeline import Pipeline
from schwab_stream.sim.server import SimThread
from tests.env import clean_env

from .pipeline_helpers import make_settings, wait_for, write_tokens, xlen_at_least

SUBS = {"LEVELONE_EQUITIES": ["AAPL", "MSFT"], "NASDAQ_BOOK": ["AAPL"]}
LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} (\w+) +(\S+(?:  \S+)?) +(.*)$")


@asynccontextmanager
async def pipeline_running(
    sim: SimThread, redis_url: str, tmp_path: Path
) -> AsyncIterator[Pipeline]:
    token_path = tmp_path / "token.json"
    write_tokens(sim, token_path)
    pipeline = Pipeline.from_settings(make_settings(sim, redis_url, token_path), SUBS)
    task = asyncio.create_task(pipeline.run())
    try:
        yield pipeline
    finally:
        pipeline.stop()
        assert await asyncio.wait_for(task, 15) == 0


async def fill(sim: SimThread, redis_url: str, tmp_path: Path) -> None:
    """Run the pipeline until there are enough quotes and books, then stop it."""
    client = aioredis.Redis.from_url(redis_url)
    async with pipeline_running(sim, redis_url, tmp_path):
        await wait_for(lambda: xlen_at_least(client, "schwab:tick:AAPL", 15), timeout=15)
        await wait_for(lambda: xlen_at_least(client, "schwab:level2:AAPL", 3), timeout=15)
    await client.aclose()


def tail(redis_url: str, *args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    env = clean_env()
    return subprocess.run(
        [sys.executable, "-m", "schwab_stream", "tail", "--redis-url", redis_url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def entries(redis_url: str, key: str) -> list[dict[str, object]]:
    client = redis.Redis.from_url(redis_url)
    try:
        return [json.loads(fields[b"data"]) for _, fields in client.xrange(key)]
    finally:
        client.close()


async def test_readable_lines_match_the_stream(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    await fill(sim_factory(rate=50, book_interval=0.1), redis_url, tmp_path)
    done = tail(redis_url, "--from-start", "--count", "10", "--symbol", "aapl", "--type", "tick")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 10
    stored = entries(redis_url, "schwab:tick:AAPL")[:10]
    for line, event in zip(lines, stored, strict=True):
        match = LINE.match(line)
        assert match, line
        kind, symbol, rest = match.groups()
        assert (kind, symbol) == ("tick", "AAPL")
        assert rest.startswith(f"bid {px(event['bid'])} x ")
        assert f"ask {px(event['ask'])} x " in rest
    assert lines[0].endswith("snapshot") and not lines[1].endswith("snapshot")


async def test_json_lines_are_the_stored_events_in_order(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    await fill(sim_factory(rate=50, book_interval=0.1), redis_url, tmp_path)
    done = tail(redis_url, "--json", "--from-start", "-n", "3", "-s", "AAPL", "-t", "level2")
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert printed == entries(redis_url, "schwab:level2:AAPL")[:3]
    assert all(e["type"] == "level2" and e["venue"] == "NASDAQ" for e in printed)


async def test_types_alone_discover_every_symbol_and_status(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    await fill(sim_factory(rate=50, book_interval=0.1), redis_url, tmp_path)
    total = len(entries(redis_url, "schwab:tick:AAPL")) + len(
        entries(redis_url, "schwab:tick:MSFT")
    )
    done = tail(redis_url, "--from-start", "--count", str(total), "--type", "tick")
    assert done.returncode == 0, done.stderr
    symbols = [LINE.match(line).group(2) for line in done.stdout.splitlines()]  # type: ignore[union-attr]
    assert sorted(set(symbols)) == ["AAPL", "MSFT"] and len(symbols) == total

    stored = [e["state"] for e in entries(redis_url, "schwab:status")]
    done = tail(redis_url, "--from-start", "--count", str(len(stored)), "--type", "status")
    assert done.returncode == 0, done.stderr
    states = [line.split()[2] for line in done.stdout.splitlines()]
    assert states == stored
    assert [s for s in states if s in ("started", "logged_in", "stopped")] == [
        "started",
        "logged_in",
        "stopped",
    ]


async def test_last_prints_the_newest_events_of_every_stream_in_order_and_stops(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    """`--last N` merges the streams by arrival (entry id) and stops, even when they hold fewer
    than N (the runbook's first look at a bridge's story)."""
    await fill(sim_factory(rate=50, book_interval=0.1), redis_url, tmp_path)
    client = redis.Redis.from_url(redis_url)
    stored = [
        (entry_id, json.loads(fields[b"data"]))
        for key in ("schwab:tick:AAPL", "schwab:tick:MSFT")
        for entry_id, fields in client.xrange(key)
    ]
    client.close()
    stored.sort(key=lambda item: tuple(int(p) for p in item[0].decode().split("-")))
    done = tail(redis_url, "--json", "--last", "7", "-t", "tick")
    assert done.returncode == 0, done.stderr
    assert [json.loads(line) for line in done.stdout.splitlines()] == [e for _, e in stored[-7:]]

    status = entries(redis_url, "schwab:status")
    done = tail(redis_url, "--last", str(len(status) + 50), "-t", "status", timeout=10)
    assert done.returncode == 0, done.stderr
    assert [line.split()[2] for line in done.stdout.splitlines()] == [e["state"] for e in status]

    done = tail(redis_url, "--last", "3", "--from-start")
    assert done.returncode == 2 and "--last prints and stops" in done.stderr


async def test_following_live_starts_at_the_end_and_misses_nothing(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(rate=50)
    client = aioredis.Redis.from_url(redis_url)
    async with pipeline_running(sim, redis_url, tmp_path):
        await wait_for(lambda: xlen_at_least(client, "schwab:tick:AAPL", 5), timeout=15)
        before = int(json.loads(await client.get("schwab:latest:tick:AAPL"))["seq"])
        done = await asyncio.to_thread(
            tail, redis_url, "--json", "-n", "20", "-s", "AAPL", "-t", "tick"
        )
    await client.aclose()
    assert done.returncode == 0, done.stderr
    seqs = [json.loads(line)["seq"] for line in done.stdout.splitlines()]
    assert seqs[0] > before
    assert seqs == list(range(seqs[0], seqs[0] + 20))


def test_unreachable_redis_is_one_clear_error() -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    done = tail(url, "--count", "1")
    assert done.returncode == 1
    assert f"cannot reach Redis at {url}" in done.stderr


def test_a_stream_that_does_not_exist_gets_a_hint_not_silence(redis_url: str) -> None:
    """A typo in the symbol or the prefix used to wait forever without a word."""
    done = tail(redis_url, "--symbol", "NOPE", "--prefix", "typo", "--last", "5")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr.splitlines() == [
        "schwab-stream tail: no stream under typo: matches yet in this Redis (is `schwab-stream "
        "run` writing here with SCHWAB_REDIS_PREFIX=typo? the symbol as Schwab spells it?)"
    ]
    env = clean_env()
    proc = subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "tail", "--redis-url", redis_url, "-s", "NOPE"],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()  # said at once, then it waits
        assert "no stream under schwab: matches yet" in line and "waiting for its first" in line
    finally:
        proc.kill()
        proc.wait()


def test_describe_bars_screeners_and_account_events() -> None:
    bar = {"type": "bar", "start": 1_716_000_000_000, "open": 190, "high": 190.5, "low": 189.75}
    # the start in New York time whatever the machine's zone (2024-05-18 02:40 UTC)
    assert describe(bar).startswith("22:40 ET O 190.00 H 190.50 L 189.75 C -")
    screener = {
        "type": "screener",
        "sort_field": "VOLUME",
        "items": [{"symbol": "NVDA", "last_price": 120.5}, {"symbol": "AAPL", "last_price": 190}],
    }
    assert describe(screener) == "VOLUME top: NVDA 120.50, AAPL 190.00"
    account = {"type": "account", "message_type": "OrderCreated", "account": "12345678"}
    assert describe(account) == "OrderCreated account 12345678"
    tick = {"type": "tick", "bid": 0.5, "changed": ["bid", "ask", "a", "b", "c", "d", "e", "f"]}
    assert describe(tick).endswith("[bid,ask,a,b,c,d,+2]") and "bid 0.5000 x -" in describe(tick)
