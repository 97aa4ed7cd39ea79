"""Cluster mode's writes (#18): each flight split by node, packed by hiredis, and sent on one
connection per primary of the publisher's own, each read back by its own long-lived reader (as
the standalone path does: `publish/link.py`). redis-py's cluster pipeline, which the publisher
used before, spends most of a cluster flight's CPU on Python per command (docs/performance.md,
"Redis Cluster"); its cluster client is kept for what it does well: reading the slot map.

Order: under one slot map a stream's commands all go to one node, on one connection, in the
order of the flights. The map changes only when nothing is in flight: a redirection (MOVED,
ASK, TRYAGAIN, CLUSTERDOWN), NOSCRIPT or a lost connection ends every connection, and the core
sends every flight again (the script skips what was written); the map is read again before the
next flight. So a later flight never overtakes an earlier one on any stream, whichever node a
stream moves to.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MasterDownError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from schwab_stream.publish import link
from schwab_stream.publish.resp import CommandBuffer

#: host, port
Address = tuple[str, int]

#: Error replies after which the flights are sent again on a fresh slot map (NOSCRIPT: the
#: script is loaded at every connect, so a node lost it while connected: SCRIPT FLUSH)
REDIRECTS: tuple[type[ResponseError], ...] = (
    MovedError,
    AskError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
    NoScriptError,
)


def command_key(args: Sequence[bytes]) -> bytes:
    """The key a command is routed by: its first (every command of a flight touches one slot:
    `wire.build`). EVAL/EVALSHA name theirs after the script and the key count."""
    return args[3] if args[0] in (b"EVALSHA", b"EVAL") else args[1]


class SlotMap:
    """Which primary serves each slot: a flight's commands split by node, each node's in the
    flight's order."""

    __slots__ = ("_owners",)

    def __init__(self, owners: Sequence[Address | None]) -> None:
        assert len(owners) == REDIS_CLUSTER_HASH_SLOTS
        self._owners = owners

    @classmethod
    def of(cls, served: dict[int, Address]) -> SlotMap:
        owners: list[Address | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
        for slot, address in served.items():
            owners[slot] = address
        return cls(owners)

    def split(self, commands: Sequence[Sequence[bytes]]) -> dict[Address | None, list[int]]:
        """The places of the commands each node gets (None: a slot no node serves)."""
        owners = self._owners
        parts: dict[Address | None, list[int]] = {}
        for i, args in enumerate(commands):
            parts.setdefault(owners[key_slot(command_key(args))], []).append(i)
        return parts


class Gather:
    """A flight's replies, from however many nodes, in the order of its commands."""

    __slots__ = ("left", "replies")

    def __init__(self, commands: int, parts: int) -> None:
        self.replies: list[object] = [None] * commands
        #: Parts (one per node) still to answer
        self.left = parts


class NodeLink:
    """One connection to one primary, and its reader: each reply into the oldest part's place."""

    __slots__ = ("_on_done", "conn", "got", "parts", "reader")

    def __init__(self, conn: AbstractConnection, on_done: Callable[[], None]) -> None:
        self.conn = conn
        self.parts: deque[tuple[Gather, list[int]]] = deque()
        self.got = 0
        self.reader: asyncio.Task[None] | None = None
        self._on_done = on_done

    def deliver(self, reply: object) -> None:
        gather, places = self.parts[0]
        gather.replies[places[self.got]] = reply
        self.got += 1
        if self.got == len(places):
            self.parts.popleft()
            self.got = 0
            gather.left -= 1
            if not gather.left:
                self._on_done()


class ClusterLinks:
    """The publisher's connections to the primaries, made as flights need them."""

    def __init__(
        self,
        make_client: Callable[[], RedisCluster],
        on_done: Callable[[], None],
        on_end: Callable[[], None],
        note: Callable[[str], None],
    ) -> None:
        #: redis-py's cluster client: the slot map and each node's connection settings, a new
        #: one for each read of the map (its `initialize` reads the map once, and says what is
        #: wrong with the cluster in `redis_client`'s words)
        self._make_client = make_client
        self._client: RedisCluster | None = None
        #: A flight's replies are all in; a reader ended (`ended()` says why); a primary was
        #: replaced (a failover: the gap this write ends says so)
        self._on_done = on_done
        self._on_end = on_end
        self._note = note
        self._map: SlotMap | None = None
        self._nodes: dict[Address, ClusterNode] = {}
        self._links: dict[Address, NodeLink] = {}

    async def send(self, commands: list[list[bytes]], timeout: float) -> Gather:
        """Write a flight's commands, each node's part on its connection (connecting first,
        within `timeout`); its replies gather in the returned `Gather`."""
        async with asyncio.timeout(timeout):
            if self._map is None:
                await self._read_map()
            assert self._map is not None
            parts = self._map.split(commands)
            if None in parts:
                self._map = None
                raise RedisConnectionError("a slot no cluster node serves (reading the map again)")
            links = [await self._link(address) for address in parts if address is not None]
        gather = Gather(len(commands), len(parts))
        for target, places in zip(links, parts.values(), strict=True):
            buffer = CommandBuffer()
            for i in places:
                buffer.add_all(commands[i])
            target.parts.append((gather, places))
            await link.write(target.conn, buffer.getvalue())
        return gather

    def ended(self) -> BaseException | None:
        """Why a reader ended (None: none has); a cancelled one: the watchdog cut it."""
        for each in self._links.values():
            reader = each.reader
            if reader is not None and reader.done():
                if reader.cancelled():
                    return RedisConnectionError("the connection was cut")
                return reader.exception()
        return None

    def abort(self) -> None:
        """The watchdog: every connection is cut now."""
        for each in self._links.values():
            link.abort(each.conn)

    async def reset(self) -> None:
        """A write failed: every connection goes (no late reply is read as a newer flight's),
        and the map is read again before the next flight."""
        links, self._links = self._links, {}
        self._map = None
        for each in links.values():
            reader = each.reader
            if reader is not None and not reader.cancel() and not reader.cancelled():
                reader.exception()  # done: retrieved, so asyncio does not warn about it
            await each.conn.disconnect(nowait=True)

    async def aclose(self) -> None:
        await self.reset()
        if self._client is not None:
            await self._client.aclose()

    async def _read_map(self) -> None:
        if self._client is not None:
            await self._client.aclose()
        self._client = client = self._make_client()
        try:
            await client.initialize()
        except RedisClusterException as exc:  # (`cluster_redis`'s client says these itself)
            raise RedisConnectionError(f"no usable Redis Cluster: {exc}") from None
        manager = client.nodes_manager
        served: dict[int, Address] = {}
        nodes: dict[Address, ClusterNode] = {}
        for slot, holders in manager.slots_cache.items():
            address = (holders[0].host, int(holders[0].port))
            served[slot] = address
            nodes[address] = holders[0]
        gone, new = set(self._nodes) - set(nodes), set(nodes) - set(self._nodes)
        if self._nodes and gone:
            self._note(f"primary {_names(gone)} replaced by {_names(new) or 'the others'}")
        self._nodes = nodes
        self._map = SlotMap.of(served)

    async def _link(self, address: Address) -> NodeLink:
        """The connection to `address`, made (with the script loaded) if there is none."""
        made = self._links.get(address)
        if made is not None:
            return made
        node = self._nodes[address]
        # No retries of its own (as redis-py's cluster nodes make theirs): a failure is the
        # core's, which backs off and sends again on a fresh map
        settings = {**node.connection_kwargs, "retry": Retry(NoBackoff(), 0)}
        conn: AbstractConnection = node.connection_class(**settings)
        try:
            await conn.connect()  # type: ignore[no-untyped-call]
            # EVALSHA finds the script on every connection (a promoted replica, a new node)
            await link.load_script(conn)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        made = self._links[address] = NodeLink(conn, self._on_done)
        made.reader = asyncio.create_task(link.read_replies(conn, made.deliver, REDIRECTS))
        made.reader.add_done_callback(lambda _: self._on_end())
        return made


def _names(addresses: set[Address]) -> str:
    return ", ".join(sorted(f"{host}:{port}" for host, port in addresses))
