"""Soak run: the pipeline under simulator load with a fault every few seconds, then an account.

    .venv/bin/python scripts/soak.py --minutes 10

Everything stays on loopback: the simulator (`schwab-stream sim`, a child process), a throw-away
redis-server (a child process) and the pipeline (this process, so its memory is what /proc/self
reports). Faults rotate through a dropped socket, silence past the watchdog, a garbage frame,
Schwab codes 30 and 3, Redis killed and restarted, a stream key overwritten with a string for
2 s (Redis refuses that stream's writes: it is held while the others flow), and Redis stalled
(SIGSTOP) longer than the publisher's write timeout, so batches on the wire are sent again while
Redis, resumed, runs the first copies too. One-minute bars (the market clock runs 60x) and account
activity (an order every second) flow throughout.

A hot standby runs alongside the active (a second pipeline on the same Redis, as a second `run`
would be), restarted like a systemd unit whenever one ends; two more faults make it take over:
the active stopped cleanly (SIGTERM) and Redis stalled past the lease TTL (the lease expires in
the stall and the standby's queued SET NX may win). Each instance's streaming spans come from
its own status events (`subscribed` to `disconnected`/`stopped`/`lease_lost`); every interval
in which nobody streamed across a handover to another instance must stay within the documented
takeover time (lease TTL + the standby's poll + the connect).

At the end every event the normalizer produced must be accounted for: published, conflated
(latest-wins while Redis was away or a stream was held), dropped, or still queued; no event may
be in Redis twice (same `seq` and `recv_ns`: across instances, `seq` starts over), and no bar or
account event an instance received after Redis last restarted may be missing from Redis. The
summary is printed as Markdown (and written as JSON with --json).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
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
from schwab_stream.events import AccountEvent, BarEvent, Event, StatusEvent, decode_event
from schwab_stream.pipeline import Pipeline

FAULTS = ("drop", "silence", "garbage", "code30", "redis", "code3", "wrongtype", "stall")
#: With a standby: the active stopped cleanly, and Redis stalled past the lease TTL.
STANDBY_FAULTS = ("handover", "takeover")
#: The publisher's write timeout in the soak (5 s by default): a stall outlasts it.
WRITE_TIMEOUT = 1.0
#: The lease TTL in the soak (10 s by default), so a stall past it stays short.
LEASE_TTL = 3.0
#: A stopped instance is started again after this long (systemd's RestartSec).
RESTART_DELAY = 0.5
#: What a handover may leave nobody streaming (operations.md, "Hot standby"): the lease TTL, the
#: standby's poll (1 s, jittered 20%), and the connect, login and subscribe (allowed 2 s here).
TAKEOVER_LIMIT = LEASE_TTL + 1.2 + 2.0
#: Status events that end an instance's streaming span.
STREAM_ENDS = frozenset({"disconnected", "stopped", "lease_lost", "login_needed"})


def rss_kib() -> int:
    """This process's resident set size (VmRSS) in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def start_sim(args: argparse.Namespace) -> tuple[subprocess.Popen[str], str]:
    """`schwab-stream sim` on a free loopback port; returns the process and its base URL."""
    command = [
        sys.executable, "-m", "schwab_stream", "sim",
        "--host", "127.0.0.1", "--port", "0",
        "--rate", str(args.rate),
        "--symbols-per-frame", str(args.symbols_per_frame),
        "--book-interval", str(args.book_interval),
        "--heartbeat-interval", "1",
        "--symbol-limit", "1000",
        "--time-scale", "60",
    ]  # fmt: skip
    if "--market-time" in _sim_help():  # a simulator with market hours: open, so bars flow
        command += ["--market-time", MARKET_OPEN]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    first = proc.stdout.readline().strip()
    url = first.rsplit(" ", 1)[-1]
    if not url.startswith("http://127.0.0.1:"):
        proc.kill()
        raise RuntimeError(f"simulator did not start: {first!r}")
    return proc, url


#: A Wednesday morning in New York: the regular session, for a simulator that keeps hours.
MARKET_OPEN = "2024-05-15T09:45"


def _sim_help() -> str:
    return subprocess.run(
        [sys.executable, "-m", "schwab_stream", "sim", "--help"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout


class Counting:
    """Counts what the reader hands the publisher (the normalizer's output plus status events),
    keeps the bar and account events to find in Redis, and the instance's streaming spans."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.events: Counter[str] = Counter()
        self.states: Counter[str] = Counter()
        self.kept: list[tuple[str, int, int]] = []  # (stream, seq, recv_ns) of bars and account
        self.spans: list[tuple[float, float | None]] = []  # monotonic (subscribed, ended)
        prefix = pipeline.settings.redis_prefix
        # The core's submit: status events the core makes itself (gaps) pass there too.
        core = pipeline.publisher.core
        submit = core.submit

        def counting_submit(events: list[Event]) -> None:
            for event in events:
                if isinstance(event, StatusEvent):
                    self.states[event.state] += 1
                    self.events["status"] += 1
                    self._span(event.state)
                else:
                    self.events[type(event).__name__] += 1
                    if isinstance(event, BarEvent):
                        self.kept.append((f"{prefix}:bar:{event.symbol}", event.seq, event.recv_ns))
                    elif isinstance(event, AccountEvent):
                        self.kept.append((f"{prefix}:account", event.seq, event.recv_ns))
            submit(events)

        core.submit = counting_submit  # type: ignore[method-assign]

    def _span(self, state: str) -> None:
        streaming = bool(self.spans) and self.spans[-1][1] is None
        if state == "subscribed" and not streaming:
            self.spans.append((time.monotonic(), None))
        elif state in STREAM_ENDS and streaming:
            self.end_span()

    def end_span(self) -> None:
        if self.spans and self.spans[-1][1] is None:
            self.spans[-1] = (self.spans[-1][0], time.monotonic())


class Member:
    """One `run` of the soak: its pipeline, what it handed its publisher, how it ended."""

    def __init__(self, settings: Settings, subs: dict[str, list[str]]) -> None:
        self.pipeline = Pipeline.from_settings(settings, subs)
        self.pipeline.publisher.write_timeout = WRITE_TIMEOUT
        self.counting = Counting(self.pipeline)
        self.task = asyncio.create_task(self.pipeline.run())
        self.task.add_done_callback(lambda _: self.counting.end_span())

    @property
    def streaming(self) -> bool:
        spans = self.counting.spans
        return bool(spans) and spans[-1][1] is None


class Instances:
    """The active and its hot standby, kept like systemd units (`Restart=always`): one that ends
    is started again, as the standby, `RESTART_DELAY` later."""

    def __init__(self, settings: Settings, subs: dict[str, list[str]], count: int) -> None:
        self.settings, self.subs, self.count = settings, subs, count
        self.members: list[Member] = []
        self.exit_codes: Counter[int] = Counter()
        #: When Redis was last killed (epoch ns): what it held then is gone with it.
        self.redis_killed_ns = 0
        self._stopping = False
        self._restarts: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        for _ in range(self.count):
            self._add()

    def _add(self) -> None:
        member = Member(self.settings, self.subs)
        self.members.append(member)
        member.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[int]) -> None:
        self.exit_codes[task.result() if not task.cancelled() and not task.exception() else -1] += 1
        if not self._stopping:
            restart = asyncio.get_running_loop().create_task(self._restart())
            self._restarts.add(restart)
            restart.add_done_callback(self._restarts.discard)

    async def _restart(self) -> None:
        await asyncio.sleep(RESTART_DELAY)
        if not self._stopping:
            self._add()

    def active(self) -> Member | None:
        return next((m for m in self.members if not m.task.done() and m.streaming), None)

    async def stop(self) -> None:
        self._stopping = True
        for restart in self._restarts:
            restart.cancel()
        for member in self.members:
            member.pipeline.stop()
        await asyncio.wait_for(asyncio.gather(*(m.task for m in self.members)), 30)


def handover_gaps(members: list[Member]) -> tuple[list[float], list[float]]:
    """The intervals with nobody streaming, in seconds: (across a handover to another instance,
    within one instance's reconnects). A negative one is an overlap: the new instance streamed
    before the old one's end was said (its session ended by the newcomer's LOGIN)."""
    spans = sorted(
        (start, end if end is not None else start, i)
        for i, member in enumerate(members)
        for start, end in member.counting.spans
    )
    handovers: list[float] = []
    reconnects: list[float] = []
    for (_, end, before), (start, _, after) in itertools.pairwise(spans):
        (handovers if after != before else reconnects).append(start - end)
    return handovers, reconnects


async def fault(
    name: str, http: httpx.AsyncClient, redis_server: EmbeddedRedis, instances: Instances
) -> None:
    if name == "handover":
        active = instances.active()
        if active is not None:
            active.pipeline.stop()  # as SIGTERM does; the soak starts it again as the standby
    elif name == "takeover":
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        await asyncio.sleep(LEASE_TTL + 1.5)  # the lease expires inside the stall
        redis_server.proc.send_signal(signal.SIGCONT)
    elif name == "drop":
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
        instances.redis_killed_ns = time.time_ns()
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
            lease_ttl=LEASE_TTL,
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
        instances = Instances(settings, subs, 2 if args.standby else 1)
        instances.start()
        faults_played = FAULTS + STANDBY_FAULTS if args.standby else FAULTS
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
            while time.monotonic() < deadline:
                await asyncio.sleep(args.fault_every)
                name = faults_played[i % len(faults_played)]
                i += 1
                await fault(name, http, redis_server, instances)
                faults[name] += 1
                rss_max = max(rss_max, rss_kib())
                if time.monotonic() >= next_report:
                    next_report += 60
                    published = sum(
                        sum(m.pipeline.publisher.stats.published.values())
                        for m in instances.members
                    )
                    print(
                        f"soak: {(time.monotonic() - started) / 60:.0f} min, {published} "
                        f"published, {len(instances.members)} instances, "
                        f"rss {rss_kib() // 1024} MiB",
                        file=sys.stderr,
                        flush=True,
                    )
            sim_stats = (await http.get("/sim/stats")).json()
        orders.cancel()
        await asyncio.sleep(3.0 + LEASE_TTL)  # let the last fault heal, a takeover included
        rss_end = rss_kib()
        await instances.stop()
        members = instances.members
        client = aioredis.Redis.from_url(redis_server.url)
        xlen_total = twice = 0
        found: set[tuple[str, int, int]] = set()
        async for key in client.scan_iter(match="schwab:*", _type="stream"):
            xlen_total += int(await client.xlen(key))
            name = key.decode()
            events = [decode_event(f[b"data"]) for _, f in await client.xrange(key)]
            ids = [(e.seq, e.recv_ns) for e in events]
            twice += len(ids) - len(set(ids))  # writes are exactly once, quotes included
            found.update((name, seq, recv_ns) for seq, recv_ns in ids)
        await client.aclose()
        # Bars and account events are never conflated: each one an instance received after the
        # last Redis restart began must be in Redis.
        expected = {
            kept for m in members for kept in m.counting.kept if kept[2] > instances.redis_killed_ns
        }
        missing = len(expected - found)
        handovers, reconnect_gaps = handover_gaps(members)
        nobody = [max(0.0, gap) for gap in handovers]
        pubs = [m.pipeline.publisher.stats for m in members]
        clis = [m.pipeline.client.stats for m in members]
        events_in = sum(sum(m.counting.events.values()) for m in members)
        published = sum(sum(p.published.values()) for p in pubs)
        conflated = sum(sum(p.conflated.values()) for p in pubs)
        dropped = sum(sum(p.dropped.values()) for p in pubs)
        left = sum(m.pipeline.publisher.depth for m in members)
        states: Counter[str] = sum((m.counting.states for m in members), Counter())
        latencies = [q for p in pubs if (q := p.latency_quantiles_ms()) is not None]
        return {
            "minutes": args.minutes,
            "exit_codes": dict(instances.exit_codes),
            "instances_run": len(members),
            "standby": args.standby,
            "symbols": args.symbols,
            "books": args.books,
            "faults": dict(faults),
            "sim_frames_sent": sim_stats.get("frames_sent"),
            "sim_connections": sim_stats.get("connections"),
            "sim_logins": sim_stats.get("logins"),
            "sim_takeovers": sim_stats.get("takeovers", 0),
            "frames_received": dict(sum((Counter(c.frames) for c in clis), Counter())),
            "bad_frames": dict(sum((Counter(c.bad_frames) for c in clis), Counter())),
            "events_in": events_in,
            "events_in_by_type": dict(sum((m.counting.events for m in members), Counter())),
            "events_published": published,
            "published_by_type": dict(sum((Counter(p.published) for p in pubs), Counter())),
            "conflated": conflated,
            "dropped": dropped,
            "left_in_queue": left,
            "unaccounted": events_in - published - conflated - dropped - left,
            "xlen_since_last_redis_restart": xlen_total,
            "written_twice": twice,
            "bars_and_account_expected": len(expected),
            "missing_bars_or_account": missing,
            "handovers": len(handovers),
            "nobody_streaming_s": [round(g, 2) for g in nobody],
            "nobody_streaming_max_s": round(max(nobody, default=0.0), 2),
            "takeover_limit_s": TAKEOVER_LIMIT,
            "reconnect_gap_max_s": round(max(reconnect_gaps, default=0.0), 2),
            "reconnects": sum(sum(c.reconnects.values()) for c in clis),
            "reconnects_by_reason": dict(sum((Counter(c.reconnects) for c in clis), Counter())),
            "gaps": states["gap"],
            "lease_lost": states["lease_lost"],
            "login_needed": states["login_needed"],
            "token_refreshed": states["token_refreshed"],
            "redis_errors": sum(p.redis_errors for p in pubs),
            "latency_p50_p99_ms": max(latencies, key=lambda q: q[1]) if latencies else None,
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
        (
            "duration",
            f"{result['minutes']:g} min; {result['instances_run']} instances run "
            f"({'active + hot standby' if result['standby'] else 'no standby'}), exit codes "
            + ", ".join(f"{k}: {v}" for k, v in sorted(result["exit_codes"].items())),
        ),
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
            "bar and account events missing (received since the last Redis restart)",
            f"{result['missing_bars_or_account']} of {result['bars_and_account_expected']:,}",
        ),
        (
            "handovers to another instance (simulator: logins, code-12 takeovers)",
            f"{result['handovers']} ({result['sim_logins']}, {result['sim_takeovers']}); "
            f"lease_lost {result['lease_lost']}",
        ),
        (
            "nobody streaming across a handover, max (each)",
            f"{result['nobody_streaming_max_s']} s, limit {result['takeover_limit_s']:g} s "
            f"({', '.join(f'{g:g}' for g in result['nobody_streaming_s'])})",
        ),
        ("longest reconnect within one instance", f"{result['reconnect_gap_max_s']} s"),
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
    parser.add_argument(
        "--standby",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run a hot standby beside the active, with the handover faults",
    )
    parser.add_argument("--json", type=Path, help="also write the summary here as JSON")
    args = parser.parse_args()
    result = asyncio.run(soak(args))
    print(markdown(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    ok = (
        result["unaccounted"] == 0
        and result["dropped"] == 0
        and set(result["exit_codes"]) <= {0, 4}  # stopped, or lost the lease to the standby
        and result["written_twice"] == 0
        and result["missing_bars_or_account"] == 0
        and result["nobody_streaming_max_s"] <= result["takeover_limit_s"]
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
