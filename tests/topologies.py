"""Real Redis topologies for the tests, from the redis-server binary the project ships: a primary
with a replica watched by three sentinels, and a three-primary cluster. No Docker, no packages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from schwab_stream.embedded_redis import EmbeddedRedis, free_port

PRIMARY_NAME = "bridge"


class SentinelSet:
    """A primary, a replica and three sentinels (quorum 2, down after 1 s: failovers in a few
    seconds)."""

    def __init__(self) -> None:
        self.primary = EmbeddedRedis().start()
        self.replica = EmbeddedRedis(
            extra_args=("--replicaof", "127.0.0.1", str(self.primary.port))
        ).start()
        self.sentinels = [
            EmbeddedRedis(config=self._sentinel_conf(), extra_args=("--sentinel",)).start()
            for _ in range(3)
        ]
        self.wait_synced()

    def _sentinel_conf(self) -> str:
        return (
            f"sentinel monitor {PRIMARY_NAME} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {PRIMARY_NAME} 1000\n"
            f"sentinel failover-timeout {PRIMARY_NAME} 3000\n"
            f"sentinel parallel-syncs {PRIMARY_NAME} 1\n"
        )

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{PRIMARY_NAME}/0"

    def primary_port(self) -> int:
        """The port the sentinels say is the primary now."""
        with redis.Redis(port=self.sentinels[0].port) as client:
            _, port = client.sentinel_get_master_addr_by_name(PRIMARY_NAME)
        return int(port)

    def wait_synced(self, timeout: float = 20.0) -> None:
        """Until the replica is in sync and every sentinel knows it and the others."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with redis.Redis(port=self.replica.port) as client:
                linked = client.info("replication").get("master_link_status") == "up"
            known = True
            for sentinel in self.sentinels:
                with redis.Redis(port=sentinel.port) as client:
                    state = client.sentinel_master(PRIMARY_NAME)
                replicas, others = int(state["num-slaves"]), int(state["num-other-sentinels"])
                known &= replicas >= 1 and others >= 2
            if linked and known:
                return
            time.sleep(0.1)
        raise AssertionError("the sentinel set did not come up in time")

    def kill_primary_and_wait_failover(self, timeout: float = 30.0) -> None:
        old = self.primary_port()
        victim = self.primary if self.primary.port == old else self.replica
        victim.kill()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.primary_port() != old:
                return
            time.sleep(0.1)
        raise AssertionError("no failover in time")

    def stop(self) -> None:
        for server in (*self.sentinels, self.replica, self.primary):
            server.stop()


@contextmanager
def sentinel_set() -> Iterator[SentinelSet]:
    made = SentinelSet()
    try:
        yield made
    finally:
        made.stop()


class Cluster:
    """Three primaries sharing the 16,384 slots, each with a replica when asked, built with
    CLUSTER MEET, ADDSLOTS and REPLICATE as `redis-cli --cluster create` would."""

    def __init__(self, primaries: int = 3, replicas: bool = False, port: int | None = None) -> None:
        """`port`: the first primary's (a cluster that comes up where another server was)."""
        self.nodes = [_cluster_node(port if i == 0 else None) for i in range(primaries)]
        self.replicas = [_cluster_node() for _ in range(primaries)] if replicas else []
        first = self.nodes[0]
        per = 16384 // primaries
        for index, node in enumerate(self.nodes):
            with redis.Redis(port=node.port) as client:
                if node is not first:
                    client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
                end = 16384 if index == primaries - 1 else (index + 1) * per
                client.execute_command("CLUSTER", "ADDSLOTS", *range(index * per, end))
        for primary, replica in zip(self.nodes, self.replicas, strict=False):
            with redis.Redis(port=primary.port) as client:
                primary_id = client.execute_command("CLUSTER", "MYID").decode()
            with redis.Redis(port=replica.port) as client:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", first.port)
                _until(lambda c=client, p=primary_id: _knows(c, p), "replica sees its primary")
                client.execute_command("CLUSTER", "REPLICATE", primary_id)
        with redis.Redis(port=first.port) as client:
            _until(lambda: b"cluster_state:ok" in client.execute_command("CLUSTER", "INFO"), "ok")
        for replica in self.replicas:
            with redis.Redis(port=replica.port) as client:
                _until(
                    lambda c=client: c.info("replication").get("master_link_status") == "up",
                    "replica in sync",
                )

    def kill_primary_of(self, key: str) -> None:
        """Kill the primary serving `key`, and wait until its replica serves it."""
        with redis.Redis(port=self.nodes[0].port) as client:
            slot = int(client.execute_command("CLUSTER", "KEYSLOT", key))
        victim = next(n for n in (*self.nodes, *self.replicas) if _serves(n.port, slot))
        victim.kill()
        alive = [n for n in (*self.nodes, *self.replicas) if n is not victim]
        _until(lambda: any(_serves(n.port, slot) for n in alive), "the replica took over", 30)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def stop(self) -> None:
        for node in (*self.nodes, *self.replicas):
            node.stop()


def _cluster_node(port: int | None = None) -> EmbeddedRedis:
    args = ("--cluster-enabled", "yes", "--cluster-node-timeout", "1000")
    return EmbeddedRedis(port=port or cluster_port(), extra_args=args).start()


def _until(check: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"not in time: {what}")


def _knows(client: redis.Redis, node_id: str) -> bool:
    return node_id.encode() in client.execute_command("CLUSTER", "NODES")


def _serves(port: int, slot: int) -> bool:
    """Whether the node at `port` is up and a primary owning `slot`."""
    try:
        with redis.Redis(port=port, socket_timeout=1) as client:
            if client.info("replication").get("role") != "master":
                return False
            for start, end, *_ in client.execute_command("CLUSTER", "SLOTS"):
                if start <= slot <= end and int(_[0][1]) == port:
                    return True
    except redis.RedisError:
        return False
    return False


def cluster_port() -> int:
    """A free port a cluster node can use: its bus listens 10,000 above it."""
    while (port := free_port()) > 55535:
        pass
    return port
