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
    """The key names for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.status = f"{prefix}:status"
        self.account = f"{prefix}:account"
        self.heartbeat = f"{prefix}:heartbeat"
        #: The publisher's own bookkeeping: per stream, the last entry each writer wrote there
        self.written = f"{prefix}:written"

    def stream(self, event: Event) -> str:
        kind = KIND[type(event)]
        if kind == "status":
            return self.status
        if kind == "account":
            return self.account
        return f"{self.prefix}:{kind}:{event.symbol}"

    def latest(self, kind: str, symbol: str) -> str:
        return f"{self.prefix}:latest:{kind}:{symbol}"

    def pubsub(self, event: Event) -> str:
        return f"{self.prefix}:pub:{KIND[type(event)]}:{event.symbol}"


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
