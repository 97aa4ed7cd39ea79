"""Back-fill (#17): how long a bridge started late in the day takes to back-fill the day's
minute bars of 100 keys, and what that costs the live events flowing meanwhile.

    .venv/bin/python bench/backfill_bench.py [--rpm 0] [--rpm 120] [--rounds 1]

The simulator runs in its own process (`schwab-stream sim`), so serving 75,000 candles costs our
process nothing that Schwab's servers would not; its market clock starts at 19:30 New York time,
its own REST limit is off (`--rest-limit 0`): the bridge's limiter is what `--rpm` sets (0 here:
the setting's highest value, 6,000 a minute, a burst of 20: 100 calls in about 0.8 s). A real
`Pipeline` holds 100 CHART_EQUITY keys and
20 LEVELONE_EQUITIES keys (every frame carries all 20, 20 frames a second).

(a) fill time: from `Pipeline.run()` (login included) until every key's bar stream holds the
    day's 750 bars from 07:00 (07:00 to 19:29).
(b) live latency, p50/p99 per level-one frame, two ways: from its receipt (`recv_ns`, as
    pipeline_bench measures) to Redis's acknowledgement of its XADDs, and from the simulator's
    send (the frame's `timestamp`, the market clock, less its constant offset from the wall
    clock: the smallest receipt-minus-timestamp seen, in ms) to that acknowledgement. The second
    also counts the time a frame waits in the socket while the loop is busy, which `recv_ns`
    cannot see. Frames sent while the back-fill ran; the reference is the same pipeline with
    SCHWAB_BACKFILL=false, in the same process, against the same simulator and Redis, as long.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import logging
import string
import subprocess
import sys
import tempfile
import time
import warnings
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from pipeline_bench import quantile  # bench/ is on sys.path
from schwab_stream.auth.sim_login import login_against_simulator
from schwab_stream.config import Settings
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import Event, TickEvent
from schwab_stream.pipeline import Pipeline
from schwab_stream.runtime import freeze_heap, run_async

MARKET_TIME = "2025-06-10T19:30"
#: 07:00 to 19:29: the bars of the day before the market clock's first minute
DAY_BARS = 750
#: 2025-06-10 07:00 New York time
DAY_START_MS = 1_749_553_200_000
BAR_KEYS = 100
TICK_KEYS = 20
SIM_ARGS = ["--market-time", MARKET_TIME, "--rate", "20", "--symbol-limit", "1000"]
SIM_ARGS += ["--rest-limit", "0"]
#: SCHWAB_REST_REQUESTS_PER_MINUTE's highest value: "no limit" in this bench
MAX_RPM = 6000


def tickers(prefix: str, n: int) -> list[str]:
    """Letters-only equity symbols (BAA, BAB, ...): the simulator makes a market for each."""
    tails = itertools.product(string.ascii_uppercase, repeat=2)
    return [prefix + "".join(tail) for tail in itertools.islice(tails, n)]


@dataclass(frozen=True)
class World:
    redis_url: str
    base_url: str
    token_path: Path

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "app_key": "sim-app-key",
            "app_secret": "sim-app-secret",
            "callback_url": "https://127.0.0.1:8182",
            "api_base_url": self.base_url,
            "token_path": self.token_path,
            "redis_url": self.redis_url,
            "log_level": "WARNING",
            "queue_size": 10_000_000,  # nothing conflated: every frame counts
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@contextlib.contextmanager
def world() -> Iterator[World]:
    """An embedded Redis, the simulator in its own process, and a login against it."""
    with (
        tempfile.TemporaryDirectory(prefix="schwab-stream-backfill-bench-") as tmp,
        EmbeddedRedis() as server,
    ):
        sim = subprocess.Popen(
            [sys.executable, "-m", "schwab_stream", "sim", "--port", "0", *SIM_ARGS],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert sim.stdout is not None
            base_url = sim.stdout.readline().split()[-1].strip()
            if not base_url.startswith("http"):
                raise RuntimeError(f"the simulator did not start: {base_url!r}")
            made = World(server.url, base_url, Path(tmp) / "token.json")
            run_async(login_against_simulator(made.settings()))
            yield made
        finally:
            sim.terminate()
            sim.wait(10)


@dataclass
class Frames:
    """Per level-one event: its frame's receipt, the frame's timestamp, the ack (int arrays)."""

    recv_ns: array[int] = field(default_factory=lambda: array("q"))
    sent_ms: array[int] = field(default_factory=lambda: array("q"))
    ack_ns: array[int] = field(default_factory=lambda: array("q"))

    def per_frame(self) -> list[tuple[int, int, int]]:
        """(recv_ns, sent_ms, ack_ns) once per frame, in receipt order."""
        seen = {r: (s, a) for r, s, a in zip(self.recv_ns, self.sent_ms, self.ack_ns, strict=True)}
        return [(r, s, a) for r, (s, a) in sorted(seen.items())]


@dataclass(frozen=True)
class Run:
    seconds: float  # fill time (back-fill on) or how long it ran (off)
    bars: int  # back-filled bars written
    frames: list[tuple[int, int, int]]
    started_ns: int
    ended_ns: int


async def run_once(w: World, backfill: bool, rpm: int, seconds: float | None) -> Run:
    """One pipeline: with back-fill until every key has the day's bars, without for `seconds`."""
    bar_keys, tick_keys = tickers("B", BAR_KEYS), tickers("T", TICK_KEYS)
    client = aioredis.Redis.from_url(w.redis_url)
    await client.flushall()
    settings = w.settings(backfill=backfill, rest_requests_per_minute=rpm or MAX_RPM)
    pipeline = Pipeline.from_settings(
        settings, {"CHART_EQUITY": bar_keys, "LEVELONE_EQUITIES": tick_keys}
    )
    freeze_heap()
    got = Frames()

    def recorded(written: list[Event], now: int) -> None:
        for event in written:
            if type(event) is TickEvent and event.schwab_ts is not None:
                got.recv_ns.append(event.recv_ns)
                got.sent_ms.append(event.schwab_ts)
                got.ack_ns.append(now)

    pipeline.publisher.core.on_written = recorded
    started_ns = time.time_ns()
    start = time.perf_counter()
    task = asyncio.create_task(pipeline.run())
    try:
        if backfill:
            streams = [f"schwab:bar:{k}" for k in bar_keys]
            while True:
                async with client.pipeline(transaction=False) as pipe:
                    for stream in streams:
                        pipe.xlen(stream)
                    lengths = await pipe.execute()
                if min(lengths) >= DAY_BARS:
                    break
                if task.done() or time.perf_counter() - start > 600:
                    raise RuntimeError(f"back-fill incomplete: min {min(lengths)} bars")
                await asyncio.sleep(0.02)
        else:
            assert seconds is not None
            await asyncio.sleep(seconds)
        elapsed = time.perf_counter() - start
        ended_ns = time.time_ns()
    finally:
        pipeline.stop()
        await task
        await client.aclose()
    bars = pipeline.backfill.stats.bars if pipeline.backfill is not None else 0
    return Run(elapsed, bars, got.per_frame(), started_ns, ended_ns)


async def rest_only(w: World, rpm: int) -> float:
    """The reference for (a): the same 100 price-history calls, 4 at a time as the bridge makes
    them, through a bare `MarketDataClient`, answers decoded and dropped: the simulator's and
    HTTP's share of the fill time."""
    from schwab_stream.auth.client import SchwabAuthClient
    from schwab_stream.rest.client import MarketDataClient

    settings = w.settings()
    auth = SchwabAuthClient(settings)
    rest = MarketDataClient(auth, requests_per_minute=rpm or MAX_RPM)
    keys = tickers("B", BAR_KEYS)
    start_ms = DAY_START_MS
    end_ms = start_ms + DAY_BARS * 60_000
    gate = asyncio.Semaphore(settings.backfill_concurrency)

    async def one(symbol: str) -> int:
        async with gate:
            return len((await rest.price_history(symbol, start_ms, end_ms)).candles)

    began = time.perf_counter()
    counts = await asyncio.gather(*(one(k) for k in keys))
    took = time.perf_counter() - began
    await rest.aclose()
    await auth.aclose()
    if min(counts) < DAY_BARS:
        raise RuntimeError(f"the simulator served {min(counts)} candles, not {DAY_BARS}")
    return took


@dataclass(frozen=True)
class Side:
    recv: tuple[float, float]  # p50, p99 ms, receipt -> ack
    sent: tuple[float, float]  # p50, p99 ms, send -> ack
    frames: int
    seconds: float
    bars: int


@dataclass(frozen=True)
class Figures:
    rpm: int
    on: Side
    off: Side
    rest_seconds: float


def side(run: Run, offset_ms: int) -> Side:
    """The frames the simulator sent between the run's start and end."""
    window = [
        (recv, sent + offset_ms, ack)
        for recv, sent, ack in run.frames
        if run.started_ns <= (sent + offset_ms) * 1_000_000 <= run.ended_ns
    ]
    if not window:
        raise RuntimeError("no level-one frame during the run")
    recv = [(ack - r) / 1e6 for r, _, ack in window]
    sent = [ack / 1e6 - s for _, s, ack in window]
    return Side(
        (quantile(recv, 0.5), quantile(recv, 0.99)),
        (quantile(sent, 0.5), quantile(sent, 0.99)),
        len(window),
        run.seconds,
        run.bars,
    )


async def measure(w: World, rpm: int) -> Figures:
    # The reference first: it also warms the simulator's tape of each symbol (computed once per
    # process), which would otherwise be charged to the first back-fill.
    rest_seconds = await rest_only(w, rpm)
    on = await run_once(w, True, rpm, None)
    off = await run_once(w, False, rpm, on.seconds)
    # The market clock runs at the wall clock's speed, a constant apart: the smallest
    # receipt-minus-timestamp is that offset (plus a fraction of a millisecond of transit).
    offset = min(r // 1_000_000 - s for run in (on, off) for r, s, _ in run.frames)
    return Figures(rpm, side(on, offset), side(off, offset), rest_seconds)


def limit(rpm: int) -> str:
    return f"{MAX_RPM}/min (the most)" if rpm == 0 else f"{rpm}/min"


def report(f: Figures) -> str:
    on, off = f.on, f.off

    def line(label: str, s: Side) -> str:
        return (
            f"  {label:<22} receipt->ack p50 {s.recv[0]:.2f} p99 {s.recv[1]:.2f} ms; "
            f"send->ack p50 {s.sent[0]:.1f} p99 {s.sent[1]:.1f} ms ({s.frames:,} frames)"
        )

    return "\n".join(
        [
            f"back-fill of {BAR_KEYS} keys x {DAY_BARS} bars, REST {limit(f.rpm)}: "
            f"{on.seconds:.2f} s ({on.bars:,} bars, {on.bars / on.seconds:,.0f} bars/s); "
            f"the same calls alone {f.rest_seconds:.2f} s",
            line("live L1 during it", on),
            line("without back-fill", off),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rpm",
        type=int,
        action="append",
        help="the bridge's REST limit a minute (0: none); repeatable. Default: 0 and 120",
    )
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR)
    with world() as w:
        for _ in range(args.rounds):
            for rpm in args.rpm or [0, 120]:
                print(report(run_async(measure(w, rpm))), flush=True)


if __name__ == "__main__":
    main()
