"""The bridge on a Redis Cluster (#18): every command touches one slot (hash tags per symbol),
events land in their keys across the nodes, and live subscriptions and back-fill work. A cluster
URL on a standalone server (and the reverse), or slots not covered: one line, /healthz 503 with
the cause, and the bridge resumes, nothing lost, when the right topology answers."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from schwab_stream.control import ResultKind, SubscriptionControl
from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import BarEvent, StatusEvent, TickEvent, decode_event
from schwab_stream.redis_client import cluster_redis
from schwab_stream.sim.server import SimThread
from tests.env import clean_env
from tests.topologies import Cluster, cluster_port

from .fault_helpers import Bridges, assert_contiguous
from .health_helpers import said_once, wait_healthz, watched
from .pipeline_helpers import sim_post, wait_for

SYMBOLS = ["AAPL", "MSFT", "NVDA", "SPY", "AMD", "TSLA"]
EVENTS_MD = Path(__file__).resolve().parents[2] / "docs" / "events.md"


async def test_streams_into_a_three_primary_cluster(
    cluster: Cluster, sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20, time_scale=60)
    subs = {"LEVELONE_EQUITIES": SYMBOLS, "CHART_EQUITY": ["AAPL"]}
    bridge = await bridges.start(sim, subs, redis_url=cluster.url)
    client = cluster_redis(cluster.url)
    try:
        for symbol in SYMBOLS:
            await wait_for(lambda s=symbol: _xlen(client, f"schwab:tick:{{{s}}}", 5), timeout=20)
        nodes = set()
        for symbol in SYMBOLS:
            key = f"schwab:tick:{{{symbol}}}"
            nodes.add(client.get_node_from_key(key).name)
            entries = await client.xrange(key)
            ticks = [decode_event(fields[b"data"]) for _, fields in entries]
            assert all(isinstance(t, TickEvent) and t.symbol == symbol for t in ticks)
            seqs = [t.seq for t in ticks]
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # nothing lost or twice
            assert await client.get(f"schwab:latest:tick:{{{symbol}}}")
        assert len(nodes) >= 2  # the symbols spread over the nodes
        await wait_for(lambda: _xlen(client, "schwab:bar:{AAPL}", 3), timeout=20)
        bars = [decode_event(f[b"data"]) for _, f in await client.xrange("schwab:bar:{AAPL}")]
        starts = [b.start for b in bars if isinstance(b, BarEvent)]
        assert starts == sorted(set(starts))
        statuses = [decode_event(f[b"data"]) for _, f in await client.xrange("{schwab}:status")]
        assert "subscribed" in [s.state for s in statuses if isinstance(s, StatusEvent)]

        async with SubscriptionControl(cluster.url, holder="on-cluster") as control:
            result = await control.subscribe({"LEVELONE_EQUITIES": ["QQQ"]})
            assert result.kind is ResultKind.APPLIED, result.detail
        await wait_for(lambda: _xlen(client, "schwab:tick:{QQQ}", 3), timeout=20)
    finally:
        await client.aclose()
        assert await bridge.stop() == 0


async def _xlen(client: object, key: str, n: int) -> bool:
    return int(await client.xlen(key)) >= n  # type: ignore[attr-defined]


@pytest.fixture
def cluster_with_replicas() -> Iterator[Cluster]:
    made = Cluster(replicas=True)
    try:
        yield made
    finally:
        made.stop()


async def test_a_primary_failover_in_the_cluster_loses_nothing_that_must_not_be_lost(
    cluster_with_replicas: Cluster, sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    cluster = cluster_with_replicas
    sim = sim_factory(rate=20, time_scale=60)
    subs = {"LEVELONE_EQUITIES": SYMBOLS, "CHART_EQUITY": ["AAPL"], "ACCT_ACTIVITY": ["ACCOUNT"]}
    bridge = await bridges.start(sim, subs, redis_url=cluster.url)
    client = cluster_redis(cluster.url)
    try:
        await wait_for(lambda: _xlen(client, "schwab:tick:{AAPL}", 10), timeout=20)
        for _ in range(3):
            await sim_post(sim, "/sim/account/order?symbol=AAPL&spacing=0.01")
        cluster.kill_primary_of("schwab:tick:{AAPL}")
        before = int(await client.xlen("schwab:tick:{AAPL}"))
        await wait_for(lambda: _xlen(client, "schwab:tick:{AAPL}", before + 20), timeout=30)
        for _ in range(3):
            await sim_post(sim, "/sim/account/order?symbol=AAPL&spacing=0.01")
        await wait_for(lambda: _xlen(client, "schwab:bar:{AAPL}", 5), timeout=30)
        bars = [decode_event(f[b"data"]) for _, f in await client.xrange("schwab:bar:{AAPL}")]
        starts = [b.start for b in bars if isinstance(b, BarEvent)]
        assert starts == sorted(set(starts))
        account = [decode_event(f[b"data"]) for _, f in await client.xrange("{schwab}:account")]
        seqs = [a.seq for a in account]
        assert len(seqs) >= 6 and seqs == sorted(set(seqs))  # each account event once, in order
        statuses = [decode_event(f[b"data"]) for _, f in await client.xrange("{schwab}:status")]
        states = [s.state for s in statuses if isinstance(s, StatusEvent)]
        assert "gap" in states
        assert sim.state.stats["logins"] == 1  # one bridge, one session, all along
        assert bridge.pipeline.publisher.redis_ok
    finally:
        await client.aclose()


async def test_tail_reads_a_clusters_streams_across_nodes(
    cluster: Cluster, sim_factory: Callable[..., SimThread], bridges: Bridges
) -> None:
    sim = sim_factory(rate=20)
    await bridges.start(sim, {"LEVELONE_EQUITIES": SYMBOLS}, redis_url=cluster.url)
    client = cluster_redis(cluster.url)
    try:
        for symbol in SYMBOLS:
            await wait_for(lambda s=symbol: _xlen(client, f"schwab:tick:{{{s}}}", 3), timeout=20)
    finally:
        await client.aclose()

    def tail(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "schwab_stream", "tail", "--redis-url", cluster.url, *args],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )

    last = await asyncio.to_thread(tail, "-t", "tick", "--last", "30", "--json")
    assert last.returncode == 0, last.stderr
    symbols = {json.loads(line)["symbol"] for line in last.stdout.splitlines()}
    assert len(symbols) >= 3
    follow = await asyncio.to_thread(tail, "-t", "tick", "-n", "12", "--json")
    assert follow.returncode == 0 and len(follow.stdout.splitlines()) == 12, follow.stderr


def test_a_cluster_url_on_a_standalone_redis_and_the_reverse_are_one_line(
    cluster: Cluster, redis_url: str
) -> None:
    standalone_port = redis_url.rsplit(":", 1)[1].split("/")[0]
    one_node = f"redis://127.0.0.1:{cluster.nodes[0].port}/0"
    for url in (f"redis+cluster://127.0.0.1:{standalone_port}", one_node):
        result = subprocess.run(
            [sys.executable, "-m", "schwab_stream", "tail", "--redis-url", url, "--last", "1"],
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=60,
        )
        assert result.returncode != 0 or "no stream" in result.stderr, result
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) <= 2


async def test_a_cluster_url_on_a_standalone_redis_is_unhealthy_until_a_cluster_serves_it(
    sim_factory: Callable[..., SimThread], bridges: Bridges, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    port = cluster_port()
    standalone = EmbeddedRedis(port=port).start()
    cluster: Cluster | None = None
    try:
        sim = sim_factory(rate=20)
        url = f"redis+cluster://127.0.0.1:{port}"
        bridge = await bridges.start(
            sim, {"LEVELONE_EQUITIES": ["AAPL"]}, redis_url=url, **watched()
        )
        body = await wait_healthz(bridge, 503, "not_cluster")
        assert (
            f"this URL is redis+cluster:// but the server at 127.0.0.1:{port} is not in cluster "
            "mode (use redis://)"
        ) in body["reason"]
        assert sim.state.stats.get("logins", 0) == 0  # a standby: nobody streams
        await said_once(caplog, "is not in cluster mode")
        standalone.stop()
        cluster = Cluster(primaries=1, port=port)  # the right server comes up there
        await wait_healthz(bridge, 200)
        client = cluster_redis(url)
        try:
            await wait_for(lambda: _xlen(client, "schwab:tick:{AAPL}", 3), timeout=20)
        finally:
            await client.aclose()
    finally:
        standalone.stop()
        if cluster is not None:
            await bridges.aclose()  # (before the node goes)
            cluster.stop()


async def test_a_standalone_url_on_a_cluster_node_is_unhealthy_until_a_standalone_serves_it(
    cluster: Cluster,
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20)
    node = cluster.nodes[0]
    url = f"redis://127.0.0.1:{node.port}/0"
    bridge = await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, redis_url=url, **watched())
    body = await wait_healthz(bridge, 503, "is_cluster")
    assert (
        f"this URL is redis:// but the server at 127.0.0.1:{node.port} is a cluster node "
        "(use redis+cluster://)"
    ) in body["reason"]
    await said_once(caplog, "is a cluster node (use redis+cluster://)")
    node.kill()
    node.extra_args = ()
    node.start()  # a standalone server where the cluster node was
    await wait_healthz(bridge, 200)
    async with aioredis.Redis(port=node.port) as client:
        await wait_for(lambda: _xlen(client, "schwab:tick:AAPL", 3), timeout=20)


async def test_slots_uncovered_mid_stream_are_unhealthy_with_the_cause_and_lose_nothing(
    cluster: Cluster,
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A primary with no replica stops answering (paused): its slots are served by nobody, the
    cluster says `fail`; /healthz names it, and once the primary is back nothing is lost."""
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20, time_scale=60)
    subs = {"LEVELONE_EQUITIES": ["AAPL"], "CHART_EQUITY": ["AAPL"], "ACCT_ACTIVITY": ["ACCOUNT"]}
    bridge = await bridges.start(sim, subs, redis_url=cluster.url, **watched())
    client = cluster_redis(cluster.url)
    try:
        await wait_for(lambda: _xlen(client, "schwab:bar:{AAPL}", 2), timeout=20)
        await wait_healthz(bridge, 200)
        victim = client.get_node_from_key("{schwab}:account")
        paused = next(n for n in cluster.nodes if n.port == int(victim.port))
        assert paused.proc is not None
        os.kill(paused.proc.pid, signal.SIGSTOP)
        try:
            await sim_post(sim, "/sim/account/order?symbol=AAPL&spacing=0.01")
            body = await wait_healthz(bridge, 503, "slots_uncovered")
            assert "cluster slots not covered" in body["reason"]
        finally:
            os.kill(paused.proc.pid, signal.SIGCONT)
        await wait_healthz(bridge, 200)
        assert not bridge.task.done()
        await said_once(caplog, "s: cluster slots not covered")
        before = int(await client.xlen("schwab:bar:{AAPL}"))
        await wait_for(lambda: _xlen(client, "schwab:bar:{AAPL}", before + 2), timeout=20)
        bars = [decode_event(f[b"data"]) for _, f in await client.xrange("schwab:bar:{AAPL}")]
        starts = [b.start for b in bars if isinstance(b, BarEvent) and b.start is not None]
        assert starts == list(range(starts[0], starts[0] + 60_000 * len(starts), 60_000)), starts
        account = [decode_event(f[b"data"]) for _, f in await client.xrange("{schwab}:account")]
        assert len(account) >= 2
        assert_contiguous([a.seq for a in account])
        statuses = [decode_event(f[b"data"]) for _, f in await client.xrange("{schwab}:status")]
        assert_contiguous([s.seq for s in statuses])
        assert "gap" in [s.state for s in statuses if isinstance(s, StatusEvent)]
    finally:
        await client.aclose()


async def test_the_cluster_consumer_snippet_reads_the_current_quote_then_updates(
    cluster: Cluster, sim_factory: Callable[..., SimThread], bridges: Bridges, tmp_path: Path
) -> None:
    sim = sim_factory(rate=20)
    await bridges.start(sim, {"LEVELONE_EQUITIES": ["AAPL"]}, redis_url=cluster.url)
    client = cluster_redis(cluster.url)
    try:
        await wait_for(lambda: client.exists("schwab:latest:tick:{AAPL}"), timeout=20)
    finally:
        await client.aclose()
    match = re.search(
        r"<!-- consumer:cluster -->\n```python\n(.*?)\n```", EVENTS_MD.read_text(), re.DOTALL
    )
    assert match, "docs/events.md has no consumer:cluster snippet"
    script = tmp_path / "consumer.py"
    script.write_text(match.group(1) + "\n")
    env = {**clean_env(), "REDIS_CLUSTER_NODE": f"127.0.0.1:{cluster.nodes[1].port}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), env=env, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    lines = []
    try:
        async with asyncio.timeout(20):
            while len(lines) < 5:
                lines.append((await proc.stdout.readline()).decode().strip())
    finally:
        proc.terminate()
        await proc.wait()
    assert lines[0].startswith("now AAPL ")
    assert all(re.match(r"^\d+ AAPL [\d.]+ [\d.]+$", line) for line in lines[1:]), lines
