"""The publisher's cluster write path (#18) on a real cluster: one EVALSHA per hash tag that sets
the tag's latest values too (no MSET), on connections of its own per primary; and every bar once,
in order, and no quote twice or back in time, through a script flush, a slot migrated to another
node mid-stream (MOVED, ASK) and a primary's failover."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from schwab_stream.events import BarEvent, Event, StatusEvent, TickEvent, decode_event
from schwab_stream.publish.redis import TradingEventPublisher
from schwab_stream.redis_client import cluster_redis
from tests.conftest import Server
from tests.topologies import Cluster

SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY", "AMD", "TSLA"]


@pytest.fixture
def cluster(redis_binary: Server | None, cluster: Cluster) -> Cluster:
    """conftest's cluster, on each server the suite runs (`redis_binary` makes these tests
    parametrized ones)."""
    return cluster


@pytest.fixture
def cluster_with_replicas(redis_binary: Server | None) -> Iterator[Cluster]:
    made = Cluster(replicas=True)
    try:
        yield made
    finally:
        made.stop()


def tick(symbol: str, seq: int) -> TickEvent:
    return TickEvent(
        service="LEVELONE_EQUITIES", symbol=symbol, seq=seq, recv_ns=time.time_ns(), last=seq
    )


def bar(symbol: str, seq: int) -> BarEvent:
    return BarEvent(service="CHART_EQUITY", symbol=symbol, seq=seq, recv_ns=time.time_ns())


class Feed:
    """Ticks and bars of every symbol, one of each per symbol per round, into a publisher."""

    def __init__(self, pub: TradingEventPublisher) -> None:
        self.pub = pub
        self.rounds = 0

    def send(self, rounds: int) -> None:
        for _ in range(rounds):
            self.rounds += 1
            n = self.rounds
            self.pub.submit([e for s in SYMBOLS for e in (tick(s, n), bar(s, n))])

    async def run_while(self, busy: asyncio.Future[Any]) -> None:
        """A round every few ms until `busy` is done, and a few more after it."""
        while not busy.done():
            self.send(1)
            await asyncio.sleep(0.003)
        self.send(20)


async def check_streams(url: str, rounds: int) -> None:
    """Every bar once, in order; quotes never twice nor back in time; the newest quote last."""
    client = cluster_redis(url)
    try:
        for symbol in SYMBOLS:
            bars = [e.seq for e in await read(client, f"t:bar:{{{symbol}}}")]
            assert bars == list(range(1, rounds + 1)), symbol
            ticks = [e.seq for e in await read(client, f"t:tick:{{{symbol}}}")]
            assert ticks == sorted(set(ticks)) and ticks[-1] == rounds, symbol
            latest = decode_event(await client.get(f"t:latest:tick:{{{symbol}}}"))
            assert isinstance(latest, TickEvent) and latest.seq == rounds
    finally:
        await client.aclose()


async def read(client: object, key: str) -> list[Event]:
    entries = await client.xrange(key)  # type: ignore[attr-defined]
    return [decode_event(fields[b"data"]) for _, fields in entries]


def command_calls(cluster: Cluster) -> dict[str, int]:
    """Calls per command over the primaries (INFO commandstats)."""
    calls: dict[str, int] = {}
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as client:
            for name, stats in client.info("commandstats").items():
                command = name.removeprefix("cmdstat_")
                calls[command] = calls.get(command, 0) + int(stats["calls"])
    return calls


async def test_a_flight_is_one_script_per_symbol_that_sets_its_latest_values_too(
    cluster: Cluster,
) -> None:
    pub = TradingEventPublisher(cluster.url, prefix="t")
    task = asyncio.create_task(pub.run())
    feed = Feed(pub)
    feed.send(1)
    assert await pub.flush(10)
    before = command_calls(cluster)
    for _ in range(10):
        feed.send(1)
        assert await pub.flush(10)
    after = command_calls(cluster)
    await pub.close()
    await task
    scripts = after.get("evalsha", 0) - before.get("evalsha", 0)
    assert scripts == 10 * len(SYMBOLS)  # one per symbol per flight
    assert after.get("eval", 0) == before.get("eval", 0)  # no script text sent again
    # The servers count the MSET each script runs: none besides those
    assert after.get("mset", 0) - before.get("mset", 0) <= scripts
    await check_streams(cluster.url, feed.rounds)


async def test_a_script_flush_mid_stream_loses_nothing(cluster: Cluster) -> None:
    pub = TradingEventPublisher(cluster.url, prefix="t")
    task = asyncio.create_task(pub.run())
    feed = Feed(pub)
    feed.send(5)
    assert await pub.flush(10)
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as client:
            client.script_flush()
    feed.send(5)
    assert await pub.flush(20)
    await pub.close()
    await task
    await check_streams(cluster.url, feed.rounds)


def migrate_slot(cluster: Cluster, key: str) -> tuple[int, int]:
    """Move `key`'s slot (keys and all) to another primary as `redis-cli --cluster reshard`
    does: IMPORTING / MIGRATING, MIGRATE of its keys, then SETSLOT NODE on every primary.
    Returns the ports it moved from and to."""
    clients = {n.port: redis.Redis(port=n.port) for n in cluster.nodes}
    try:
        first = clients[cluster.nodes[0].port]
        slot = int(first.execute_command("CLUSTER", "KEYSLOT", key))
        source = next(
            int(primary[1])
            for start, end, primary, *_ in first.execute_command("CLUSTER", "SLOTS")
            if start <= slot <= end
        )
        target = next(p for p in clients if p != source)
        ids = {p: c.execute_command("CLUSTER", "MYID").decode() for p, c in clients.items()}
        clients[target].execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", ids[source])
        clients[source].execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", ids[target])
        while keys := clients[source].execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
            clients[source].execute_command(
                "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys
            )
        time.sleep(0.2)  # writes meet the slot half moved (its keys gone: ASK) a while
        for client in (clients[target], clients[source], *clients.values()):
            client.execute_command("CLUSTER", "SETSLOT", slot, "NODE", ids[target])
        return source, target
    finally:
        for client in clients.values():
            client.close()


async def test_a_slot_moved_to_another_node_mid_stream_keeps_every_stream_in_order(
    cluster: Cluster,
) -> None:
    pub = TradingEventPublisher(cluster.url, prefix="t")
    task = asyncio.create_task(pub.run())
    feed = Feed(pub)
    feed.send(5)
    assert await pub.flush(10)
    moving = asyncio.ensure_future(asyncio.to_thread(migrate_slot, cluster, "{AAPL}"))
    await feed.run_while(moving)
    source, target = moving.result()
    assert await pub.flush(30)
    assert pub.redis_ok
    await pub.close()
    await task
    with redis.Redis(port=target) as client:  # the symbol's keys all moved, and live there
        assert client.exists("t:bar:{AAPL}", "t:latest:tick:{AAPL}", "t:written:{AAPL}") == 3
    with redis.Redis(port=source) as client:
        slot = client.execute_command("CLUSTER", "KEYSLOT", "{AAPL}")
        assert client.execute_command("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    await check_streams(cluster.url, feed.rounds)


async def test_a_primarys_failover_resumes_on_its_replica_in_order(
    cluster_with_replicas: Cluster,
) -> None:
    """What the old primary had not copied to its replica is gone with it (as with Sentinel):
    the bars written after the failover are all there once, in order, and no stream goes back."""
    cluster = cluster_with_replicas
    pub = TradingEventPublisher(cluster.url, prefix="t")
    task = asyncio.create_task(pub.run())
    feed = Feed(pub)
    feed.send(5)
    assert await pub.flush(10)
    failover = asyncio.ensure_future(asyncio.to_thread(cluster.kill_primary_of, "t:bar:{AAPL}"))
    await feed.run_while(failover)
    failover.result()
    first_after = feed.rounds + 1
    feed.send(10)
    assert await pub.flush(30)
    assert pub.redis_ok
    await pub.close()
    await task
    client = cluster_redis(cluster.url)
    try:
        for symbol in SYMBOLS:
            bars = [e.seq for e in await read(client, f"t:bar:{{{symbol}}}")]
            assert bars == sorted(set(bars)) and bars[-1] == feed.rounds, symbol
            assert set(range(first_after, feed.rounds + 1)) <= set(bars), symbol
        statuses = [e for e in await read(client, "{t}:status") if isinstance(e, StatusEvent)]
    finally:
        await client.aclose()
    gaps = [s for s in statuses if s.state == "gap"]
    assert gaps and "replaced by" in str(gaps[-1].info.get("failover", ""))


def acl_on_every_node(cluster: Cluster, *rules: str) -> None:
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as client:
            client.execute_command("ACL", "SETUSER", "bridge", *rules)


async def test_a_latest_value_the_script_may_not_set_waits_and_is_set_once_allowed(
    cluster: Cluster,
) -> None:
    """A user that may run the script and XADD but not MSET: the script writes the entries once,
    reports its MSET refused (a gap for every stream, as a refused MSET is), and once MSET is
    allowed the latest keys hold the newest values, with no new event to carry them."""
    acl_on_every_node(cluster, "on", ">pw", "~*", "&*", "+@all", "-mset")
    hosts = cluster.url.removeprefix("redis+cluster://")
    pub = TradingEventPublisher(f"redis+cluster://bridge:pw@{hosts}", prefix="t")
    task = asyncio.create_task(pub.run())
    feed = Feed(pub)
    client = cluster_redis(cluster.url)
    try:
        feed.send(1)
        await asyncio.wait_for(_until_refused(pub), 10)
        feed.send(2)
        await asyncio.sleep(0.3)
        assert not pub.redis_ok and await client.get("t:latest:tick:{AAPL}") is None
        acl_on_every_node(cluster, "+mset")
        assert await pub.flush(15)
        assert pub.redis_ok
        for symbol in SYMBOLS:
            bars = [e.seq for e in await read(client, f"t:bar:{{{symbol}}}")]
            assert bars == [1, 2, 3], symbol
            latest = decode_event(await client.get(f"t:latest:tick:{{{symbol}}}"))
            assert isinstance(latest, TickEvent) and latest.seq == 3
        statuses = [e for e in await read(client, "{t}:status") if isinstance(e, StatusEvent)]
        assert any("NOPERM" in str(s.info.get("reason")) for s in statuses if s.state == "gap")
    finally:
        await client.aclose()
        await pub.close()
        await task


async def _until_refused(pub: TradingEventPublisher) -> None:
    while pub.stats.redis_errors == 0:
        await asyncio.sleep(0.01)
