"""Soak run: the pipeline under simulator load with a fault every few seconds, then an account.

    .venv/bin/python scripts/soak.py --minutes 10

Everything stays on loopback: the simulator (`schwab-stream sim`, a child process), a throw-away
redis-server (a child process) and the pipeline (this process, so its memory is what /proc/self
reports). Faults rotate through a dropped socket, silence past the watchdog, a garbage frame,
Schwab codes 30 and 3, Redis killed and restarted, a stream key overwritten with a string for
2 s (Redis refuses that stream's writes: it is held while the others flow), and Redis stalled
(SIGSTOP) longer than the publisher's write timeout, so batches on the wire are sent again while
Redis, resumed, runs the first copies too. One-minute bars (the market clock runs 60x) and account
activity (an order every second) flow throughout. At the end every event the normalizer produced
must be accounted for: published, conflated (latest-wins while Redis was away or a stream was
held), dropped, or still queued; no entry of any stream may be in Redis twice, and no bar or
account entry may be missing between the first and last of its stream since Redis last
restarted. The summary is printed as Markdown (and written as JSON with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from schwab_stream.auth.sim_login import login_against_simulator
from schwab_stream.config import Settings
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import Event, StatusEvent, decode_event
from schwab_stream.pipeline import Pipeline

FAULTS = ("drop", "silence", "garbage", "code30", "redis", "code3", "wrongtype", "stall")
#: The publisher's write timeout in the soak (5 s by default): a stall outlasts it.
WRITE_TIMEOUT = 1.0


def rss_kib() -> int:
    """This process's resident set size (VmRSS) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def start_sim(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    """`schwab-stream sim` on a free loopback port; returns the process and its base URL."""
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "schwab_stream", "sim",
            "--host", "127.0.0.1", "--port", "0",
            "--rate", str(args.rate),
            "--symbols-per-frame", str(args.symbols_per_frame),
            "--book-interval", str(args.book_interval),
            "--heartbeat-interval", "1",
            "--symbol-limit", "1000",
            "--time-scale", "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    url = first.rsplit(" ", 1)[-1]
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {first!r}")
    return proc, url


class Counting:
    """Counts what the reader hands the publisher (the normalizer's output plus status events)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.events: Counter[str] = Counter()
        self.states: Counter[str] = Counter()
        # The core's submit: status events the core makes itself (gaps) pass there too.
        core = pipeline.publisher.core
        submit = core.submit

        def counting_submit(events: list[Event]) -> None:
            for event in events:
                if isinstance(event, StatusEvent):
                    self.states[event.state] += 1
                    self.events["status"] += 1
                else:
                    self.events[type(event).__name__] += 1
            submit(events)

        core.submit = counting_submit  # type: ignore[method-assign]


async def fault(name: str, http: httpx.AsyncClient, redis_server: EmbeddedRedis) -> None:
    if name == "drop":
        (await http.post("/sim/fault/drop")).raise_for_status()
    elif name == "silence":
        (await http.post("/sim/fault/silence", params={"seconds": 4})).raise_for_status()
    elif name == "garbage":
        (await http.post("/sim/fault/garbage")).raise_for_status()
    elif name == "code30":
        (await http.post("/sim/fault/code/30")).raise_for_status()
    elif name == "code3":
        (await http.post("/sim/fault/code/3")).raise_for_status()
    elif name == "redis":
        redis_server.kill()
        await asyncio.sleep(2.0)
        await asyncio.to_thread(redis_server.start)
    elif name == "stall":
        assert redis_server.proc is not None
        # An order first: its account events (never conflated) reach the publisher while Redis
        # is stopped, so a batch holding them is on the wire when the write times out.
        (await http.post("/sim/account/order", params={"symbol": "S000"})).raise_for_status()
        redis_server.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(WRITE_TIMEOUT + 1.5)
        redis_server.proc.send_signal(signal.SIGCONT)
    elif name == "wrongtype":
        client = aioredis.Redis.from_url(redis_server.url)
        await client.set("schwab:tick:S001", "not a stream")
        await asyncio.sleep(2.0)
        await client.delete("schwab:tick:S001")
        await client.aclose()


async def place_orders(base_url: str, symbol: str) -> None:
    """An order a second on ACCT_ACTIVITY (four events each), until cancelled."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        while True:
            with contextlib.suppress(httpx.HTTPError):
                await http.post("/sim/account/order", params={"symbol": symbol})
            await asyncio.sleep(1.0)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    sim_proc, base_url = start_sim(args)
    redis_server = EmbeddedRedis().start()
    workdir = Path(tempfile.mkdtemp(prefix="schwab-stream-soak-"))
    try:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            app_key="sim-app-key",
            app_secret="sim-app-secret",  # noqa: S106 - the simulator's documented default
            api_base_url=base_url,
            token_path=workdir / "token.json",
            redis_url=redis_server.url,
            watchdog_seconds=2.5,
            command_timeout=3.0,
            reconnect_max_delay=2.0,
            log_level="WARNING",
        )
        await login_against_simulator(settings)
        symbols = [f"S{i:03d}" for i in range(args.symbols)]
        subs = {
            "LEVELONE_EQUITIES": symbols,
            "NASDAQ_BOOK": symbols[: args.books],
            "CHART_EQUITY": symbols[: args.bars],
            "ACCT_ACTIVITY": ["ACCOUNT"],
        }
        pipeline = Pipeline.from_settings(settings, subs)
        pipeline.publisher.write_timeout = WRITE_TIMEOUT
        counting = Counting(pipeline)
        task = asyncio.create_task(pipeline.run())
        orders = asyncio.create_task(place_orders(base_url, symbols[0]))
        await asyncio.sleep(3.0)  # warm up: connected, subscribed, first snapshots
        rss_start = rss_kib()
        rss_max = rss_start
        faults: Counter[str] = Counter()
        started = time.monotonic()
        deadline = started + args.minutes * 60
        next_report = started + 60
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
            i = 0
            while time.monotonic() < deadline and not task.done():
                await asyncio.sleep(args.fault_every)
                name = FAULTS[i % len(FAULTS)]
                i += 1
                await fault(name, http, redis_server)
                faults[name] += 1
                rss_max = max(rss_max, rss_kib())
                if time.monotonic() >= next_report:
                    next_report += 60
                    print(
                        f"soak: {(time.monotonic() - started) / 60:.0f} min, "
                        f"{sum(pipeline.publisher.stats.published.values())} published, "
                        f"rss {rss_kib() // 1024} MiB",
                        file=sys.stderr,
                        flush=True,
                    )
            sim_stats = (await http.get("/sim/stats")).json()
        orders.cancel()
        await asyncio.sleep(3.0)  # let the last fault heal
        rss_end = rss_kib()
        pipeline.stop()
        code = await asyncio.wait_for(task, 30)
        client = aioredis.Redis.from_url(redis_server.url)
        xlen_total = 0
        twice = missing = 0
        async for key in client.scan_iter(match="schwab:*", _type="stream"):
            xlen_total += int(await client.xlen(key))
            name = key.decode()
            seqs = [decode_event(f[b"data"]).seq for _, f in await client.xrange(key)]
            twice += len(seqs) - len(set(seqs))  # writes are exactly once, quotes included
            if name.startswith(("schwab:bar:", "schwab:account")):  # never conflated
                missing += (max(seqs) - min(seqs) + 1 - len(set(seqs))) if seqs else 0
        await client.aclose()
        pub, cli = pipeline.publisher.stats, pipeline.client.stats
        events_in = sum(counting.events.values())
        published = sum(pub.published.values())
        conflated = sum(pub.conflated.values())
        dropped = sum(pub.dropped.values())
        left = pipeline.publisher.depth
        return {
            "minutes": args.minutes,
            "exit_code": code,
            "symbols": args.symbols,
            "books": args.books,
            "faults": dict(faults),
            "sim_frames_sent": sim_stats.get("frames_sent"),
            "sim_connections": sim_stats.get("connections"),
            "frames_received": dict(cli.frames),
            "bad_frames": dict(cli.bad_frames),
            "events_in": events_in,
            "events_in_by_type": dict(counting.events),
            "events_published": published,
            "published_by_type": dict(pub.published),
            "conflated": conflated,
            "dropped": dropped,
            "left_in_queue": left,
            "unaccounted": events_in - published - conflated - dropped - left,
            "xlen_since_last_redis_restart": xlen_total,
            "written_twice": twice,
            "missing_bars_or_account": missing,
            "reconnects": sum(cli.reconnects.values()),
            "reconnects_by_reason": dict(cli.reconnects),
            "gaps": counting.states["gap"],
            "login_needed": counting.states["login_needed"],
            "token_refreshed": counting.states["token_refreshed"],
            "redis_errors": pub.redis_errors,
            "latency_p50_p99_ms": pub.latency_quantiles_ms(),
            "rss_start_mib": round(rss_start / 1024, 1),
            "rss_max_mib": round(rss_max / 1024, 1),
            "rss_end_mib": round(rss_end / 1024, 1),
        }
    finally:
        redis_server.stop()
        sim_proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            sim_proc.wait(10)
        if sim_proc.poll() is None:
            sim_proc.kill()


def markdown(result: dict[str, Any]) -> str:
    rows = [
        ("duration", f"{result['minutes']:g} min, exit code {result['exit_code']}"),
        (
            "load",
            f"{result['symbols']} level-one symbols + {result['books']} books; "
            f"simulator sent {result['sim_frames_sent']} frames",
        ),
        ("faults", ", ".join(f"{k} {v}" for k, v in sorted(result["faults"].items()))),
        ("events in (normalizer + status)", f"{result['events_in']:,}"),
        ("events out (published)", f"{result['events_published']:,}"),
        ("conflated", f"{result['conflated']:,}"),
        ("dropped", f"{result['dropped']:,}"),
        ("unaccounted", f"{result['unaccounted']:,}"),
        (
            "entries written twice (any stream)",
            f"{result['written_twice']:,}",
        ),
        (
            "bar and account entries missing (since the last Redis restart)",
            str(result["missing_bars_or_account"]),
        ),
        (
            "reconnects",
            f"{result['reconnects']} ("
            + ", ".join(f"{k} {v}" for k, v in sorted(result["reconnects_by_reason"].items()))
            + ")",
        ),
        ("gaps (Redis outages and held streams marked)", str(result["gaps"])),
        ("bad frames counted", str(sum(result["bad_frames"].values()))),
        ("login_needed events", str(result["login_needed"])),
        (
            "publish latency p50 / p99",
            "-"
            if result["latency_p50_p99_ms"] is None
            else "{:.2f} / {:.2f} ms".format(*result["latency_p50_p99_ms"]),
        ),
        (
            "RSS start / max / end",
            f"{result['rss_start_mib']} / {result['rss_max_mib']} / {result['rss_end_mib']} MiB",
        ),
    ]
    lines = ["| | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--symbols", type=int, default=200, help="level-one equities")
    parser.add_argument("--books", type=int, default=20, help="NASDAQ books")
    parser.add_argument("--bars", type=int, default=20, help="CHART_EQUITY symbols")
    parser.add_argument("--rate", type=float, default=50.0, help="simulator frames per second")
    parser.add_argument("--symbols-per-frame", type=int, default=50)
    parser.add_argument("--book-interval", type=float, default=0.5)
    parser.add_argument("--fault-every", type=float, default=6.0, help="seconds between faults")
    parser.add_argument("--json", type=Path, help="also write the summary here as JSON")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = (
        result["unaccounted"] == 0
        and result["dropped"] == 0
        and result["exit_code"] == 0
        and result["written_twice"] == 0
        and result["missing_bars_or_account"] == 0
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
