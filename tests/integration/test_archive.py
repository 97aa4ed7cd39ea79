"""`schwab-stream archive` against a real Redis, with events written by the real publisher: every
entry ends in a Parquet file exactly once through crashes between any two steps, a dead archiver's
work taken over, a full disk, a Redis restart and a SIGTERM; gaps recorded; bad entries kept.
The end-to-end run with the bridge and SIGKILLs is test_archive_e2e.py."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import redis

from schwab_stream.archive import files
from schwab_stream.archive.metrics import ArchiveMetrics
from schwab_stream.archive.runner import ArchiveConfig, Archiver
from schwab_stream.archive.tables import COLUMNS, JSON
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import BarEvent, Event, Level, Level2Event, Maker, TickEvent
from schwab_stream.publish.redis import TradingEventPublisher
from tests.env import clean_env

PREFIX = "schwab"
GROUP = "archive"


# --- writing events and reading the archive back ------------------------------------------------


def tick(symbol: str, seq: int) -> TickEvent:
    return TickEvent(
        service="LEVELONE_EQUITIES",
        symbol=symbol,
        seq=seq,
        schwab_ts=1_749_562_500_000 + seq,
        recv_ns=time.time_ns(),
        bid=100 + seq / 100,
        ask=100.5 + seq / 100,
        bid_size=float(seq % 7 + 1),
        volume=float(1000 + seq),
        changed=["bid", "volume"],
        fields={"description": "x", "delta": seq / 3},
    )


def publish(redis_url: str, events: list[Event], maxlen: int = 100_000) -> None:
    """Write `events` with the bridge's own publisher (its XADD script, its keys)."""

    async def go() -> None:
        pub = TradingEventPublisher(redis_url, prefix=PREFIX, maxlen=maxlen)
        task = asyncio.create_task(pub.run())
        for start in range(0, len(events), 500):
            pub.submit(events[start : start + 500])
            await asyncio.sleep(0)
        assert await pub.flush(20)
        await pub.close()
        await task

    asyncio.run(go())


def read_archive(root: Path) -> dict[str, list[dict[str, Any]]]:
    """Every row of every finished file, per type; timestamps as epoch integers."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(root.glob("type=*/date=*/*.parquet")):
        kind = path.parent.parent.name.removeprefix("type=")
        table = pq.read_table(path)
        ints = pa.schema(
            [
                (f.name, pa.int64() if pa.types.is_timestamp(f.type) else f.type)
                for f in table.schema
            ]
        )
        out.setdefault(kind, []).extend(table.cast(ints).to_pylist())
    return out


def stream_entries(client: redis.Redis) -> dict[tuple[str, str], bytes]:
    """(stream, entry id) -> JSON of every event stream of the prefix."""
    out: dict[tuple[str, str], bytes] = {}
    keys = [k.decode() for k in client.scan_iter(match=f"{PREFIX}:*", _type="stream")]
    for key in keys:
        for entry_id, fields in client.xrange(key):
            out[(key, entry_id.decode())] = fields[b"data"]
    return out


def as_event(kind: str, row: dict[str, Any]) -> dict[str, Any]:
    """A row back as the event's JSON object."""
    event = {k: v for k, v in row.items() if k not in ("stream", "entry_id")}
    for name, _, how in COLUMNS[kind]:
        if how == JSON:
            event[name] = json.loads(event[name])
    return {"type": kind, **event}


def assert_archive_is_the_streams(client: redis.Redis, root: Path) -> int:
    """Every entry of every stream in the archive exactly once, its values those of its JSON;
    nothing left pending in the group. Returns how many."""
    archived = read_archive(root)
    keys = Counter(
        (row["stream"], row["entry_id"])
        for kind, rows in archived.items()
        if kind not in ("gap",)
        for row in rows
    )
    twice = [key for key, n in keys.items() if n > 1]
    assert not twice, f"{len(twice)} entries archived twice: {twice[:5]}"
    expected = stream_entries(client)
    assert set(keys) == set(expected), (
        f"missing {len(set(expected) - set(keys))}, extra {len(set(keys) - set(expected))}"
    )
    for kind, rows in archived.items():
        if kind in ("gap", "unmapped"):
            continue
        for row in rows:
            assert as_event(kind, row) == json.loads(expected[(row["stream"], row["entry_id"])])
    seqs = Counter(
        (row["stream"], row["seq"])
        for kind, rows in archived.items()
        if kind != "gap"
        for row in rows
        if "seq" in row and kind != "status"
    )
    assert max(seqs.values(), default=1) == 1  # every (stream, seq) once
    for key in {k for k, _ in expected}:
        assert client.xpending(key, GROUP)["pending"] == 0, key
    return len(expected)


# --- archivers in this process --------------------------------------------------------------------


class Running:
    """An Archiver on a thread; `stop()` ends it as SIGTERM does."""

    def __init__(self, archiver: Archiver) -> None:
        self.archiver = archiver
        self.stop_event = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.archiver.run(self.stop_event)
        except BaseException as exc:  # the test looks at it
            self.error = exc

    def stop(self, timeout: float = 40.0) -> None:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive()


def make(
    redis_url: str, root: Path, consumer: str, **overrides: Any
) -> tuple[Archiver, redis.Redis]:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    values: dict[str, Any] = {
        "root": root,
        "prefix": PREFIX,
        "group": GROUP,
        "consumer": consumer,
        "roll_seconds": 1.0,
        "roll_events": 5000,
        "dead_seconds": 1.0,
    }
    values.update(overrides)
    return Archiver(client, ArchiveConfig(**values), ArchiveMetrics()), client


@pytest.fixture
def archivers(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., Running]]:
    started: list[Running] = []

    def start(consumer: str, **overrides: Any) -> Running:
        archiver, _ = make(redis_url, tmp_path / "archive", consumer, **overrides)
        running = Running(archiver)
        started.append(running)
        return running

    yield start
    for running in started:
        running.stop_event.set()
        running.thread.join(40)


def wait(predicate: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.05)


def pending(client: redis.Redis) -> int:
    keys = [k.decode() for k in client.scan_iter(match=f"{PREFIX}:*", _type="stream")]
    total = 0
    for key in keys:
        groups = {g["name"].decode(): g for g in client.xinfo_groups(key)}
        total += groups[GROUP]["pending"] if GROUP in groups else 10**9
    return total


def all_read(client: redis.Redis) -> bool:
    """Every entry of every stream delivered to the group, none pending."""
    keys = [k.decode() for k in client.scan_iter(match=f"{PREFIX}:*", _type="stream")]
    for key in keys:
        groups = {g["name"].decode(): g for g in client.xinfo_groups(key)}
        last = client.xrevrange(key, count=1)
        group = groups.get(GROUP)
        if group is None or group["pending"] or group["last-delivered-id"] != last[0][0]:
            return False
    return True


# --- the tests ------------------------------------------------------------------------------------


def test_events_of_every_type_are_archived_typed_and_acknowledged(
    redis_url: str, tmp_path: Path, archivers: Callable[..., Running]
) -> None:
    book = Level2Event(
        service="NASDAQ_BOOK",
        symbol="MSFT",
        seq=1,
        recv_ns=time.time_ns(),
        venue="NASDAQ",
        bids=[Level(181.77, 100, 1, [Maker("edgx", 100, 63150257)])],
    )
    bar = BarEvent(
        service="CHART_EQUITY", symbol="AAPL", seq=1, recv_ns=time.time_ns(), start=1, volume=26.0
    )
    publish(redis_url, [tick("AAPL", i) for i in range(1, 301)] + [book, bar])
    client = redis.Redis.from_url(redis_url)
    running = archivers("a")
    wait(lambda: all_read(client))
    # a stream that appears while it runs is found, and an entry no schema takes is kept raw
    publish(redis_url, [tick("NVDA", 1), tick("NVDA", 2)])
    client.xadd(f"{PREFIX}:tick:NVDA", {"data": b'{"type": "tick", "bid": "cheap"}'})
    wait(lambda: all_read(client) and "unmapped" in read_archive(tmp_path / "archive"))
    running.stop()
    assert running.error is None
    assert assert_archive_is_the_streams(client, tmp_path / "archive") == 305
    [raw] = read_archive(tmp_path / "archive")["unmapped"]
    assert raw["data"] == b'{"type": "tick", "bid": "cheap"}' and "bid" in raw["error"]
    assert running.archiver.metrics.unmapped._value.get() == 1
    files_ = list((tmp_path / "archive").glob("type=*/date=*/*.parquet"))
    assert {p.parent.parent.name for p in files_} >= {"type=tick", "type=level2", "type=bar"}
    assert all(pq.read_metadata(p).row_group(0).column(0).compression == "ZSTD" for p in files_)
    assert not list((tmp_path / "archive" / "_tmp").rglob("*.parquet"))


class Crash(BaseException):
    """The process dies here (as a SIGKILL would)."""


def test_a_crash_after_the_rename_before_the_ack_writes_nothing_twice(
    redis_url: str, tmp_path: Path, archivers: Callable[..., Running]
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 501)])
    client = redis.Redis.from_url(redis_url)
    first = archivers("first")

    def die(*args: Any, **kwargs: Any) -> None:
        raise Crash

    first.archiver.claims.done = die  # type: ignore[method-assign]
    wait(lambda: first.error is not None)
    assert isinstance(first.error, Crash)
    assert pending(client) == 500  # the file is in place, nothing acknowledged
    assert len(read_archive(tmp_path / "archive")["tick"]) == 500
    second = archivers("second")
    wait(lambda: pending(client) == 0)
    second.stop()
    assert assert_archive_is_the_streams(client, tmp_path / "archive") == 500
    assert second.archiver.metrics.claimed._value.get() == 0  # acknowledged from the file


def test_a_crash_before_the_rename_leaves_the_entries_to_the_next_archiver(
    redis_url: str, tmp_path: Path, archivers: Callable[..., Running], monkeypatch: Any
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 301)])
    client = redis.Redis.from_url(redis_url)
    first = archivers("first")
    real_publish = files.publish

    def die(temp: Path, final: Path) -> None:
        if threading.current_thread() is first.thread:
            raise Crash
        real_publish(temp, final)

    monkeypatch.setattr(files, "publish", die)
    wait(lambda: first.error is not None)
    assert list((tmp_path / "archive" / "_tmp" / "first").glob("*.parquet"))  # written aside
    assert not read_archive(tmp_path / "archive")
    second = archivers("second")
    wait(lambda: pending(client) == 0)
    second.stop()
    assert assert_archive_is_the_streams(client, tmp_path / "archive") == 300
    assert second.archiver.metrics.claimed._value.get() == 300
    assert not (tmp_path / "archive" / "_tmp" / "first").exists()


def test_a_silent_archiver_taken_over_cannot_put_its_file_in_place(
    redis_url: str, tmp_path: Path, archivers: Callable[..., Running]
) -> None:
    """The fence: an archiver paused (not dead) past the dead time after its intent and before
    its rename finds its temp file gone and stops; its entries are in the archive once."""
    publish(redis_url, [tick("AAPL", i) for i in range(1, 201)])
    root = tmp_path / "archive"
    silent, client = make(redis_url, root, "silent")
    files.check_folder(root)
    silent.claims.register()
    silent.source.discover()
    for delivery in silent.source.read(1000):
        silent.take(delivery.stream, delivery.entries, delivery.prev_seq)
    [segment] = silent.roller.drain()
    name = segment.file_name("silent")
    relative = f"{segment.partition()}/{name}"
    temp = files.temp_dir(root, "silent") / name
    from schwab_stream.archive import tables

    files.write_aside(tables.table(segment.kind, segment.parts), temp)
    assert silent.claims.intend(relative)
    # ... and it pauses past SCHWAB_ARCHIVE_DEAD_SECONDS
    other = archivers("other")
    wait(lambda: pending(client) == 0 and read_archive(root))
    other.stop()
    with pytest.raises(Exception, match="took this one's entries over"):
        files.publish(temp, root / relative)
    assert not silent.claims.heartbeat()
    assert not silent.claims.intend(relative)
    assert assert_archive_is_the_streams(client, root) == 200


def test_entries_trimmed_before_the_archive_read_them_are_a_gap_record(
    redis_url: str, tmp_path: Path, archivers: Callable[..., Running], caplog: Any
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 11)], maxlen=100)
    client = redis.Redis.from_url(redis_url)
    first = archivers("first")
    wait(lambda: all_read(client))
    first.stop()
    # the archiver is down while 5,000 more are written to a stream capped near 100
    publish(redis_url, [tick("AAPL", i) for i in range(11, 5011)], maxlen=100)
    oldest = json.loads(client.xrange(f"{PREFIX}:tick:AAPL", count=1)[0][1][b"data"])["seq"]
    assert oldest > 11
    second = archivers("second")
    wait(lambda: all_read(client))
    second.stop()
    [gap] = read_archive(tmp_path / "archive")["gap"]
    assert (gap["stream"], gap["after_seq"], gap["seq"]) == (f"{PREFIX}:tick:AAPL", 10, oldest)
    assert gap["missing"] == oldest - 11
    assert second.archiver.metrics.missing._value.get() == oldest - 11
    assert f"{oldest - 11} entries were trimmed before the archive read them" in caplog.text
    seqs = sorted(r["seq"] for r in read_archive(tmp_path / "archive")["tick"])
    assert seqs == [*range(1, 11), *range(oldest, 5011)]


def test_a_full_disk_acknowledges_nothing_and_resumes_when_space_returns(
    redis_url: str, tmp_path: Path, archivers: Callable[..., Running], monkeypatch: Any
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 301)])
    client = redis.Redis.from_url(redis_url)
    full = threading.Event()
    full.set()
    real = files.write_aside

    def write_aside(table: pa.Table, temp: Path) -> int:
        if full.is_set():
            raise OSError(28, "No space left on device", str(temp))
        return real(table, temp)

    monkeypatch.setattr(files, "write_aside", write_aside)
    running = archivers("a")
    metrics = running.archiver.metrics
    wait(lambda: metrics.write_errors.labels("disk_full")._value.get() >= 3)
    publish(redis_url, [tick("AAPL", i) for i in range(301, 401)])  # arrives meanwhile
    time.sleep(1.5)
    assert metrics.blocked._value.get() == 1
    assert pending(client) == 300  # read before the disk filled: pending, not acknowledged
    assert not read_archive(tmp_path / "archive")
    full.clear()
    wait(lambda: all_read(client))
    running.stop()
    assert metrics.blocked._value.get() == 0
    assert assert_archive_is_the_streams(client, tmp_path / "archive") == 400


def test_a_redis_restart_loses_nothing_it_held(
    redis_url: str, redis_server: EmbeddedRedis, tmp_path: Path, archivers: Callable[..., Running]
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 101)])
    running = archivers("a", roll_seconds=3.0)
    client = redis.Redis.from_url(redis_url)
    wait(lambda: running.archiver.roller.held == 100)
    redis_server.kill()
    time.sleep(1.0)
    redis_server.start()  # an empty Redis: the group and the streams are gone
    wait(lambda: running.archiver.metrics.redis_up._value.get() == 1)
    publish(redis_url, [tick("AAPL", i) for i in range(1, 51)])  # a new bridge, from seq 1
    wait(lambda: all_read(client))
    running.stop()
    assert running.error is None
    rows = read_archive(tmp_path / "archive")["tick"]
    assert len(rows) == 150  # the 100 it held before, the 50 after
    assert Counter(r["entry_id"] for r in rows).most_common(1)[0][1] == 1


def archive_process(redis_url: str, out: Path, **settings: str) -> subprocess.Popen[str]:
    defaults = {"SCHWAB_ARCHIVE_ROLL_SECONDS": "1", "SCHWAB_ARCHIVE_DEAD_SECONDS": "1"}
    env = clean_env(REDIS_URL=redis_url, SCHWAB_LOG_FORMAT="json", **{**defaults, **settings})
    return subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "archive", "--out", str(out)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigterm_mid_file_finishes_it_and_acknowledges_everything(
    redis_url: str, tmp_path: Path
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 1001)])
    client = redis.Redis.from_url(redis_url)
    proc = archive_process(redis_url, tmp_path / "a", SCHWAB_ARCHIVE_ROLL_SECONDS="3600")
    wait(lambda: client.exists(f"{PREFIX}:tick:AAPL") and pending(client) == 1000)
    assert not read_archive(tmp_path / "a")  # all in the open file
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "every entry read is in a durable file and acknowledged" in err
    assert assert_archive_is_the_streams(client, tmp_path / "a") == 1000


def test_a_stop_right_after_a_read_archives_what_it_handed_out(
    redis_url: str, tmp_path: Path
) -> None:
    """The loop reads the next entries while it takes those of the read before: a stop right
    after a read still archives and acknowledges what that read handed to this archiver."""
    publish(redis_url, [tick("AAPL", i) for i in range(1, 301)])
    archiver, client = make(redis_url, tmp_path / "a", "a", roll_seconds=3600.0)
    files.check_folder(tmp_path / "a")
    archiver.claims.register()
    archiver.step()  # the read is in hand, to be taken by the next step
    assert pending(client) == 300 and archiver.roller.held == 0
    stop = threading.Event()
    stop.set()
    archiver.run(stop)
    assert assert_archive_is_the_streams(client, tmp_path / "a") == 300


def test_an_unwritable_folder_exits_2_naming_it(redis_url: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = archive_process(redis_url, blocker / "archive")
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert f"schwab-stream archive: cannot write the archive folder {blocker / 'archive'}" in err


def test_stats_say_what_the_folder_holds(redis_url: str, tmp_path: Path) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 101)] + [tick("MSFT", 1)])
    client = redis.Redis.from_url(redis_url)
    proc = archive_process(redis_url, tmp_path / "a")
    wait(lambda: client.exists(f"{PREFIX}:tick:AAPL") and all_read(client))
    proc.terminate()
    proc.communicate(timeout=30)
    out = subprocess.run(
        [sys.executable, "-m", "schwab_stream", "archive", "--stats", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        env=clean_env(),
        check=True,
    ).stdout
    [line] = [x for x in out.splitlines() if " tick " in x]
    cells = line.split()
    assert cells[1:5] == ["tick", cells[2], "101", "2"]
    assert "total:" in out
