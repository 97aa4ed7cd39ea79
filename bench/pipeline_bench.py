"""The end-to-end benchmarks: throughput, latency, memory and start-up of the real pipeline.

Everything runs on loopback: an embedded redis-server, the simulator (OAuth, userPreference, and
the generated market for the memory and start-up runs) and, for throughput and latency,
bench/sender.py in its own process, which answers LOGIN and SUBS and then sends pre-encoded
level-one delta frames. Each of ours is measured next to a bare loop in the same run, against the
same Redis: the bare loop does only the Redis (and websocket) part, with the same payloads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
import websockets
from redis.cluster import ClusterNode, RedisCluster

from schwab_stream.auth.client import UserPreference
from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.config import Settings
from schwab_stream.embedded_redis import EmbeddedRedis, free_port
from schwab_stream.events import Event, StatusEvent, decode_event, encode_event
from schwab_stream.pipeline import Pipeline
from schwab_stream.publish.keys import StreamKeys
from schwab_stream.redis_client import async_redis
from schwab_stream.redis_topology import Kind, parse
from schwab_stream.runtime import freeze_heap
from schwab_stream.sim.clock import parse_market_time
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig
from schwab_stream.stream.normalize import Normalizer
from schwab_stream.stream.protocol import decode_frame

#: Where the simulator's market clock starts: a regular session, so data flows at any hour.
REGULAR_SESSION = parse_market_time("2025-06-10T09:35")

SENDER = Path(__file__).resolve().parent / "sender.py"
MAXLEN = 100_000


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def sync_client(url: str) -> redis.Redis | RedisCluster:
    """A blocking client for `url`: a standalone server, or every node of a cluster."""
    where = parse(url)
    if where.kind is Kind.CLUSTER:
        nodes = [ClusterNode(host, port) for host, port in where.hosts]  # type: ignore[no-untyped-call]
        return RedisCluster(startup_nodes=nodes)
    return redis.Redis.from_url(url)


@dataclass
class Bench:
    """The shared loopback world: one redis-server, one simulator, a temp folder for tokens."""

    redis: EmbeddedRedis
    sim: SimThread
    tmp: Path
    #: Where the pipeline and the bare loops write when not the embedded server: a
    #: redis+cluster:// URL (bench/cluster_bench.py)
    redis_url: str = ""

    @property
    def url(self) -> str:
        return self.redis_url or self.redis.url

    @property
    def cluster(self) -> bool:
        return parse(self.url).kind is Kind.CLUSTER

    @property
    def token_path(self) -> Path:
        return self.tmp / "token.json"

    def write_tokens(self) -> None:
        access, refresh = self.sim.state.tokens.login()
        now = time.time()
        TokenStore(self.token_path).save(
            TokenRecord(
                access_token=access,
                refresh_token=refresh,
                access_expires_at=now + self.sim.config.access_ttl,
                login_at=now,
                refresh_expires_at=now + self.sim.config.refresh_ttl,
            )
        )

    def flush(self) -> None:
        with sync_client(self.url) as client:
            if isinstance(client, RedisCluster):
                client.flushall(target_nodes=RedisCluster.PRIMARIES)
            else:
                client.flushall()

    def settings(self, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_key": self.sim.config.app_key,
            "app_secret": self.sim.config.app_secret,
            "callback_url": self.sim.config.callback_url,
            "api_base_url": self.sim.base_url,
            "token_path": self.token_path,
            "redis_url": self.url,
            "log_level": "WARNING",
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)  # type: ignore[call-arg]

    def env(self, **extra: str) -> dict[str, str]:
        """The settings as environment variables, for a `schwab-stream run` subprocess."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SCHWAB_", "REDIS_"))}
        env.update(
            {
                "SCHWAB_APP_KEY": self.sim.config.app_key,
                "SCHWAB_APP_SECRET": self.sim.config.app_secret,
                "SCHWAB_API_BASE_URL": self.sim.base_url,
                "SCHWAB_TOKEN_PATH": str(self.token_path),
                "REDIS_URL": self.url,
                "SCHWAB_LOG_LEVEL": "WARNING",
                **extra,
            }
        )
        return env


@contextlib.contextmanager
def bench_world(**sim: Any) -> Iterator[Bench]:
    with (
        tempfile.TemporaryDirectory(prefix="schwab-stream-bench-") as tmp,
        EmbeddedRedis() as server,
    ):
        sim.setdefault("market_time", REGULAR_SESSION)  # the market open, whatever the hour
        simulator = SimThread(SimConfig(**sim)).start()
        try:
            world = Bench(server, simulator, Path(tmp))
            world.write_tokens()
            yield world
        finally:
            simulator.stop()


# --- the bench sender -----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def sender(frames: list[str], rate: float, tmp: Path) -> AsyncIterator[str]:
    """bench/sender.py in its own process; yields its websocket URL."""
    async with timed_sender(frames, rate, tmp, record=False) as sent:
        yield sent.url


@dataclass
class Sending:
    """A running bench/sender.py: its websocket URL, and (once it has sent every frame) each
    frame's send time as the sender recorded it."""

    url: str
    proc: asyncio.subprocess.Process
    path: Path

    async def sent_ns(self, timeout: float = 120.0) -> array[int]:
        """Each frame's send time (time.time_ns, frame order), once the last frame is out."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line.startswith(b"sent "):
            raise RuntimeError(f"bench sender did not finish: {line!r}")
        times = array("q")
        times.frombytes(self.path.read_bytes())
        return times


@contextlib.asynccontextmanager
async def timed_sender(
    frames: list[str], rate: float, tmp: Path, record: bool = True
) -> AsyncIterator[Sending]:
    """bench/sender.py in its own process, recording each frame's send time when `record`."""
    path = tmp / "frames.txt"
    path.write_text("\n".join(frames) + "\n")
    times = tmp / "sent.bin"
    times.unlink(missing_ok=True)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(SENDER),
        "--port",
        str(port),
        "--frames",
        str(path),
        "--rate",
        str(rate),
        *(("--times", str(times)) if record else ()),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        if line.strip() != b"ready":
            raise RuntimeError(f"bench sender did not start: {line!r}")
        yield Sending(f"ws://127.0.0.1:{port}", proc, times)
    finally:
        proc.terminate()
        await proc.wait()


def expected_entries(frames: list[str], cluster: bool = False) -> list[list[tuple[str, bytes]]]:
    """(stream, payload) per event, per frame: what the pipeline writes, for the bare loops."""
    normalizer = Normalizer()
    keys = StreamKeys("schwab", cluster=cluster)
    return [
        [
            (keys.stream(event), encode_event(event))
            for message in decode_frame(raw).data
            for event in normalizer.feed(message, time.time_ns())
        ]
        for raw in frames
    ]


# --- ours: a real Pipeline fed by the sender ------------------------------------------------


@dataclass
class Acks:
    """What the publisher acknowledged: per market event, the receive time of its frame and the
    ack time of its batch. Int arrays, which the garbage collector does not track: a list of
    per-batch tuples and frozensets made the full collections of a 15 s run walk the recording
    itself, and those pauses were charged to the pipeline."""

    recv_ns: array[int] = dataclasses.field(default_factory=lambda: array("q"))
    ack_ns: array[int] = dataclasses.field(default_factory=lambda: array("q"))
    #: CPU time of the event loop's thread from the first ack to the last, and the market
    #: events acknowledged in that span (after the first batch)
    cpu_ns: int = 0
    cpu_events: int = 0

    @property
    def events(self) -> int:
        return len(self.recv_ns)

    def frames(self) -> tuple[list[int], list[int]]:
        """Per frame, in frame order: its receive time and its ack time (the ack of the batch
        that held its events; a frame's events share its `recv_ns`)."""
        per_frame = dict(zip(self.recv_ns, self.ack_ns, strict=True))
        ordered = sorted(per_frame.items())
        return [recv for recv, _ in ordered], [ack for _, ack in ordered]

    def frame_latencies_ms(self, skip: int = 0) -> list[float]:
        """Frame received -> its XADDs acknowledged, one figure per frame, in frame order."""
        per_frame = dict(zip(self.recv_ns, self.ack_ns, strict=True))
        return [(ack - recv) / 1e6 for recv, ack in sorted(per_frame.items())][skip:]

    def rate(self) -> float:
        """Events per second from the first frame received to the last ack."""
        return self.events / ((self.ack_ns[-1] - min(self.recv_ns)) / 1e9)


def frame_keys(frames: list[str]) -> dict[str, list[str]]:
    """Every (service, key) the frames carry data for: what the bridge must hold, since it
    drops data for keys it does not hold."""
    keys: dict[str, dict[str, None]] = {}
    for frame in frames:
        for message in json.loads(frame).get("data", []):
            held = keys.setdefault(message["service"], {})
            held.update(dict.fromkeys(item["key"] for item in message["content"]))
    return {service: list(held) for service, held in keys.items()}


async def run_pipeline(
    world: Bench, url: str, expected: int, subs: dict[str, list[str]], timeout: float = 120.0
) -> Acks:
    """A real Pipeline (latest keys on) holding `subs`, its websocket pointed at `url`, until
    `expected` market events are acknowledged by Redis. Conflation is ruled out by a queue
    larger than the run."""
    pipeline = Pipeline.from_settings(world.settings(queue_size=10_000_000), subs)
    real_preference = pipeline.auth.user_preference

    async def pointed() -> UserPreference:
        prefs = await real_preference()
        return dataclasses.replace(
            prefs, streamer=dataclasses.replace(prefs.streamer, streamer_socket_url=url)
        )

    pipeline.auth.user_preference = pointed  # type: ignore[method-assign]
    freeze_heap()  # as `schwab-stream run` does once its pipeline is built
    acks = Acks()
    publisher = pipeline.publisher
    cpu_start = 0

    def recorded(written: list[Event], now: int) -> None:
        nonlocal cpu_start
        market = [e.recv_ns for e in written if not isinstance(e, StatusEvent)]
        if market and not cpu_start:
            cpu_start = time.thread_time_ns()
            acks.cpu_events = -len(market)
        acks.recv_ns.extend(market)
        acks.ack_ns.extend([now] * len(market))

    publisher.core.on_written = recorded
    task = asyncio.create_task(pipeline.run())
    deadline = time.monotonic() + timeout
    while acks.events < expected:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError(f"pipeline wrote {acks.events} of {expected} events")
        await asyncio.sleep(0.01)
    acks.cpu_ns = time.thread_time_ns() - cpu_start
    acks.cpu_events += acks.events
    pipeline.stop()
    await task
    if sum(publisher.stats.conflated.values()) or sum(publisher.stats.dropped.values()):
        raise RuntimeError("events were conflated or dropped: the run does not count")
    return acks


# --- the bare loops --------------------------------------------------------------------------


async def bare_xadd_rate(url: str, entries: list[tuple[str, bytes]], batch: int) -> float:
    """XADD only, the same payloads to the same streams, pipelined `batch` at a time (in a
    cluster, redis-py's cluster pipeline: each batch split by node, the nodes' parts in
    parallel)."""
    client = async_redis(url)
    try:
        await client.ping()
        start = time.perf_counter()
        for i in range(0, len(entries), batch):
            pipe = client.pipeline(transaction=False)
            for stream, payload in entries[i : i + batch]:
                pipe.execute_command("XADD", stream, "MAXLEN", "~", MAXLEN, "*", "data", payload)
            await pipe.execute()
        return len(entries) / (time.perf_counter() - start)
    finally:
        await client.aclose()


@dataclass
class BareRun:
    """The bare websocket-to-XADD loop's run: per frame its receive and ack times (ns), and the
    CPU time of its thread from the first ack to the last."""

    recv_ns: list[int]
    ack_ns: list[int]
    cpu_ns: int

    def latencies_ms(self) -> list[float]:
        """Frame received -> its XADDs acknowledged (what this row measured before issue 22)."""
        return [(ack - recv) / 1e6 for recv, ack in zip(self.recv_ns, self.ack_ns, strict=True)]


async def bare_ws_latencies_ms(
    ws_url: str, redis_url: str, entries: list[list[tuple[str, bytes]]]
) -> list[float]:
    """Receive each data frame and XADD its pre-encoded events in one pipeline: nothing else.
    Receipt -> ack per frame."""
    return (await bare_ws_run(ws_url, redis_url, entries)).latencies_ms()


async def bare_ws_run(
    ws_url: str, redis_url: str, entries: list[list[tuple[str, bytes]]]
) -> BareRun:
    """Receive each data frame and XADD its pre-encoded events in one pipeline: nothing else."""
    client = async_redis(redis_url)
    await client.ping()
    recv_ns: list[int] = []
    ack_ns: list[int] = []
    cpu_start = 0
    request = (
        '{"requests":[{"service":"%s","command":"%s","requestid":"%d",'
        '"SchwabClientCorrelId":"bench","parameters":{}}]}'
    )
    try:
        async with websockets.connect(ws_url, compression=None, max_size=None) as ws:
            await ws.send(request % ("ADMIN", "LOGIN", 1))
            await ws.recv()
            await ws.send(request % ("LEVELONE_EQUITIES", "SUBS", 2))
            await ws.recv()
            for frame_entries in entries:
                raw = await ws.recv(decode=False)
                recv_ns.append(time.time_ns())
                pipe = client.pipeline(transaction=False)
                for stream, payload in frame_entries:
                    pipe.execute_command(
                        "XADD", stream, "MAXLEN", "~", MAXLEN, "*", "data", payload
                    )
                await pipe.execute()
                ack_ns.append(time.time_ns())
                if not cpu_start:
                    cpu_start = time.thread_time_ns()
                del raw
        cpu = time.thread_time_ns() - cpu_start
    finally:
        await client.aclose()
    return BareRun(recv_ns, ack_ns, cpu)


# --- the measurements ------------------------------------------------------------------------


@dataclass(frozen=True)
class Throughput:
    ours: float
    bare: float
    events: int


async def throughput(world: Bench, frames: list[str]) -> Throughput:
    entries = [entry for frame in expected_entries(frames, world.cluster) for entry in frame]
    bare = 0.0
    for batch in (200, 1000, 5000):  # the reference gets its best batch size
        world.flush()
        bare = max(bare, await bare_xadd_rate(world.url, entries, batch))
    world.flush()
    async with sender(frames, 0, world.tmp) as url:
        acks = await run_pipeline(world, url, len(entries), frame_keys(frames))
    with sync_client(world.url) as client:
        written = sum(int(client.xlen(stream)) for stream in {s for s, _ in entries})
    if written != len(entries):
        raise RuntimeError(f"{written} entries in Redis, {len(entries)} expected")
    return Throughput(acks.rate(), bare, len(entries))


#: Latency rows: the span of one window, and how many of the worst a row names
WINDOW_NS = 100_000_000
WORST_WINDOWS = 3
#: A reader behind: it took this much longer to read the frames than the sender's schedule
BEHIND = 1.05
#: The probe's slow units: this many times the run's median CPU per unit; slow units this close
#: together are one window, and a window counts with at least SLOW_UNITS of them (a lone slow
#: unit is an interrupt, not a slow host)
SLOW_FACTOR = 3.0
SLOW_MERGE_NS = 20_000_000
SLOW_UNITS = 2
#: A steady window (WINDOW_NS): the probe's median unit there within this factor of its fast
#: speed (the row's 10th percentile unit). This host also runs 1.5-1.8x slower for a quarter of
#: the time with the probe alone on it (docs/performance.md): too little for SLOW_FACTOR, and
#: enough to decide a p99 near 1 ms.
STEADY_FACTOR = 1.25
#: A row judges its steady p99 only when at least this share of its frames were sent steady
STEADY_SHARE = 0.25
PROBE = Path(__file__).resolve().parent / "cpu_probe.py"


@dataclass(frozen=True)
class SlowWindow:
    start_ns: int
    end_ns: int
    factor: float  # the slowest unit against the median
    units: int = 1


@dataclass(frozen=True)
class Side:
    """One side of a latency row, send -> ack per frame (ms), warm-up frames left out."""

    p50: float
    p99: float
    p999: float
    max: float
    #: CPU time of the side's event-loop thread per frame, in microseconds
    cpu_us: float
    #: The worst windows of WINDOW_NS by send time: (seconds into the run, the window's max ms)
    worst: list[tuple[float, float]]
    #: Seconds the sender's schedule took, and seconds this side took to read the frames
    schedule_s: float
    read_s: float
    #: The probe's slow windows during this side's run: (seconds into the run, ms long, factor)
    slow: list[tuple[float, float, float]]
    #: Receipt -> ack p50, p99 (the figure this row reported before issue 22)
    receipt: tuple[float, float]
    #: Send -> ack p99 of the frames sent in steady windows (the probe at its fast speed), and
    #: the share of the measured frames those are
    steady_p99: float = math.nan
    steady_share: float = 0.0

    @property
    def behind(self) -> bool:
        """It read more slowly than the sender sent (frames waited in the socket)."""
        return self.read_s > self.schedule_s * BEHIND + 0.05


@dataclass(frozen=True)
class Latency:
    """Send -> ack, ours and the bare loop's: `ours` and `bare` are (p50, p99) in ms."""

    ours: tuple[float, float]
    bare: tuple[float, float]
    frames: int
    ours_side: Side
    bare_side: Side
    #: The probe's median CPU per unit (us), and its slow windows over the whole row
    probe_us: float
    slow: list[SlowWindow]


def _side(
    sent: array[int],
    recv: list[int],
    ack: list[int],
    skip: int,
    rate: float,
    cpu: tuple[int, int],
    slow: list[SlowWindow],
    steady: set[int],
) -> Side:
    if len(ack) != len(sent):
        raise RuntimeError(f"{len(ack)} frames acknowledged, {len(sent)} sent")
    latencies = [(a - s) / 1e6 for s, a in zip(sent, ack, strict=True)]
    start = sent[0]
    windows: dict[int, float] = {}
    for s, ms in zip(sent[skip:], latencies[skip:], strict=True):
        w = (s - start) // WINDOW_NS
        windows[w] = max(windows.get(w, 0.0), ms)
    worst = sorted(windows.items(), key=lambda item: item[1], reverse=True)[:WORST_WINDOWS]
    measured = latencies[skip:]
    calm = [ms for s, ms in zip(sent[skip:], measured, strict=True) if s // WINDOW_NS in steady]
    cpu_ns, frames = cpu
    return Side(
        quantile(measured, 0.5),
        quantile(measured, 0.99),
        quantile(measured, 0.999),
        max(measured),
        cpu_ns / max(frames, 1) / 1e3,
        [(w * WINDOW_NS / 1e9, ms) for w, ms in sorted(worst)],
        (len(sent) - 1) / rate if rate > 0 else 0.0,
        (recv[-1] - recv[0]) / 1e9,
        [
            ((w.start_ns - start) / 1e9, (w.end_ns - w.start_ns) / 1e6, w.factor)
            for w in slow
            if w.end_ns >= start and w.start_ns <= ack[-1]
        ],
        (
            quantile([(a - r) / 1e6 for r, a in zip(recv[skip:], ack[skip:], strict=True)], 0.5),
            quantile([(a - r) / 1e6 for r, a in zip(recv[skip:], ack[skip:], strict=True)], 0.99),
        ),
        quantile(calm, 0.99) if calm else math.nan,
        len(calm) / max(len(measured), 1),
    )


@contextlib.asynccontextmanager
async def cpu_probe() -> AsyncIterator[list[tuple[int, int]]]:
    """bench/cpu_probe.py beside the block; the list fills with its (wall ns, CPU ns) units
    when the block ends."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(PROBE),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    units: list[tuple[int, int]] = []
    try:
        yield units
    finally:
        out, _ = await proc.communicate(b"")
        for line in out.decode().splitlines():
            wall, cpu = line.split()
            units.append((int(wall), int(cpu)))


def steady_windows(units: list[tuple[int, int]]) -> set[int]:
    """The windows (wall ns // WINDOW_NS) in which the probe's median unit was within
    STEADY_FACTOR of its fast speed."""
    if not units:
        return set()
    fast = quantile([cpu for _, cpu in units], 0.1)
    by_window: dict[int, list[int]] = {}
    for wall, cpu in units:
        by_window.setdefault(wall // WINDOW_NS, []).append(cpu)
    return {
        window for window, cpus in by_window.items() if quantile(cpus, 0.5) <= fast * STEADY_FACTOR
    }


def slow_windows(units: list[tuple[int, int]]) -> tuple[float, list[SlowWindow]]:
    """The probe's median CPU per unit (us), and its windows of slow units."""
    if not units:
        return 0.0, []
    median = quantile([cpu for _, cpu in units], 0.5)
    windows: list[SlowWindow] = []
    for wall, cpu in units:
        if cpu < median * SLOW_FACTOR:
            continue
        end, factor = wall + cpu, cpu / median
        last = windows[-1] if windows else None
        if last is not None and wall - last.end_ns <= SLOW_MERGE_NS:
            windows[-1] = SlowWindow(last.start_ns, end, max(last.factor, factor), last.units + 1)
        else:
            windows.append(SlowWindow(wall, end, factor))
    return median / 1e3, [w for w in windows if w.units >= SLOW_UNITS]


async def latency(world: Bench, frames: list[str], rate: float, skip: int) -> Latency:
    """Sent (the sender's own stamp) -> XADD acknowledged with a paced sender, per frame, ours
    and the bare loop's, a CPU-stability probe beside both."""
    entries = expected_entries(frames, world.cluster)
    async with cpu_probe() as units:
        world.flush()
        async with timed_sender(frames, rate, world.tmp) as sending:
            run = await bare_ws_run(sending.url, world.url, entries)
            bare_sent = await sending.sent_ns()
        world.flush()
        async with timed_sender(frames, rate, world.tmp) as sending:
            acks = await run_pipeline(
                world, sending.url, sum(len(e) for e in entries), frame_keys(frames)
            )
            ours_sent = await sending.sent_ns()
    probe_us, slow = slow_windows(units)
    steady = steady_windows(units)
    with_events = [i for i, e in enumerate(entries) if e]
    recv, ack = acks.frames()
    per_frame = len(acks.recv_ns) / max(len(recv), 1)
    ours = _side(
        array("q", (ours_sent[i] for i in with_events)),
        recv,
        ack,
        skip,
        rate,
        (acks.cpu_ns, round(acks.cpu_events / per_frame)),
        slow,
        steady,
    )
    bare = _side(
        bare_sent,
        run.recv_ns,
        run.ack_ns,
        skip,
        rate,
        (run.cpu_ns, len(run.ack_ns) - 1),
        slow,
        steady,
    )
    return Latency(
        (ours.p50, ours.p99), (bare.p50, bare.p99), len(recv) - skip, ours, bare, probe_us, slow
    )


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _run_process(world: Bench, subs: dict[str, str]) -> subprocess.Popen[bytes]:
    extra = {f"SCHWAB_{service}": keys for service, keys in subs.items()}
    # Short streams: minutes of 9,000 events/s would otherwise fill Redis with gigabytes.
    extra["SCHWAB_STREAM_MAXLEN"] = "1000"
    return subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "run"],
        env=world.env(**extra),
        cwd=world.tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _published(client: redis.Redis, streams: list[str]) -> int:
    """Events written to `streams`: the seq of each one's newest entry (seq counts from 1)."""
    total = 0
    for stream in streams:
        newest = client.xrevrange(stream, count=1)
        if newest:
            total += decode_event(newest[0][1][b"data"]).seq
    return total


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass(frozen=True)
class Memory:
    peak_mb: float
    early_mb: float  # at the end of the warm-up (minute 2 in full mode)
    final_mb: float
    seconds: float
    events: int


def memory(world: Bench, seconds: float, warmup: float) -> Memory:
    """RSS of `schwab-stream run` streaming 500 level-one symbols and 50 books."""
    symbols = [f"M{i:03d}" for i in range(500)]
    proc = _run_process(
        world,
        {"LEVELONE_EQUITIES": ",".join(symbols), "NASDAQ_BOOK": ",".join(symbols[:50])},
    )
    samples: list[tuple[float, float]] = []
    try:
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            if proc.poll() is not None:
                raise RuntimeError(f"run exited: {proc.stderr.read() if proc.stderr else b''!r}")
            samples.append((elapsed, _rss_mb(proc.pid)))
            time.sleep(1.0)
    finally:
        _stop(proc)
    streams = [f"schwab:tick:{s}" for s in symbols] + [f"schwab:level2:{s}" for s in symbols[:50]]
    with redis.Redis.from_url(world.redis.url) as client:
        events = _published(client, streams)
    early = next(rss for at, rss in samples if at >= warmup)
    return Memory(max(rss for _, rss in samples), early, samples[-1][1], seconds, events)


def startup(world: Bench, runs: int) -> list[float]:
    """Seconds from spawning `schwab-stream run` to its first tick in Redis, per run."""
    times: list[float] = []
    with redis.Redis.from_url(world.redis.url) as client:
        for _ in range(runs):
            client.flushall()
            start = time.perf_counter()
            proc = _run_process(world, {"LEVELONE_EQUITIES": "AAPL"})
            try:
                while not client.xlen("schwab:tick:AAPL"):
                    if proc.poll() is not None or time.perf_counter() - start > 30:
                        raise RuntimeError("run produced no event")
                    time.sleep(0.002)
                times.append(time.perf_counter() - start)
            finally:
                _stop(proc)
    return times
