"""`schwab-stream backfill` (#17) as a person runs it: a subprocess against the simulator (whose
price history serves the very bars it streams) and a real Redis."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import redis.asyncio as aioredis

from schwab_stream.auth.token_store import TokenStore
from schwab_stream.events import BarEvent, StatusEvent, decode_event
from schwab_stream.sim.server import SimThread

from .fault_helpers import Bridges, run_env
from .pipeline_helpers import sim_post, statuses, wait_for, write_tokens
from .test_backfill import assert_every_minute_once_in_order, assert_is_candle, history

NY = ZoneInfo("America/New_York")
DAY = "2025-06-10"
#: The simulator's market clock: 09:35 that day, so 07:00-09:30 is finished history.
FROM, TO = f"{DAY}T07:00", f"{DAY}T09:30"


def ms(hhmm: str) -> int:
    hour, minute = map(int, hhmm.split(":"))
    return int(datetime(2025, 6, 10, hour, minute, tzinfo=NY).timestamp() * 1000)


def backfill(
    sim: SimThread, redis_url: str, tmp_path: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    token = tmp_path / "token.json"
    if not token.exists():
        write_tokens(sim, token)
    return subprocess.run(
        [sys.executable, "-m", "schwab_stream", "backfill", *args],
        env=run_env(sim, redis_url, token),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def bars(redis_url: str, symbol: str, prefix: str = "schwab") -> list[BarEvent]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(f"{prefix}:bar:{symbol}")
    finally:
        await client.aclose()
    events = [decode_event(fields[b"data"]) for _, fields in entries]
    return [e for e in events if isinstance(e, BarEvent)]


async def backfill_statuses(redis_url: str) -> list[StatusEvent]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        return [s for s in await statuses(client) if s.state == "backfill"]
    finally:
        await client.aclose()


async def test_fills_an_empty_stream_with_the_sims_history_and_a_second_run_adds_nothing(
    sim: SimThread, redis_url: str, tmp_path: Path
) -> None:
    done = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", TO, "AAPL", "MSFT")
    assert done.returncode == 0, done.stderr
    assert "300 bars written to 2 of 2 streams" in done.stdout
    token = TokenStore(tmp_path / "token.json").load().access_token
    for symbol in ("AAPL", "MSFT"):
        series = await bars(redis_url, symbol)
        served = await history(sim, token, symbol, ms("07:00"), ms("09:30") - 1)
        assert [b.start for b in series] == sorted(served)
        assert len(series) == 150
        assert_every_minute_once_in_order(series)
        for bar in series:
            assert_is_candle(bar, served[bar.start or 0])
        assert series[0].sequence == 0  # 07:00, CHART_EQUITY's first minute
    [status] = await backfill_statuses(redis_url)
    assert status.info["bars"] == 300
    assert status.info["symbols"] == {"AAPL": 150, "MSFT": 150}

    again = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", TO, "AAPL", "MSFT")
    assert again.returncode == 0, again.stderr
    assert "nothing missing after its last bar" in again.stdout
    assert "0 bars written" in again.stdout
    for symbol in ("AAPL", "MSFT"):
        assert len(await bars(redis_url, symbol)) == 150
    assert len(await backfill_statuses(redis_url)) == 1  # nothing written, nothing said

    # A later end adds only the minutes after the last bar, each once.
    later = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", f"{DAY}T09:34", "AAPL")
    assert later.returncode == 0, later.stderr
    series = await bars(redis_url, "AAPL")
    assert len(series) == 154
    # (each run is another writer: its `seq` starts at 1, docs/events.md)
    assert_every_minute_once_in_order(series[:150])
    assert_every_minute_once_in_order(series[150:])
    assert [b.start for b in series[149:]] == [
        ms("09:29"),
        *map(ms, ("09:30", "09:31", "09:32", "09:33")),
    ]


async def test_dry_run_prints_the_missing_minutes_and_writes_nothing(
    sim: SimThread, redis_url: str, tmp_path: Path
) -> None:
    backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", f"{DAY}T08:00", "AAPL")
    dry = backfill(sim, redis_url, tmp_path, "--dry-run", "--from", FROM, "--to", TO, "AAPL", "IBM")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert any(
        line.startswith("AAPL")
        and f"missing {DAY} 08:00 to {DAY} 09:30 ET (90 minutes)" in line
        and "Schwab has 90 candles" in line
        for line in lines
    ), dry.stdout
    assert any(
        line.startswith("IBM") and "(150 minutes)" in line and "150 candles" in line
        for line in lines
    ), dry.stdout
    assert "nothing written" in lines[-1]
    assert len(await bars(redis_url, "AAPL")) == 60
    assert await bars(redis_url, "IBM") == []


async def test_refused_while_a_bridge_holds_the_lease(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path, bridges: Bridges
) -> None:
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, backfill=False)
    await wait_for(lambda: bridge.has_state("subscribed"), timeout=20)
    done = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", TO, "MSFT")
    assert done.returncode == 4
    [line] = done.stderr.splitlines()
    assert line.startswith("schwab-stream backfill: a bridge is running on this Redis")
    assert "schwab:lease" in line
    assert await bars(redis_url, "MSFT") == []
    # Another prefix is free.
    other = backfill(
        sim, redis_url, tmp_path, "--prefix", "by-hand", "--from", FROM, "--to", TO, "MSFT"
    )
    assert other.returncode == 0, other.stderr
    assert len(await bars(redis_url, "MSFT", prefix="by-hand")) == 150


async def test_bad_input_is_one_line_and_an_exit_code(
    sim: SimThread, redis_url: str, tmp_path: Path
) -> None:
    cases = [
        (["--from", "10/06/2025", "AAPL"], 2, "--from '10/06/2025': expected YYYY-MM-DD"),
        (["--from", TO, "--to", FROM, "AAPL"], 2, "nothing to fill"),
        (["--from", FROM, "--to", TO, "aapl"], 2, "CHART_EQUITY key 'aapl'"),
        (["--service", "CHART_FUTURES", "--from", FROM, "--to", TO, "ES"], 2, "did you mean '/ES'"),
        (["--redis-url", "redis://127.0.0.1:1", "--from", FROM, "--to", TO, "AAPL"], 1, "Redis"),
    ]
    for args, code, words in cases:
        done = backfill(sim, redis_url, tmp_path, *args)
        lines = done.stderr.splitlines()
        assert done.returncode == code, (args, done.stderr)
        assert len(lines) == 1, (args, done.stderr)
        assert lines[0].startswith("schwab-stream backfill: "), lines
        assert "Traceback" not in done.stderr
        if words:
            assert words in lines[0], lines

    # A REST refusal (a 400: not tried again) is one line, exit 1, nothing written.
    await sim_post(sim, "/sim/fault/rest?status=400&count=1")
    refused = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", TO, "AAPL")
    assert refused.returncode == 1, refused.stderr
    [line] = refused.stderr.splitlines()
    assert line.startswith("schwab-stream backfill: price history for AAPL: HTTP 400"), line
    assert await bars(redis_url, "AAPL") == []

    # A range wholly before a stream's last bar cannot be added to it.
    assert backfill(sim, redis_url, tmp_path, "--from", f"{DAY}T09:00", "--to", TO, "AAPL")
    before = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", f"{DAY}T08:00", "AAPL")
    assert before.returncode == 2
    [line] = before.stderr.splitlines()
    assert "before the last bar of AAPL (2025-06-10 09:29)" in line
    assert "another --prefix" in line


async def test_login_needed_is_exit_3(sim: SimThread, redis_url: str, tmp_path: Path) -> None:
    write_tokens(sim, tmp_path / "token.json")
    sim.state.tokens.revoke_all()
    done = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", TO, "AAPL")
    assert done.returncode == 3, done.stderr
    assert len(done.stderr.splitlines()) == 1


async def test_a_server_error_after_the_retries_is_one_line_and_keeps_what_was_written(
    sim: SimThread, redis_url: str, tmp_path: Path
) -> None:
    await sim_post(sim, "/sim/fault/rest?status=500&count=2")  # ridden out by the retries
    ok = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", f"{DAY}T08:00", "AAPL")
    assert ok.returncode == 0, ok.stderr
    assert len(await bars(redis_url, "AAPL")) == 60
    await sim_post(sim, "/sim/fault/rest?status=500&count=4")  # every attempt fails
    failed = backfill(sim, redis_url, tmp_path, "--from", FROM, "--to", TO, "AAPL")
    assert failed.returncode == 1
    [line] = failed.stderr.splitlines()
    assert line.startswith("schwab-stream backfill: price history for AAPL: HTTP 500"), line
    assert len(await bars(redis_url, "AAPL")) == 60
