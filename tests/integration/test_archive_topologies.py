"""`schwab-stream archive` behind Sentinel and on a Redis Cluster (#18, #19): every entry in the
Parquet files exactly once while the bridge's publisher writes, through a primary failover, an
archiver SIGKILLed and started again, two archivers sharing the group, a read whose reply was
lost, and a crash between the acknowledgements and the intent's removal."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError, RedisClusterException, RedisError
from redis.retry import Retry

from schwab_stream.archive import files
from schwab_stream.archive.metrics import ArchiveMetrics
from schwab_stream.archive.pipes import OnePipe
from schwab_stream.archive.runner import ArchiveConfig, Archiver
from schwab_stream.archive.source import READ, text
from schwab_stream.events import BarEvent, Event, status_event
from schwab_stream.publish.redis import TradingEventPublisher
from schwab_stream.redis_client import sync_redis, topology
from tests.topologies import Cluster, sentinel_set

from .test_archive import (
    GROUP,
    PREFIX,
    Running,
    archive_process,
    as_event,
    publish,
    read_archive,
    tick,
    wait,
)

SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY", "AMD", "TSLA"]


class Writer:
    """The bridge's publisher (cluster mode from the URL) on a thread: ticks of `symbols`, a bar
    and a status event now and then, until `stop()`, which waits until all is in Redis."""

    def __init__(self, url: str, symbols: list[str], rate: float = 100.0) -> None:
        self.url = url
        self.symbols = symbols
        self.rate = rate
        self.written = 0
        self.flushed: bool | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        pub = TradingEventPublisher(self.url, prefix=PREFIX, maxlen=100_000)
        task = asyncio.create_task(pub.run())
        seq = 0
        while not self._stop.is_set():
            seq += 1
            events: list[Event] = [tick(symbol, seq) for symbol in self.symbols]
            if seq % 20 == 0:
                start = seq // 20
                events.append(
                    BarEvent(
                        service="CHART_EQUITY",
                        symbol="AAPL",
                        seq=start,
                        recv_ns=time.time_ns(),
                        start=start,
                        volume=1.0,
                    )
                )
                events.append(status_event("subscribed", f"round {seq}"))
            pub.submit(events)
            self.written += len(events)
            await asyncio.sleep(1 / self.rate)
        self.flushed = await pub.flush(60)
        await pub.close()
        await task

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(90)
        assert self.flushed, "the publisher did not get everything into Redis"


def event_streams(client: Any) -> list[str]:
    """The prefix's event streams on any topology (`{PREFIX}:status` on a cluster)."""
    keys = {text(k) for k in client.scan_iter(match=f"{PREFIX}:*", _type="stream")}
    for single in ("status", "account"):
        for key in (f"{PREFIX}:{single}", f"{{{PREFIX}}}:{single}"):
            if client.exists(key):
                keys.add(key)
    return sorted(keys)


def all_read(client: Any) -> bool:
    """Every entry of every stream delivered to the group and acknowledged (False while Redis
    does not answer)."""
    try:
        for key in event_streams(client):
            groups = {g["name"].decode(): g for g in client.xinfo_groups(key)}
            last = client.xrevrange(key, count=1)
            group = groups.get(GROUP)
            if group is None or group["pending"] or group["last-delivered-id"] != last[0][0]:
                return False
    except (RedisError, RedisClusterException):
        return False
    return True


def assert_exactly_once(client: Any, root: Path) -> int:
    """Every entry of every stream in the archive once, with its JSON's values, and each
    (stream, seq) as often as in the stream; nothing pending. Returns how many."""
    archived = read_archive(root)
    got = Counter(
        (row["stream"], row["entry_id"])
        for kind, rows in archived.items()
        if kind != "gap"
        for row in rows
    )
    twice = [key for key, n in got.items() if n > 1]
    assert not twice, f"{len(twice)} entries archived twice: {twice[:5]}"
    expected: dict[tuple[str, str], bytes] = {}
    for key in event_streams(client):
        for entry_id, fields in client.xrange(key):
            expected[(key, text(entry_id))] = fields[b"data"]
    missing, extra = set(expected) - set(got), set(got) - set(expected)
    assert not missing and not extra, f"missing {sorted(missing)[:5]}, extra {sorted(extra)[:5]}"
    for kind, rows in archived.items():
        for row in rows if kind not in ("gap", "unmapped") else []:
            assert as_event(kind, row) == json.loads(expected[(row["stream"], row["entry_id"])])
    seqs = Counter(
        (row["stream"], row["seq"])
        for kind, rows in archived.items()
        if kind not in ("gap", "unmapped")
        for row in rows
    )
    assert seqs == Counter((s, json.loads(data)["seq"]) for (s, _), data in expected.items())
    for key in {k for k, _ in expected}:
        assert client.xpending(key, GROUP)["pending"] == 0, key
    return len(expected)


def client_for(url: str) -> Any:
    """A client as the archive command makes it: nothing sent again by redis-py."""
    return sync_redis(url, socket_timeout=5, retry=Retry(NoBackoff(), 0))


def archiver(url: str, root: Path, consumer: str) -> Archiver:
    config = ArchiveConfig(
        root=root,
        prefix=PREFIX,
        group=GROUP,
        consumer=consumer,
        roll_seconds=1.0,
        roll_events=5000,
        dead_seconds=1.0,
    )
    return Archiver(client_for(url), config, ArchiveMetrics(), kind=topology(url).kind)


def files_written(root: Path) -> list[Path]:
    return list(root.glob("type=*/date=*/*.parquet"))


def stop_all(procs: list[Any]) -> list[str]:
    """SIGTERM each archiver process; each must exit 0. Their logs."""
    logs = []
    for proc in procs:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        logs.append(err)
    return logs


# --- Sentinel -----------------------------------------------------------------------------------


def test_the_archive_follows_a_sentinel_failover_and_archives_every_entry_once(
    tmp_path: Path,
) -> None:
    with sentinel_set() as sentinels:
        writer = Writer(sentinels.url, SYMBOLS[:3])
        archive_through_a_failover(
            sentinels.url,
            writer,
            tmp_path / "archive",
            200,
            sentinels.kill_primary_and_wait_failover,
            f"{PREFIX}:tick:AAPL",
        )


def archive_through_a_failover(
    url: str, writer: Writer, out: Path, roll: int, fail: Callable[[], None], key: str
) -> None:
    """Archive what `writer` writes while `fail()` replaces a primary; new entries in `key`
    say the writer goes on; then every entry is in the archive once."""
    client = client_for(url)
    proc = archive_process(url, out, SCHWAB_ARCHIVE_ROLL_EVENTS=str(roll))
    try:
        wait(lambda: len(files_written(out)) >= 3, timeout=30)
        fail()
        wait(lambda: _xlen_grows(client, key), timeout=30)
        writer.stop()
        wait(lambda: all_read(client), timeout=60)
        [err] = stop_all([proc])
        assert "Redis is unavailable" in err and "Redis is back" in err
        assert assert_exactly_once(client, out) > 500
    finally:
        proc.kill()
        proc.communicate()
        client.close()


def _xlen_grows(client: Any, key: str) -> bool:
    """New entries arrive in `key` (the writer writes to the new primary)."""
    try:
        before = client.xlen(key)
        time.sleep(1.5)
        return bool(client.xlen(key) > before)
    except (RedisError, RedisClusterException):
        return False


# --- Cluster --------------------------------------------------------------------------------------


def test_on_a_cluster_killed_and_sharing_archivers_archive_every_entry_once(
    cluster: Cluster, tmp_path: Path
) -> None:
    out = tmp_path / "archive"
    writer = Writer(cluster.url, SYMBOLS)
    client = client_for(cluster.url)
    procs = []
    try:
        first = archive_process(cluster.url, out, SCHWAB_ARCHIVE_ROLL_EVENTS="300")
        procs.append(first)
        wait(lambda: len(files_written(out)) >= 3, timeout=30)
        time.sleep(0.3)  # (mid-file, most likely)
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=10)
        sharing = [
            archive_process(cluster.url, out, SCHWAB_ARCHIVE_ROLL_EVENTS="300") for _ in range(2)
        ]
        procs += sharing
        before = len(files_written(out))
        wait(lambda: len(files_written(out)) >= before + 6, timeout=30)
        writer.stop()
        wait(lambda: all_read(client), timeout=60)
        logs = stop_all(sharing)
        assert any("took over archiver" in log for log in logs)
        assert assert_exactly_once(client, out) > 1000
        names = [p.name for p in files_written(out)]
        for proc in sharing:  # both wrote files (their pid is in each file's name)
            assert any(f"-{proc.pid}-" in name for name in names), proc.pid
        kinds = {p.parent.parent.name for p in files_written(out)}
        assert kinds >= {"type=tick", "type=bar", "type=status"}
        nodes = {client.get_node_from_key(k).name for k in event_streams(client)}
        assert len(nodes) >= 2  # the streams were spread over the nodes
    finally:
        for proc in procs:
            proc.kill()
            proc.communicate()
        client.close()


def test_on_a_cluster_a_primary_failover_while_archiving_loses_nothing_and_writes_nothing_twice(
    tmp_path: Path,
) -> None:
    cluster = Cluster(replicas=True)
    try:
        key = f"{PREFIX}:tick:{{AAPL}}"
        writer = Writer(cluster.url, SYMBOLS)
        archive_through_a_failover(
            cluster.url,
            writer,
            tmp_path / "archive",
            300,
            lambda: cluster.kill_primary_of(key),
            key,
        )
    finally:
        cluster.stop()


def test_a_url_of_the_wrong_kind_is_one_line_without_a_traceback(
    cluster: Cluster, redis_url: str, tmp_path: Path
) -> None:
    standalone_port = redis_url.rsplit(":", 1)[1].split("/")[0]
    cases = {
        f"redis://127.0.0.1:{cluster.nodes[0].port}/0": (2, "use a redis+cluster:// URL"),
        f"redis+cluster://127.0.0.1:{standalone_port}": (1, "no usable Redis Cluster"),
    }
    for url, (code, said) in cases.items():
        proc = archive_process(url, tmp_path / "archive")
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        assert said in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


class Crash(BaseException):
    """The process dies here (as a SIGKILL would)."""


def test_on_a_cluster_a_crash_after_the_acks_before_the_intent_is_dropped_writes_nothing_twice(
    cluster: Cluster, tmp_path: Path
) -> None:
    """A file's entries span slots: acknowledged per node, then the intent dropped. Dying
    between the two leaves the intent; the next archiver acknowledges the file's entries again
    (nothing happens) and claims nothing."""
    publish(cluster.url, [tick(s, i) for s in SYMBOLS for i in range(1, 101)])
    client = client_for(cluster.url)
    root = tmp_path / "archive"
    first = archiver(cluster.url, root, "first")

    def die(*args: Any, **kwargs: Any) -> None:
        raise Crash

    first.claims.client.srem = die  # type: ignore[method-assign,assignment]
    crashed = Running(first)
    wait(lambda: crashed.error is not None)
    assert isinstance(crashed.error, Crash)
    intents = first.claims.keys.intents("first")
    [relative] = client.smembers(intents)  # the intent is still there ...
    for stream, ids in files.entry_ids(root / text(relative)).items():
        pending = client.xpending_range(stream, GROUP, min="-", max="+", count=10_000)
        assert not {text(p["message_id"]) for p in pending} & set(ids)  # ... its file acked
    second = Running(archiver(cluster.url, root, "second"))
    wait(lambda: not client.exists(intents) and all_read(client))
    second.stop()
    assert second.error is None
    assert assert_exactly_once(client, root) > 0


# --- a lost reply ---------------------------------------------------------------------------------


class LostReplies(OnePipe):
    """Sends, and then loses every reply (the connection failed after Redis ran it all)."""

    def send(self, commands: Any) -> list[Any]:
        super().send(commands)
        return [ConnectionError("Connection reset by peer")] * len(commands)


def test_a_read_whose_reply_was_lost_is_read_again_from_the_pending_list_once(
    redis_url: str, tmp_path: Path
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 301)])
    client: Any = redis.Redis.from_url(redis_url)
    ids = [text(entry_id) for entry_id, _ in client.xrange(f"{PREFIX}:tick:AAPL")]
    source = archiver(redis_url, tmp_path / "archive", "a").source
    source.discover()
    client.script_load(READ)
    pipes = source.pipes
    source.pipes = LostReplies(client)
    with pytest.raises(ConnectionError):
        source.read(100)
    assert client.xpending(f"{PREFIX}:tick:AAPL", GROUP)["pending"] == 100  # handed out, unseen
    source.handed.claim(f"{PREFIX}:tick:AAPL", ids[90:95])  # as if claimed from a dead one
    source.pipes = pipes
    first = source.read(100)
    assert [e.entry_id for d in first for e in d.entries] == ids[:90] + ids[95:200]
    assert first[0].prev_seq is None  # (not known for what was read again)
    assert [e.entry_id for d in source.read(100) for e in d.entries] == ids[200:300]
    assert source.read(100) == []
