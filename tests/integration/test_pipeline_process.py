"""`schwab-stream run` as a real process, and the pipeline across a Redis restart."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis
import redis.asyncio as aioredis

from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import BarEvent, TickEvent
from schwab_stream.pipeline import Pipeline
from schwab_stream.sim.server import SimThread

from .fault_helpers import run_env
from .pipeline_helpers import make_settings, statuses, stream, wait_for, write_tokens


def test_run_stops_cleanly_on_sigterm(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(rate=50)
    token_path = tmp_path / "token.json"
    write_tokens(sim, token_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "run", "--subscribe", "NASDAQ_BOOK=AAPL"],
        env=run_env(sim, redis_url, token_path, SCHWAB_LEVELONE_EQUITIES="AAPL,MSFT"),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 15
        while not (client.xlen("schwab:tick:AAPL") and client.xlen("schwab:level2:AAPL")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no events within 15 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    entries = client.xrange("schwab:status")
    states = [e[1][b"data"] for e in entries]
    assert b'"state":"stopped"' in states[-1]
    assert sim.state.stats["logouts"] == 1  # it logged out politely before closing
    # each lifecycle step logged once, and no secret in the logs
    assert err.count('"msg": "logged_in') == 1
    record = token_path.read_text()
    assert sim.config.app_secret not in err and sim.config.app_secret not in out
    assert record  # the token file survived untouched by the run
    client.close()


async def test_redis_restart_mid_stream_loses_nothing_but_conflated_quotes(
    sim_factory: Callable[..., SimThread],
    redis_server: EmbeddedRedis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    sim = sim_factory(rate=50, time_scale=120)
    token_path = tmp_path / "token.json"
    write_tokens(sim, token_path)
    settings = make_settings(sim, redis_url, token_path)
    pipeline = Pipeline.from_settings(
        settings, {"LEVELONE_EQUITIES": ["AAPL"], "CHART_EQUITY": ["AAPL"]}
    )
    task = asyncio.create_task(pipeline.run())
    client = aioredis.Redis.from_url(redis_url)
    await wait_for(lambda: client.xlen("schwab:bar:AAPL"), timeout=15)

    redis_server.kill()
    await asyncio.sleep(2.0)
    assert pipeline.publisher.depth > 0  # held, not lost
    redis_server.start()
    await client.aclose()
    client = aioredis.Redis.from_url(redis_url)  # the old connection died with the server
    await wait_for(lambda: _has_gap(client), timeout=15)
    await asyncio.sleep(1.0)
    pipeline.stop()
    assert await asyncio.wait_for(task, 15) == 0

    # after the restart Redis is empty: what reached it is exactly what was held plus later
    bars = [e for e in await stream(client, "schwab:bar:AAPL") if isinstance(e, BarEvent)]
    seqs = [b.seq for b in bars]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # every bar kept, none skipped
    ticks = [e for e in await stream(client, "schwab:tick:AAPL") if isinstance(e, TickEvent)]
    assert ticks and [t.seq for t in ticks] == sorted(t.seq for t in ticks)
    gap = next(s for s in await statuses(client) if s.state == "gap")
    assert gap.info["conflated"] == pipeline.publisher.stats.conflated["tick"]
    assert gap.info["dropped"] == 0
    await client.aclose()


async def _has_gap(client: aioredis.Redis) -> bool:
    return any(s.state == "gap" for s in await statuses(client))
