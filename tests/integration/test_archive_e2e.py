"""The archive end to end (#19): a real bridge streaming from the simulator into a real Redis,
archivers SIGKILLed at random moments and started again, then two sharing the group while the
bridge still streams. Afterwards the Parquet rows are the events in the streams: every (stream,
seq) once, every value the JSON's."""

from __future__ import annotations

import asyncio
import random
import signal
from collections.abc import Callable
from pathlib import Path

import redis

from schwab_stream.sim.server import SimThread

from .fault_helpers import Bridges
from .pipeline_helpers import wait_for, xlen_at_least
from .test_archive import all_read, archive_process, assert_archive_is_the_streams

SUBS = {
    "LEVELONE_EQUITIES": ["AAPL", "MSFT"],
    "NASDAQ_BOOK": ["AAPL"],
    "CHART_EQUITY": ["AAPL"],
    "SCREENER_EQUITY": ["NASDAQ_VOLUME_0"],
}


async def test_sigkilled_archivers_started_again_archive_every_event_exactly_once(
    sim_factory: Callable[..., SimThread], bridges: Bridges, redis_url: str, tmp_path: Path
) -> None:
    sim = sim_factory(rate=50, time_scale=60)
    bridge = await bridges.start(sim, SUBS)
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 20), timeout=20)
    out = tmp_path / "archive"
    client = redis.Redis.from_url(redis_url)
    rng = random.Random(19)

    for _ in range(4):
        proc = archive_process(redis_url, out, SCHWAB_ARCHIVE_ROLL_EVENTS="300")
        await asyncio.sleep(rng.uniform(1.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    sharing = [archive_process(redis_url, out, SCHWAB_ARCHIVE_ROLL_EVENTS="300") for _ in range(2)]
    await asyncio.sleep(4)
    assert await bridge.stop() == 0
    await wait_for(lambda: all_read(client), timeout=30)
    for proc in sharing:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    total = assert_archive_is_the_streams(client, out)
    assert total > 1000
    names = [p.name for p in out.glob("type=*/date=*/*.parquet")]
    # both sharing archivers wrote files (their pid is in their consumer name, in each file name)
    for proc in sharing:
        assert any(f"-{proc.pid}-" in name for name in names), proc.pid
    # what the killed ones read and had not made durable was taken over, not lost
    assert {p.parent.parent.name for p in out.glob("type=*/date=*/*.parquet")} >= {
        "type=tick",
        "type=level2",
        "type=bar",
        "type=screener",
        "type=status",
    }
