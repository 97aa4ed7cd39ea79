"""The archive's benchmark (#19): archived events per second on one core next to the bridge's
own publisher writing the same events in the same run, and bytes per event on disk next to the
JSON in Redis.

    .venv-bench/bin/python bench/archive_bench.py [--events N] [--symbols N] [--rounds N] [--bridge]

Ticks like the live ones (a full merged quote of 2-decimal prices walking by a cent, sizes,
volume, times, `changed`, three `fields`), written to an embedded redis-server by the bridge's
`TradingEventPublisher` (timed: the bridge's write side); then one `Archiver` (timed) reads
them through its group and writes its Parquet files, until every entry is acknowledged. Each
round has a server of its own. The archiver's CPU is the process's while it archives
(`time.process_time`: its loop and its reader thread, one interpreter and one GIL; Redis is
another process), per event, and per wall second ("cores": at most about one).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from schwab_stream.archive.metrics import ArchiveMetrics
from schwab_stream.archive.roll import Segment
from schwab_stream.archive.runner import ArchiveConfig, Archiver
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import TickEvent
from schwab_stream.publish.redis import TradingEventPublisher

FIELDS = ("bid", "ask", "last", "bid_size", "ask_size", "last_size", "volume", "mark")


def ticks(n: int, symbols: int, seed: int = 7) -> list[TickEvent]:
    rng = random.Random(seed)
    names = [f"SYM{i:03d}" for i in range(symbols)]
    price = {s: rng.uniform(20, 500) for s in names}
    volume = dict.fromkeys(names, 1_000_000)
    seq = dict.fromkeys(names, 0)
    start_ms = 1_749_562_500_000
    out = []
    for i in range(n):
        s = names[rng.randrange(symbols)]
        price[s] = max(1.0, price[s] + rng.choice((-0.01, 0.0, 0.01)))
        volume[s] += rng.choice((0, 100, 200, 500))
        seq[s] += 1
        p = round(price[s], 2)
        ms = start_ms + i // 20
        out.append(
            TickEvent(
                service="LEVELONE_EQUITIES",
                symbol=s,
                seq=seq[s],
                schwab_ts=ms,
                recv_ns=ms * 1_000_000 + 1_718_281,
                bid=p,
                ask=round(p + 0.02, 2),
                last=round(p + 0.01, 2),
                bid_size=float(rng.randrange(1, 20)),
                ask_size=float(rng.randrange(1, 20)),
                last_size=float(rng.choice((100, 200, 50))),
                volume=float(volume[s]),
                open=100.0,
                high=510.0,
                low=19.0,
                close=101.0,
                mark=round(p + 0.01, 2),
                net_change=round(p - 101.0, 2),
                quote_time=ms,
                trade_time=ms - 3,
                delayed=False,
                changed=rng.sample(FIELDS, 3),
                fields={"asset_main_type": "EQUITY", "cusip": "037833100", "exchange_id": "Q"},
            )
        )
    return out


@dataclass(frozen=True)
class Round:
    publisher: float  # events/s of the bridge's publisher
    archiver: float  # events/s archived (wall clock, Redis included)
    cpu_us: float  # the archiver's CPU per event (its threads)
    cores: float  # the archiver's CPU seconds per wall second
    json_bytes: float  # per event: the `data` field in the entries
    redis_bytes: float  # per event: the streams' Redis memory
    disk_bytes: float  # per event: the Parquet files


@dataclass(frozen=True)
class Figures:
    events: int
    symbols: int
    rounds: list[Round]

    def spread(self, name: str) -> tuple[float, float, float]:
        """Median, lowest and highest of a Round field over the rounds."""
        values = [getattr(r, name) for r in self.rounds]
        return statistics.median(values), min(values), max(values)


async def publish(url: str, events: list[TickEvent]) -> float:
    pub = TradingEventPublisher(url, prefix="bench", maxlen=10_000_000, queue_size=10_000_000)
    task = asyncio.create_task(pub.run())
    start = time.perf_counter()
    for i in range(0, len(events), 1000):
        pub.submit(events[i : i + 1000])
        await asyncio.sleep(0)
    assert await pub.flush(600)
    elapsed = time.perf_counter() - start
    await pub.close()
    await task
    return elapsed


class _Counted(Archiver):
    """An archiver that notes when `target` events are in durable files and acknowledged (the
    clocks stop there: what run() does after, waiting for more entries and leaving the group,
    is not archiving), and then stops."""

    def __init__(self, client: redis.Redis, config: ArchiveConfig, target: int) -> None:
        super().__init__(client, config, ArchiveMetrics())
        self.target = target
        self.done = threading.Event()
        self.clocks = (0.0, 0.0)

    def _finish_one(self, segment: Segment) -> None:
        super()._finish_one(segment)  # the file is in place and its entries acknowledged
        archived = self.metrics.registry.get_sample_value(
            "schwab_stream_archive_events_total", {"type": "tick"}
        )
        if (archived or 0) >= self.target and not self.done.is_set():
            self.clocks = (time.perf_counter(), time.process_time())
            self.done.set()


def archive(url: str, root: Path, n: int) -> tuple[float, float]:
    """Wall seconds and the process's CPU seconds to archive and acknowledge `n` entries."""
    client = redis.Redis.from_url(url, socket_timeout=30)
    config = ArchiveConfig(root, "bench", "archive", "bench", 3600.0, 200_000, 30.0)
    archiver = _Counted(client, config, n)
    wall, cpu = time.perf_counter(), time.process_time()
    archiver.run(archiver.done)
    return archiver.clocks[0] - wall, archiver.clocks[1] - cpu


def one_round(events: list[TickEvent]) -> Round:
    n = len(events)
    server = EmbeddedRedis().start()
    try:
        publish_s = asyncio.run(publish(server.url, events))
        client = redis.Redis.from_url(server.url)
        keys = list(client.scan_iter(match="bench:tick:*", _type="stream"))
        json_bytes = sum(len(f[b"data"]) for k in keys for _, f in client.xrange(k))
        redis_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in keys)
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            archive_s, cpu_s = archive(server.url, root, n)
            disk = sum(p.stat().st_size for p in root.glob("type=tick/*/*.parquet"))
    finally:
        server.stop()
    per = 1 / n
    return Round(
        n / publish_s,
        n / archive_s,
        cpu_s * per * 1e6,
        cpu_s / archive_s,
        json_bytes * per,
        redis_bytes * per,
        disk * per,
    )


def measure(events: int, symbols: int, rounds: int) -> Figures:
    made = ticks(events, symbols)
    return Figures(events, symbols, [one_round(made) for _ in range(rounds)])


def whole_bridge() -> float:
    """Events/s of the whole bridge (simulator frames over a websocket, decode, merge, normalize,
    publish) on full merged quotes: `./dev bench`'s "throughput, whole pipeline, all fields"."""
    import decode_normalize  # bench/ is on sys.path: Python puts the script's folder there
    import pipeline_bench
    from schwab_stream.runtime import run_async

    frames = [decode_normalize.full_snapshot_frame(), *decode_normalize.delta_frames(10_000)]
    with pipeline_bench.bench_world(rate=20, symbol_limit=1000) as world:
        return run_async(pipeline_bench.throughput(world, frames)).ours


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--bridge",
        action="store_true",
        help="also time the whole bridge on full merged quotes in the same run (~30 s)",
    )
    args = parser.parse_args()
    f = measure(args.events, args.symbols, args.rounds)
    bridge = whole_bridge() if args.bridge else None
    print(f"events {f.events:,} ticks, {f.symbols} symbols, {len(f.rounds)} rounds")
    for i, r in enumerate(f.rounds, 1):
        print(
            f"  round {i}: publisher {r.publisher:,.0f}/s, archiver {r.archiver:,.0f}/s "
            f"({r.archiver / r.publisher:.2f}x), archiver CPU {r.cpu_us:.2f} us/event, "
            f"{r.cores:.2f} cores"
        )

    def spread(name: str, fmt: str) -> str:
        mid, low, high = f.spread(name)
        return f"{mid:{fmt}} ({low:{fmt}}-{high:{fmt}})"

    ratios = sorted(r.archiver / r.publisher for r in f.rounds)
    print(f"bridge publisher (XADD)     {spread('publisher', ',.0f')} events/s, median (range)")
    print(f"archiver                    {spread('archiver', ',.0f')} events/s")
    core = 1e6 / f.spread("cpu_us")[0]
    print(f"archiver CPU                {spread('cpu_us', '.2f')} us/event ({core:,.0f}/s a core)")
    print(
        f"archiver / publisher        {statistics.median(ratios):.2f}x "
        f"({ratios[0]:.2f}-{ratios[-1]:.2f}x)"
    )
    if bridge is not None:
        archived = f.spread("archiver")[0]
        print(
            f"whole bridge, full quotes  {bridge:,.0f} events/s (websocket to Redis); "
            f"archiver / bridge {archived / bridge:.2f}x"
        )
    json_b, redis_b, disk_b = (f.spread(n)[0] for n in ("json_bytes", "redis_bytes", "disk_bytes"))
    print(f"JSON in the entries         {json_b:,.0f} bytes/event")
    print(f"Redis memory of the streams {redis_b:,.0f} bytes/event")
    print(
        f"Parquet on disk (zstd)      {disk_b:,.1f} bytes/event "
        f"({json_b / disk_b:.1f}x smaller than the JSON, {redis_b / disk_b:.1f}x than Redis)"
    )


if __name__ == "__main__":
    main()
