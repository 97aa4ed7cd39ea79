"""Redis Cluster (#18): the whole pipeline into a three-primary cluster, next to a bare
cluster-pipelined XADD loop of the same payloads, and the standalone figures in the same run.

The world is pipeline_bench's (the simulator for OAuth and userPreference, bench/sender.py for
the frames, the embedded redis-server for the standalone rows) plus a cluster of three primaries
built from the same redis-server binary by tests/topologies.py's `Cluster` (CLUSTER MEET and
ADDSLOTS, as `redis-cli --cluster create` would; no replicas). The pipeline writes there as
`schwab-stream run` would with a redis+cluster:// URL: one EVALSHA of the exactly-once script per
hash tag (`{SYMBOL}`), which sets the tag's latest keys too, split by node and sent on the
publisher's own connection to each primary (publish/cluster.py). The bare loop XADDs the same
payloads to the same keys through redis-py's cluster pipeline, batch by batch (its best of 200,
1,000 and 5,000 events); for latency it receives each frame and XADDs its events in one cluster
pipeline.

    .venv-bench/bin/python bench/cluster_bench.py [--quick] [--rounds N]
    .venv-bench/bin/python bench/cluster_bench.py --flights N   # CPU per one-frame flight only

`--flights` times the publisher alone (no websocket, no sender): N flights of one frame of 20
quotes each, one after another, into a fresh cluster: the CPU of a flight with no coalescing,
the figure that decides how the latency row's tail grows on a busy host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import decode_normalize  # bench/ is on sys.path: Python puts the script's folder there
import pipeline_bench
from pipeline_bench import Bench, Latency, Throughput
from schwab_stream.events import TickEvent
from schwab_stream.publish.redis import TradingEventPublisher
from schwab_stream.runtime import run_async

# The cluster builder lives with the tests (tests/topologies.py): the repository's root on the
# path makes it importable without importing the tests themselves.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.topologies import Cluster

#: Frames/s of 20 symbols for the latency row (issue 18: "at 1,000 frames/s of 20 symbols")
RATE = 1_000
SYMBOLS = 20


@contextlib.contextmanager
def cluster_world(world: Bench) -> Iterator[Bench]:
    """`world` with its writes pointed at a fresh three-primary cluster."""
    cluster = Cluster()
    try:
        yield dataclasses.replace(world, redis_url=cluster.url)
    finally:
        cluster.stop()


@dataclass(frozen=True)
class Figures:
    throughput: Throughput
    latency: Latency


async def measure(world: Bench, throughput_frames: int, latency_seconds: float) -> Figures:
    """Throughput (level-one deltas of 20 symbols, as fast as they go) and latency at
    1,000 frames/s x 20 into `world`'s Redis, the pipeline's and the bare loop's."""
    frames = decode_normalize.delta_frames(throughput_frames, symbols=SYMBOLS)
    t = await pipeline_bench.throughput(world, frames)
    count = int(RATE * latency_seconds)
    paced = decode_normalize.delta_frames(count, symbols=SYMBOLS)
    lat = await pipeline_bench.latency(world, paced, RATE, skip=count // 10)
    world.flush()  # no streams left behind for whatever runs next
    return Figures(t, lat)


def _line(where: str, f: Figures) -> str:
    t, lat = f.throughput, f.latency
    o, b = lat.ours_side, lat.bare_side
    return (
        f"{where:<10} throughput {t.ours:>9,.0f} ev/s vs {t.bare:>9,.0f} bare = "
        f"{t.ours / t.bare:4.0%} ({t.events:,} events);  send->ack p50/p99/p99.9/max "
        f"{o.p50:.2f} / {o.p99:.2f} / {o.p999:.2f} / {o.max:.1f} ms, CPU {o.cpu_us:.0f} us/frame"
        f"{' BEHIND' if o.behind else ''} vs bare {b.p50:.2f} / {b.p99:.2f} / {b.p999:.2f} / "
        f"{b.max:.1f} ms, "
        f"CPU {b.cpu_us:.0f} us/frame{' BEHIND' if b.behind else ''} ({lat.frames:,} frames"
        f"{', host unstable' if lat.slow else ''})"
    )


async def flight_cost(url: str, flights: int) -> tuple[float, float]:
    """CPU time of this thread and wall time per flight (us) of one frame of 20 quotes, each
    flight answered before the next goes (the first 10% left out)."""
    pub = TradingEventPublisher(url, prefix="flights")
    task = asyncio.create_task(pub.run())
    frames = [
        [
            TickEvent(service="LEVELONE_EQUITIES", symbol=f"S{i}", seq=n, last=float(n))
            for i in range(SYMBOLS)
        ]
        for n in range(1, flights + 1)
    ]
    warm = flights // 10
    cpu = wall = 0
    for n, frame in enumerate(frames):
        if n == warm:
            cpu, wall = time.thread_time_ns(), time.perf_counter_ns()
        pub.submit(frame)
        if not await pub.flush(10):
            raise RuntimeError("a flight was not answered in 10 s")
    cpu, wall = time.thread_time_ns() - cpu, time.perf_counter_ns() - wall
    await pub.close()
    await task
    timed = flights - warm
    return cpu / timed / 1000, wall / timed / 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs")
    parser.add_argument("--rounds", type=int, default=1, help="cluster and standalone, N times")
    parser.add_argument("--cluster-only", action="store_true", help="skip the standalone rows")
    parser.add_argument("--flights", type=int, default=0, help="CPU per one-frame flight only")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR)
    if args.flights:
        cluster = Cluster()
        try:
            cpu, wall = run_async(flight_cost(cluster.url, args.flights))
        finally:
            cluster.stop()
        print(
            f"cluster flight: CPU {cpu:.0f} us, wall {wall:.0f} us per one-frame flight "
            f"({args.flights:,} flights of {SYMBOLS} quotes)"
        )
        return
    frames, seconds = (2_000, 2.0) if args.quick else (10_000, 15.0)
    with pipeline_bench.bench_world(rate=20, symbol_limit=1000) as world:
        print(f"# {world.redis.version()}, three primaries on loopback", flush=True)
        for n in range(args.rounds):
            started = time.monotonic()
            with cluster_world(world) as cluster:
                print(_line(f"cluster {n + 1}", run_async(measure(cluster, frames, seconds))))
            if not args.cluster_only:
                print(_line("standalone", run_async(measure(world, frames, seconds))))
            print(f"# round {n + 1}: {time.monotonic() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
