"""Where a frame's send -> ack time goes (#22): the latency row's run of ours, with each step of a
frame's way stamped, and Redis's CPU per frame.

The steps, per frame: the sender's send stamp -> the websocket's bytes in (websockets'
`data_received`) -> the read loop has the frame (`recv_ns`) -> decoded and normalized, handed to
the publisher (`submit`) -> its flight taken from the core (encoded) -> packed -> the reply's bytes
in (the Redis connection's `feed_data`; the write and Redis's work are in here) -> the flight's
answer to the core -> the ack stamp. Stamps wrap our functions from outside (this file only), so
the run is a little slower than the latency row's; the shares are what it is for.

    .venv-bench/bin/python bench/latency_parts.py [--seconds 15] [--rate 1000]
    .venv-bench/bin/python bench/latency_parts.py --probe-alone 20

`--probe-alone` runs only the CPU probe (bench/cpu_probe.py) and prints how often this host ran
slower than its fast speed in 200 ms windows, with nothing of ours running.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import itertools
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import redis
from websockets.asyncio import connection as ws_connection

import decode_normalize  # bench/ is on sys.path: Python puts the script's folder there
import pipeline_bench
from schwab_stream.publish import core, wire
from schwab_stream.publish import redis as publisher
from schwab_stream.runtime import run_async

STEPS = (
    "send->bytes in",
    "->frame read",
    "->submitted",
    "->flight taken",
    "->packed",
    "->reply in",
    "->answered",
    "->acked",
)


class Stamps:
    """Wall-clock stamps (time.time_ns) of each wrapped call, in call order."""

    def __init__(self) -> None:
        self.ws_in: list[int] = []
        self.submitted: list[int] = []
        self.taken: list[int] = []
        self.pack_start: list[int] = []
        self.packed: list[int] = []
        self.reply_in: list[int] = []
        self.answered: list[int] = []

    def wrap(self) -> Callable[[], None]:
        """Wrap the functions; returns what undoes it."""
        undo: list[Callable[[], None]] = []

        def around(
            owner: Any, name: str, before: list[int] | None, after: list[int] | None
        ) -> None:
            original = getattr(owner, name)

            def stamped(*args: Any, **kwargs: Any) -> Any:
                if before is not None:
                    before.append(time.time_ns())
                result = original(*args, **kwargs)
                if after is not None and (name != "next_flight" or result is not None):
                    after.append(time.time_ns())
                return result

            setattr(owner, name, stamped)
            undo.append(lambda: setattr(owner, name, original))

        around(ws_connection.Connection, "data_received", self.ws_in, None)
        around(publisher.TradingEventPublisher, "submit", self.submitted, None)
        around(core.PublisherCore, "next_flight", None, self.taken)
        around(wire, "pack", self.pack_start, self.packed)
        around(asyncio.StreamReader, "feed_data", self.reply_in, None)
        around(publisher.TradingEventPublisher, "_answered", self.answered, None)

        def unwrap() -> None:
            for step in reversed(undo):
                step()

        return unwrap


def _before(stamps: list[int], at: int) -> int:
    """The last stamp at or before `at` (else `at`)."""
    i = bisect.bisect_right(stamps, at) - 1
    return stamps[i] if i >= 0 else at


def _after(stamps: list[int], at: int) -> int:
    """The first stamp at or after `at` (else `at`)."""
    i = bisect.bisect_left(stamps, at)
    return stamps[i] if i < len(stamps) else at


def parts(
    sent: list[int], recv: list[int], ack: list[int], s: Stamps, skip: int
) -> list[tuple[float, ...]]:
    """Per frame, microseconds spent in each of STEPS, and the total."""
    rows = []
    for send, got, acked in list(zip(sent, recv, ack, strict=True))[skip:]:
        answered = _before(s.answered, acked)
        # the flight: the last pack that started before its answer
        k = bisect.bisect_right(s.pack_start, answered) - 1
        start, packed = s.pack_start[k], s.packed[k]
        submitted = _after(s.submitted, got)
        taken = min(_after(s.taken, submitted), start)
        stamps = (
            send,
            _before(s.ws_in, got),
            got,
            submitted,
            taken,
            packed,
            _before(s.reply_in, answered),
            answered,
            acked,
        )
        steps = [(b - a) / 1e3 for a, b in itertools.pairwise(stamps)]
        rows.append((*steps, (acked - send) / 1e3))
    return rows


def _redis_cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])


async def measure(world: pipeline_bench.Bench, seconds: float, rate: int) -> None:
    count = int(rate * seconds)
    frames = decode_normalize.delta_frames(count)
    entries = pipeline_bench.expected_entries(frames, world.cluster)
    with_events = [i for i, e in enumerate(entries) if e]
    stamps = Stamps()
    client = redis.Redis.from_url(world.url)
    world.flush()
    undo = stamps.wrap()
    try:
        redis_before = _redis_cpu(client)
        async with pipeline_bench.timed_sender(frames, rate, world.tmp) as sending:
            acks = await pipeline_bench.run_pipeline(
                world, sending.url, sum(len(e) for e in entries), pipeline_bench.frame_keys(frames)
            )
            sent_all = await sending.sent_ns()
        redis_cpu = (_redis_cpu(client) - redis_before) / count * 1e6
    finally:
        undo()
        client.close()
    recv, ack = acks.frames()
    sent = [sent_all[i] for i in with_events]
    rows = parts(sent, recv, ack, stamps, count // 10)
    names = (*STEPS, "total")
    print(f"{count:,} frames at {rate:,}/s x 20, us per frame (wrapped run):")
    print(f"{'':8}" + "".join(f"{n:>16}" for n in names))
    for q in (0.5, 0.9, 0.99):
        cells = [pipeline_bench.quantile([r[i] for r in rows], q) for i in range(len(names))]
        print(f"{'p' + format(q * 100, 'g'):8}" + "".join(f"{c:16.0f}" for c in cells))
    print(
        f"{'mean':8}"
        + "".join(f"{statistics.mean(r[i] for r in rows):16.0f}" for i in range(len(names)))
    )
    frames_per_flight = len(recv) / max(len(stamps.packed), 1)
    cpu = acks.cpu_ns / max(acks.cpu_events / 20, 1) / 1e3
    print(
        f"our event loop's CPU {cpu:.0f} us/frame; "
        f"Redis's main thread CPU {redis_cpu:.0f} us/frame; "
        f"{frames_per_flight:.2f} frames a flight"
    )


def probe_alone(seconds: float) -> None:
    """The probe with nothing else of ours running: its 200 ms windows against its fast speed."""
    proc = subprocess.Popen(
        [sys.executable, str(pipeline_bench.PROBE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    time.sleep(seconds)
    data, _ = proc.communicate(b"")
    units = [tuple(map(int, line.split())) for line in data.decode().splitlines()]
    fast = pipeline_bench.quantile([cpu for _, cpu in units], 0.1)
    windows: dict[int, list[int]] = {}
    for wall, cpu in units:
        windows.setdefault(wall // 200_000_000, []).append(cpu)
    factors = sorted(pipeline_bench.quantile(v, 0.5) / fast for v in windows.values())
    slow = [f for f in factors if f > pipeline_bench.STEADY_FACTOR]
    print(
        f"probe alone {seconds:g} s: fast unit {fast / 1e3:.0f} us; {len(slow)} of {len(factors)} "
        f"windows of 200 ms ({len(slow) / len(factors):.0%}) slower than "
        f"{pipeline_bench.STEADY_FACTOR}x"
        + (f", at {min(slow):.2f}-{max(slow):.2f}x" if slow else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=1_000)
    parser.add_argument("--probe-alone", type=float, metavar="SECONDS")
    args = parser.parse_args()
    if args.probe_alone:
        probe_alone(args.probe_alone)
        return
    with pipeline_bench.bench_world(rate=20, symbol_limit=1000) as world:
        run_async(measure(world, args.seconds, args.rate))


if __name__ == "__main__":
    main()
