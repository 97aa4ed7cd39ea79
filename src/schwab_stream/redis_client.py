"""Redis clients for every part of the bridge, from any URL `redis_topology` reads.

One place decides how a topology is reached: a standalone server by its URL; a Sentinel-managed
primary through redis-py's Sentinel client, whose connections ask the sentinels for the primary
each time they connect, so every part follows a failover by reconnecting (docs/operations.md,
"Sentinel"). A cluster is reached through redis-py's cluster client (`cluster_redis`); the
parts that send multi-key commands keep each command's keys in one slot.

A topology that cannot be reached says why as data where it finds out: a `TopologyError` with
its `Problem` (no sentinel answers, an unknown primary, a server not in cluster mode, slots not
covered), and `diagnose` asks a topology as the parts connect, for `/healthz`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, cast
from urllib.parse import urlsplit

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import SSLConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.asyncio.sentinel import SentinelManagedConnection
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import (
    AuthenticationError,
    AuthorizationError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from redis.sentinel import Sentinel

from schwab_stream.errors import ConfigError, SchwabStreamError
from schwab_stream.redact import safe_url
from schwab_stream.redis_topology import Cause, Kind, Problem, Topology, parse, problem

#: Connection settings given to the sentinels themselves (each asked in turn).
_SENTINEL_TIMEOUT = 2.0
#: One try, no backoff: for the sentinels (the next one is the retry) and a diagnosis.
_ONCE = AsyncRetry(NoBackoff(), 0)


class TopologyError(RedisConnectionError):
    """The topology cannot be reached, and why (`problem`). A ConnectionError like any Redis
    trouble, so every part rides it out as before, in words that say what to fix."""

    def __init__(self, found: Problem) -> None:
        super().__init__(found.detail)
        self.problem = found


class _Sentinel(AsyncSentinel):
    """redis-py's sentinel manager, whose "no primary found" says which: no sentinel answered,
    none knows the primary's name, or they see it down."""

    def __init__(self, where: Topology) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            list(where.hosts), sentinel_kwargs=_sentinel_kwargs(where), **_server_kwargs(where)
        )
        self.where = where

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        seen = _Asked()
        for index, sentinel in enumerate(self.sentinels):
            try:
                masters: dict[str, Any] = cast(dict[str, Any], await sentinel.sentinel_masters())
            except (RedisConnectionError, RedisTimeoutError):
                continue
            except NoPermissionError:
                raise
            except ResponseError:  # (unknown command SENTINEL: a Redis server, say)
                seen.not_sentinel(self.where, index)
                continue
            state = seen.answered(masters, service_name)
            if state and self.check_master_state(state, service_name):
                # (asked first next time, as redis-py does)
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return state["ip"], int(state["port"])
        raise TopologyError(seen.problem(self.where))


class _SyncSentinel(Sentinel):
    """The same for the blocking client (`tail`, `archive`): redis-py's own "No master found"
    quotes the repr of every sentinel's connection pool, a few thousand characters a line."""

    def __init__(self, where: Topology) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            list(where.hosts),
            sentinel_kwargs=_sentinel_kwargs(where, aio=False),
            **_server_kwargs(where),
        )
        self.where = where

    def discover_master(self, service_name: str) -> tuple[str, int]:
        seen = _Asked()
        for index, sentinel in enumerate(self.sentinels):
            try:
                masters = cast(dict[str, Any], sentinel.sentinel_masters())
            except (RedisConnectionError, RedisTimeoutError):
                continue
            except NoPermissionError:
                raise
            except ResponseError:
                seen.not_sentinel(self.where, index)
                continue
            state = seen.answered(masters, service_name)
            if state and self.check_master_state(state, service_name):  # type: ignore[no-untyped-call]
                self.sentinels[0], self.sentinels[index] = sentinel, self.sentinels[0]
                return state["ip"], int(state["port"])
        raise TopologyError(seen.problem(self.where))


class _Asked:
    """What the sentinels said, asked in turn: which of no answer, an address that is no
    sentinel, an unknown name, a primary seen down."""

    def __init__(self) -> None:
        self.count = self.known = 0
        self.not_a_sentinel = ""  # the first address that answered as a server, not a sentinel

    def not_sentinel(self, where: Topology, index: int) -> None:
        if not self.not_a_sentinel:
            host, port = where.hosts[index]
            self.not_a_sentinel = f"{host}:{port}"

    def answered(self, masters: dict[str, Any], service_name: str) -> Any:
        self.count += 1
        state = masters.get(service_name)
        self.known += bool(state)
        return state

    def problem(self, where: Topology) -> Problem:
        if not self.count and self.not_a_sentinel:
            return problem(Cause.NOT_SENTINEL, where, self.not_a_sentinel)
        cause = (
            Cause.NO_SENTINEL
            if not self.count
            else Cause.UNKNOWN_PRIMARY
            if not self.known
            else Cause.PRIMARY_DOWN
        )
        return problem(cause, where)


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
        client: aioredis.Redis = _Sentinel(where).master_for(
            where.primary,
            connection_class=_PrimarySSLConnection if where.tls else _PrimaryConnection,
            **{**_failover_retry(aio=True), **options},
        )
        return client
    return cast(aioredis.Redis, cluster_redis(url, **options))


class _Cluster(RedisCluster):
    """A cluster client whose "this is no usable cluster" (no node answers, a standalone
    server, slots not covered) is a `TopologyError` saying which: every part already rides
    those out, says them once, and resumes when the cluster is back."""

    def __init__(self, where: Topology, **options: Any) -> None:
        super().__init__(
            startup_nodes=[ClusterNode(host, port) for host, port in where.hosts],
            username=where.username,
            password=where.password,
            ssl=where.tls,
            **options,
        )
        self.where = where

    async def initialize(self, *args: Any, **kwargs: Any) -> RedisCluster:
        try:
            return await super().initialize(*args, **kwargs)
        except RedisClusterException as exc:
            raise TopologyError(_cluster_problem(exc, self.where)) from None


def _cluster_problem(exc: BaseException, where: Topology) -> Problem:
    """redis-py words it as a sentence; the kind is in its exception chain: CLUSTER SLOTS
    answered with an error (not in cluster mode), a network error (no node answered), or
    nothing under it (the nodes answered, and their slots do not cover all 16,384)."""
    nodes = _address(where)
    for link in _chain(exc):
        if isinstance(link, ResponseError):
            # A sentinel knows no CLUSTER command; a server not in cluster mode refuses it.
            sentinel = "unknown command" in str(link).lower()
            return problem(Cause.IS_SENTINEL if sentinel else Cause.NOT_CLUSTER, where, nodes)
        if isinstance(link, (RedisConnectionError, RedisTimeoutError, OSError)):
            return _network_problem(link, where, nodes)
    return problem(Cause.SLOTS_UNCOVERED, where)


def _network_problem(exc: BaseException, where: Topology, address: str) -> Problem:
    """The kind of a failure to reach `address`, by the exception types in its chain."""
    for link in _chain(exc):
        if isinstance(link, TopologyError):
            return link.problem
        if isinstance(link, (AuthenticationError, AuthorizationError)):
            return problem(Cause.AUTH, where, address)
        if isinstance(link, ConnectionRefusedError):
            return problem(Cause.REFUSED, where, address)
        if isinstance(link, (RedisTimeoutError, TimeoutError)):
            return problem(Cause.TIMEOUT, where, address)
    return problem(Cause.UNREACHABLE, where, address)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it was raised from or while handling (redis-py wraps an OSError in a
    ConnectionError, a ConnectionError in a RedisClusterException)."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def _address(where: Topology) -> str:
    """HOST:PORT of a standalone URL (or its socket's path), the hosts of the others."""
    if where.kind is not Kind.STANDALONE:
        return ",".join(f"{host}:{port}" for host, port in where.hosts)
    parts = urlsplit(where.url)
    if parts.scheme == "unix":
        return parts.path
    try:
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    except ValueError:
        return parts.hostname or ""


async def diagnose(url: str, timeout: float = _SENTINEL_TIMEOUT) -> Problem:
    """Why the bridge cannot deliver to `url`, found by connecting as its parts do: the
    sentinels asked for the primary, the server pinged and asked whether it is a cluster node;
    a cluster's nodes asked for their view of it. `Cause.WRITES_FAIL` when all of that answers
    (then the writes themselves fail: the publisher's log line says why)."""
    where = topology(url)
    if where.kind is Kind.CLUSTER:
        return await _cluster_state(where, timeout) or problem(Cause.WRITES_FAIL, where)
    address = _address(where)
    client = async_redis(url, socket_timeout=timeout, socket_connect_timeout=timeout, retry=_ONCE)
    try:
        # Each sentinel may take `timeout`, then the server.
        async with asyncio.timeout(timeout * (len(where.hosts) + 2)):
            if where.kind is Kind.SENTINEL:
                pool: Any = client.connection_pool  # (a SentinelConnectionPool)
                host, port = await pool.get_master_address()
                address = f"{host}:{port}"
            await client.ping()
            if await _is_sentinel(client):
                return problem(Cause.IS_SENTINEL, where, address)
            if await _is_cluster_node(client):
                return problem(Cause.IS_CLUSTER, where, address)
    except TimeoutError:
        return problem(Cause.TIMEOUT, where, address)
    except (RedisError, OSError) as exc:
        return _network_problem(exc, where, address)
    finally:
        await client.aclose()
    return problem(Cause.WRITES_FAIL, where)


async def _cluster_state(where: Topology, timeout: float) -> Problem | None:
    """Each node of the URL asked for its view of the cluster (not through redis-py's cluster
    client, which cannot even start while one primary hangs): a node not in cluster mode, one
    that sees slots no primary serves (`cluster_state:fail`: a primary down with no replica
    promoted), or a node that does not answer. None: every node answers, and says ok."""
    unreachable: Problem | None = None
    failing = False
    silent = ""  # the first node that did not answer
    for host, port in where.hosts:
        client = aioredis.Redis(
            host=host,
            port=port,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=_ONCE,
            **_server_kwargs(where),
        )
        try:
            async with asyncio.timeout(2 * timeout):
                info = await client.execute_command("CLUSTER", "INFO")  # type: ignore[no-untyped-call]
        except NoPermissionError:
            continue  # (this user may not ask: cannot tell)
        except ResponseError:
            sentinel = await _is_sentinel(client)
            return problem(
                Cause.IS_SENTINEL if sentinel else Cause.NOT_CLUSTER, where, f"{host}:{port}"
            )
        except (RedisError, OSError) as exc:  # (TimeoutError is an OSError)
            if unreachable is None:
                silent = f"{host}:{port}"
                unreachable = _network_problem(exc, where, silent)
            continue
        finally:
            await client.aclose()
        failing = failing or b"cluster_state:ok" not in info
    if failing:
        return problem(Cause.SLOTS_UNCOVERED, where, silent)
    return unreachable


async def _is_sentinel(client: aioredis.Redis) -> bool:
    """Whether the server is a sentinel (INFO's redis_mode); False when it cannot say."""
    try:
        info = await client.info("server")
    except (RedisError, OSError):
        return False
    return bool(info.get("redis_mode") == "sentinel")


async def _is_cluster_node(client: aioredis.Redis) -> bool:
    try:
        info = await client.info("cluster")
    except ResponseError:  # (INFO not allowed to this user: cannot tell, so not said)
        return False
    return bool(info.get("cluster_enabled"))


def cluster_redis(url: str, **options: Any) -> RedisCluster:
    """A cluster client (`redis+cluster://`): it learns the slots from any node it is given,
    sends each command to the node owning its keys' slot, and follows MOVED and ASK. The
    bridge's multi-key commands keep their keys in one slot (`StreamKeys`, hash tags)."""
    where = topology(url)
    if where.kind is not Kind.CLUSTER:
        raise ConfigError(f"not a redis+cluster:// URL: {where.kind} Redis")
    return _Cluster(where, **options)


def is_cluster(url: str) -> bool:
    return topology(url).kind is Kind.CLUSTER


def sync_redis(url: str, **options: Any) -> redis.Redis:
    """A blocking client for `url` (the commands that are not asyncio: `tail`)."""
    where = topology(url)
    if where.kind is Kind.STANDALONE:
        return redis.Redis.from_url(url, **options)
    if where.kind is Kind.SENTINEL:
        sentinel = _SyncSentinel(where)
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


def _sentinel_kwargs(where: Topology, aio: bool = True) -> dict[str, Any]:
    """How to talk to the sentinels: the same credentials (Redis 6.2+ sentinels take an ACL user
    like the servers), short timeouts and no retries so a dead sentinel costs little (redis-py
    8's default retries each three times over seconds; the next sentinel is the retry)."""
    return {
        "username": where.username,
        "password": where.password,
        "ssl": where.tls,
        "socket_timeout": _SENTINEL_TIMEOUT,
        "socket_connect_timeout": _SENTINEL_TIMEOUT,
        "retry": _ONCE if aio else Retry(NoBackoff(), 0),
    }
