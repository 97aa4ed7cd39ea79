"""Redis clients for every part of the bridge, from any URL `redis_topology` reads.

One place decides how a topology is reached: a standalone server by its URL; a Sentinel-managed
primary through redis-py's Sentinel client, whose connections ask the sentinels for the primary
each time they connect, so every part follows a failover by reconnecting (docs/operations.md,
"Sentinel"). A cluster is reached through redis-py's cluster client (`cluster_redis`); the
parts that send multi-key commands keep each command's keys in one slot.
"""

from __future__ import annotations

from typing import Any, cast

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.sentinel import Sentinel

from schwab_stream.errors import ConfigError, SchwabStreamError
from schwab_stream.redact import safe_url
from schwab_stream.redis_topology import Kind, Topology, parse

#: Connection settings given to the sentinels themselves (each asked in turn).
_SENTINEL_TIMEOUT = 2.0


class _PrimaryConnection(SentinelManagedConnection):
    """Asks the sentinels for the primary whenever it connects. redis-py 8.1's asyncio
    connection does so only from `connect()`; a command sent again after a failover reconnects
    through `connect_check_health()`, to the old primary's address (refused, or a demoted
    replica)."""

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected and self.connection_pool.is_master:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(
            check_health=check_health, retry_socket_connect=retry_socket_connect
        )


class _PrimarySSLConnection(_PrimaryConnection, SSLConnection):
    """The same over TLS (`rediss+sentinel://`)."""


def topology(url: str) -> Topology:
    try:
        return parse(url)
    except ValueError as exc:
        raise ConfigError(f"REDIS_URL {exc}") from None


def async_redis(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client for `url` (`options` as for `redis.asyncio.Redis`)."""
    where = topology(url)
    if where.kind is Kind.STANDALONE:
        return aioredis.Redis.from_url(url, **options)
    if where.kind is Kind.SENTINEL:
        sentinel = AsyncSentinel(  # type: ignore[no-untyped-call]
            list(where.hosts), sentinel_kwargs=_sentinel_kwargs(where), **_server_kwargs(where)
        )
        client: aioredis.Redis = sentinel.master_for(
            where.primary,
            connection_class=_PrimarySSLConnection if where.tls else _PrimaryConnection,
            **{**_failover_retry(aio=True), **options},
        )
        return client
    return cast(aioredis.Redis, cluster_redis(url, **options))


class _Cluster(RedisCluster):
    """A cluster client whose "this is no usable cluster" (a standalone server, slots not
    covered) is a ConnectionError like any Redis trouble: every part already rides those out,
    says them once, and resumes when the cluster is back."""

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise RedisConnectionError(f"no usable Redis Cluster: {exc}") from None


def cluster_redis(url: str, **options: Any) -> RedisCluster:
    """A cluster client (`redis+cluster://`): it learns the slots from any node it is given,
    sends each command to the node owning its keys' slot, and follows MOVED and ASK. The
    bridge's multi-key commands keep their keys in one slot (`StreamKeys`, hash tags)."""
    where = topology(url)
    if where.kind is not Kind.CLUSTER:
        raise ConfigError(f"not a redis+cluster:// URL: {where.kind} Redis")
    return _Cluster(
        startup_nodes=[ClusterNode(host, port) for host, port in where.hosts],
        username=where.username,
        password=where.password,
        ssl=where.tls,
        **options,
    )


def is_cluster(url: str) -> bool:
    return topology(url).kind is Kind.CLUSTER


def sync_redis(url: str, **options: Any) -> redis.Redis:
    """A blocking client for `url` (the commands that are not asyncio: `tail`)."""
    where = topology(url)
    if where.kind is Kind.STANDALONE:
        return redis.Redis.from_url(url, **options)
    if where.kind is Kind.SENTINEL:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(where.hosts), sentinel_kwargs=_sentinel_kwargs(where), **_server_kwargs(where)
        )
        blocking: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            where.primary, **{**_failover_retry(aio=False), **options}
        )
        return blocking
    try:
        cluster = SyncRedisCluster(
            startup_nodes=[
                SyncClusterNode(host, port)  # type: ignore[no-untyped-call]
                for host, port in where.hosts
            ],
            username=where.username,
            password=where.password,
            ssl=where.tls,
            **options,
        )
    except (RedisClusterException, RedisError) as exc:
        raise SchwabStreamError(f"no usable Redis Cluster at {safe_url(url)}: {exc}") from None
    return cast(redis.Redis, cluster)


def _failover_retry(aio: bool) -> dict[str, Any]:
    """A command that finds its connection closed by a failover is sent again, to the primary
    the sentinels name now (a few tries over about a second), instead of failing once."""
    from redis.asyncio.retry import Retry as AsyncRetry
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry

    backoff = ExponentialBackoff(cap=0.5, base=0.05)
    retry = AsyncRetry(backoff, 4) if aio else Retry(backoff, 4)
    return {"retry": retry, "retry_on_error": [RedisConnectionError, RedisTimeoutError]}


def _server_kwargs(where: Topology) -> dict[str, Any]:
    """How to talk to the primary the sentinels name."""
    return {
        "db": where.db,
        "username": where.username,
        "password": where.password,
        "ssl": where.tls,
    }


def _sentinel_kwargs(where: Topology) -> dict[str, Any]:
    """How to talk to the sentinels: the same credentials (Redis 6.2+ sentinels take an ACL user
    like the servers), short timeouts so a dead sentinel costs little."""
    return {
        "username": where.username,
        "password": where.password,
        "ssl": where.tls,
        "socket_timeout": _SENTINEL_TIMEOUT,
        "socket_connect_timeout": _SENTINEL_TIMEOUT,
    }
