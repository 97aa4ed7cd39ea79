"""What a frame's write costs Redis (#22): the publisher's own commands for frames of 20 level-one
quotes (the exactly-once script, the latest keys, as `wire.pack` makes them), against plain
pipelined `XADD`s and an `MSET` of the same payloads (what a write without the exactly-once
guarantee would cost). Redis's main-thread CPU per frame (`INFO cpu`) and bytes per frame, sent
one frame at a time as at 1,000 frames/s, alternating rounds.

    .venv-bench/bin/python bench/script_cost.py [--frames 3000] [--rounds 5]

Run it with PYTHONPATH=OTHER_TREE/src to measure another commit's write (the flights are made by
that tree's `PublisherCore` and packed by its `wire`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import hiredis
import redis

import decode_normalize  # bench/ is on sys.path: Python puts the script's folder there
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.publish import wire
from schwab_stream.publish.core import PublisherCore
from schwab_stream.publish.flight import Answer, Flight
from schwab_stream.publish.keys import StreamKeys
from schwab_stream.stream.normalize import Normalizer
from schwab_stream.stream.protocol import decode_frame

SETTINGS = wire.WriteSettings(
    b"100000", b"cost:heartbeat", b"15000", b"cost:written", b"0123456789abcdef"
)


def flights(count: int) -> list[Flight]:
    """One flight per frame of 20 level-one deltas, as the publisher makes them."""
    normalizer = Normalizer()
    core = PublisherCore(StreamKeys("cost"), heartbeat_every=1e9)
    made = []
    for raw in decode_normalize.delta_frames(count):
        events = [e for m in decode_frame(raw).data for e in normalizer.feed(m, time.time_ns())]
        core.submit(events)
        flight = core.next_flight(time.monotonic())
        if flight is not None and flight.batch:
            made.append(flight)
            core.on_answer(Answer(), time.monotonic())
    return made


def ours(flight: Flight) -> tuple[bytes, int]:
    data, plan = wire.pack(flight, SETTINGS)
    return data, len(plan)


def plain(flight: Flight) -> tuple[bytes, int]:
    """The same entries as plain XADDs, then one MSET of the latest values."""
    commands = [
        (b"XADD", stream, b"MAXLEN", b"~", SETTINGS.maxlen, b"*", b"data", payload)
        for stream, payload in zip(flight.streams, flight.payloads, strict=True)
    ]
    commands.append((b"MSET", *[x for pair in flight.latest.items() for x in pair]))
    return b"".join(hiredis.pack_command(c) for c in commands), len(commands)  # type: ignore[arg-type]


def _cpu(client: redis.Redis) -> float:
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])


def round_of(
    client: redis.Redis, made: list[Flight], write: Callable[[Flight], tuple[bytes, int]]
) -> tuple[float, float]:
    """Redis CPU (us) and bytes per frame, one frame's commands answered before the next."""
    client.flushall()
    load = getattr(wire, "LOAD", None)
    if load is not None:
        client.execute_command(*load)
    packed = [write(flight) for flight in made]
    conn = client.connection_pool.get_connection()
    try:
        before = _cpu(client)
        for data, replies in packed:
            conn.send_packed_command([data])
            for _ in range(replies):
                reply = conn.read_response(disable_decoding=True)
                assert not isinstance(reply, Exception), reply
        spent = _cpu(client) - before
    finally:
        client.connection_pool.release(conn)
    return spent / len(made) * 1e6, statistics.mean(len(d) for d, _ in packed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    made = flights(args.frames)
    results: dict[str, list[tuple[float, float]]] = {"ours": [], "plain": []}
    with EmbeddedRedis() as server:
        client = redis.Redis.from_url(server.url)
        for _ in range(args.rounds):
            for name, write in (("ours", ours), ("plain", plain)):
                results[name].append(round_of(client, made, write))
        client.close()
    print(f"{len(made):,} frames of 20 level-one quotes, {args.rounds} alternating rounds:")
    for name, label in (("ours", "the publisher's write"), ("plain", "plain XADDs + MSET")):
        cpu = [c for c, _ in results[name]]
        print(
            f"  {label:22} Redis CPU {statistics.median(cpu):5.0f} us/frame (median; "
            f"{min(cpu):.0f}-{max(cpu):.0f}), {results[name][0][1]:,.0f} bytes/frame"
        )


if __name__ == "__main__":
    main()
