"""The archive's benchmark (#19): archived events per second on one core next to the bridge's
own publisher writing the same events in the same run, and bytes per event on disk next to the
JSON in Redis.

    .venv/bin/python bench/archive_bench.py [--events 200000] [--symbols 50]

Ticks like the live ones (a full merged quote of 2-decimal prices walking by a cent, sizes,
volume, times, `changed`, three `fields`), written to an embedded redis-server by the bridge's
`TradingEventPublisher` (timed: the bridge's write side); then one `Archiver` (timed, on this
one thread) reads them through its group and writes its Parquet files, until every entry is
acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import threading
import time
from pathlib import Path

import redis

from schwab_stream.archive.metrics import ArchiveMetrics
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


def archive(url: str, root: Path, n: int) -> float:
    client = redis.Redis.from_url(url, socket_timeout=30)
    config = ArchiveConfig(root, "bench", "archive", "bench", 3600.0, 200_000, 30.0)
    archiver = Archiver(client, config, ArchiveMetrics())
    stop = threading.Event()
    real_written = archiver._written

    def written(segment, size):  # type: ignore[no-untyped-def]
        real_written(segment, size)
        total = sum(v.get() for v in _values(archiver.metrics.events))
        if total >= n:
            stop.set()

    archiver._written = written  # type: ignore[method-assign]
    start = time.perf_counter()
    archiver.run(stop)
    return time.perf_counter() - start


def _values(counter):  # type: ignore[no-untyped-def]
    return [child._value for child in counter._metrics.values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--symbols", type=int, default=50)
    args = parser.parse_args()
    events = ticks(args.events, args.symbols)
    server = EmbeddedRedis().start()
    try:
        publish_s = asyncio.run(publish(server.url, events))
        client = redis.Redis.from_url(server.url)
        keys = list(client.scan_iter(match="bench:tick:*", _type="stream"))
        json_bytes = sum(len(f[b"data"]) for k in keys for _, f in client.xrange(k))
        redis_bytes = sum(client.memory_usage(k, samples=0) or 0 for k in keys)
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            archive_s = archive(server.url, root, args.events)
            disk = sum(p.stat().st_size for p in root.glob("type=tick/*/*.parquet"))
    finally:
        server.stop()
    n = args.events
    print(f"events                      {n:,} ticks, {args.symbols} symbols")
    print(f"bridge publisher (XADD)     {n / publish_s:,.0f} events/s")
    print(
        f"archiver (one thread)       {n / archive_s:,.0f} events/s "
        f"({n / archive_s / (n / publish_s):.2f}x the publisher)"
    )
    print(f"JSON in the entries         {json_bytes / n:,.0f} bytes/event")
    print(f"Redis memory of the streams {redis_bytes / n:,.0f} bytes/event")
    print(
        f"Parquet on disk (zstd)      {disk / n:,.1f} bytes/event "
        f"({json_bytes / disk:.1f}x smaller than the JSON, {redis_bytes / disk:.1f}x than Redis)"
    )


if __name__ == "__main__":
    main()
