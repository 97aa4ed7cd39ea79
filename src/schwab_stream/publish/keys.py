"""The contract's Redis key names (ARCHITECTURE.md), and each event's keys encoded once.

An event's keys depend only on its type and symbol, so they are built and encoded the first
time a (type, symbol) is seen and looked up after that: the hot path never formats a string.
"""

from __future__ import annotations

from typing import NamedTuple

from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    Event,
    Level2Event,
    ScreenerEvent,
    StatusEvent,
    TickEvent,
)

#: Event types whose latest value is all a late reader needs: conflated under pressure.
CONFLATABLE: tuple[type, ...] = (TickEvent, Level2Event, ScreenerEvent)
#: Event kinds with a `latest:` key beside their stream.
LATEST_KINDS = ("tick", "level2")

#: The `type` of each event class, as in its JSON and its stream name.
KIND: dict[type, str] = {
    TickEvent: "tick",
    Level2Event: "level2",
    BarEvent: "bar",
    ScreenerEvent: "screener",
    AccountEvent: "account",
    StatusEvent: "status",
}


class StreamKeys:
    """The key names for one prefix.

    In cluster mode (`redis+cluster://`, docs/events.md "Redis Cluster") every key carries a
    hash tag, so each command the bridge sends touches one slot: a symbol's streams, latest keys
    and write marks share `{SYMBOL}` (symbols spread over the nodes), and the few keys of the
    bridge itself (status, account, heartbeat, lease, subscriptions) share `{PREFIX}`.
    """

    def __init__(self, prefix: str, cluster: bool = False) -> None:
        self.prefix = prefix
        self.cluster = cluster
        own = f"{{{prefix}}}" if cluster else prefix
        #: Keys of the bridge itself: `PREFIX:...`, or `{PREFIX}:...` in cluster mode
        self.own = own
        self.status = f"{own}:status"
        self.account = f"{own}:account"
        self.heartbeat = f"{own}:heartbeat"
        #: The publisher's own bookkeeping: per stream, the last entry each writer wrote there
        #: (in cluster mode one hash per hash tag: `marks(tag)`)
        self.written = f"{own}:written"

    def tag(self, symbol: str) -> str:
        """`symbol` as it appears in its keys: `{SYMBOL}` in cluster mode."""
        return f"{{{symbol}}}" if self.cluster else symbol

    def stream(self, event: Event) -> str:
        kind = KIND[type(event)]
        if kind == "status":
            return self.status
        if kind == "account":
            return self.account
        return f"{self.prefix}:{kind}:{self.tag(event.symbol)}"

    def symbol_stream(self, kind: str, symbol: str) -> str:
        """The stream of `symbol`'s events of `kind` (tick, level2, bar, screener)."""
        return f"{self.prefix}:{kind}:{self.tag(symbol)}"

    def latest(self, kind: str, symbol: str) -> str:
        return f"{self.prefix}:latest:{kind}:{self.tag(symbol)}"

    def marks(self, tag: bytes) -> bytes:
        """Cluster mode: the write-marks hash of the keys tagged `tag` (b"{AAPL}")."""
        return f"{self.prefix}:written:".encode() + tag

    def pubsub(self, event: Event) -> str:
        return f"{self.prefix}:pub:{KIND[type(event)]}:{event.symbol}"


def hash_tag(key: bytes) -> bytes:
    """The `{...}` part of a key (b"" without one): the part Redis Cluster hashes."""
    start = key.find(b"{")
    if start < 0:
        return b""
    end = key.find(b"}", start + 1)
    return key[start : end + 1] if end > start + 1 else b""


class Targets(NamedTuple):
    """Where one (type, symbol)'s events go, encoded."""

    stream: bytes
    #: The latest-state key, for kinds that have one
    latest: bytes | None
    #: The pub/sub channel of the optional mirror
    channel: bytes
    #: A newer event of this stream makes an older one worthless (quotes, books, screeners)
    conflatable: bool


class TargetCache:
    """`Targets` per (event type, symbol), built on first sight."""

    __slots__ = ("cached", "keys")

    def __init__(self, keys: StreamKeys) -> None:
        self.keys = keys
        #: (type, symbol) -> Targets, for the hot path's inline lookup (`__call__` fills it)
        self.cached: dict[tuple[type, str], Targets] = {}

    def __call__(self, event: Event) -> Targets:
        targets = self.cached.get((type(event), event.symbol))
        if targets is None:
            targets = self._build(event)
        return targets

    def _build(self, event: Event) -> Targets:
        kind = KIND[type(event)]
        latest = self.keys.latest(kind, event.symbol).encode() if kind in LATEST_KINDS else None
        targets = Targets(
            self.keys.stream(event).encode(),
            latest,
            self.keys.pubsub(event).encode(),
            isinstance(event, CONFLATABLE),
        )
        self.cached[(type(event), event.symbol)] = targets
        return targets
