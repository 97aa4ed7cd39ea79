"""The events we publish (contract v1): typed msgspec Structs, encoded once, straight to JSON bytes.

Every event carries `v`, `type`, `service`, `symbol`, `seq`, `schwab_ts` and `recv_ns`; see
docs/events.md for each field. Changing a field here changes the external contract: bump
SCHEMA_VERSION and document it.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import msgspec

SCHEMA_VERSION = 1


# gc=False: events are never part of a reference cycle, so the garbage collector need not track
# them, and a large share of the hot path's allocations go untracked (fewer, shorter GC pauses;
# figure in docs/performance.md, "Figures behind design choices"). It changes nothing in the JSON.
class _Event(msgspec.Struct, tag_field="type", gc=False):
    v: int = SCHEMA_VERSION
    service: str = ""
    symbol: str = ""
    seq: int = 0
    schwab_ts: int | None = None
    recv_ns: int = 0


class TickEvent(_Event, tag="tick"):
    """A level-one update: the full merged quote plus the names of the fields it changed."""

    bid: float | None = None
    ask: float | None = None
    last: float | None = None
    bid_size: float | None = None
    ask_size: float | None = None
    last_size: float | None = None
    volume: float | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    mark: float | None = None
    net_change: float | None = None
    quote_time: int | None = None
    trade_time: int | None = None
    delayed: bool | None = None
    snapshot: bool = False
    changed: list[str] = msgspec.field(default_factory=list)
    fields: dict[str, Any] = msgspec.field(default_factory=dict)


# Maker and Level are positional (the normalizer builds many per book); the JSON is the same.
class Maker(msgspec.Struct, gc=False):
    id: str
    size: int
    time_ms: int | None = None


class Level(msgspec.Struct, gc=False):
    price: float
    size: int
    count: int
    makers: list[Maker] = msgspec.field(default_factory=list)


class Level2Event(_Event, tag="level2"):
    """A whole book snapshot for one symbol; it replaces the previous one."""

    venue: str = ""
    book_time: int | None = None
    bids: list[Level] = msgspec.field(default_factory=list)
    asks: list[Level] = msgspec.field(default_factory=list)


class BarEvent(_Event, tag="bar"):
    """A one-minute candle from CHART_EQUITY or CHART_FUTURES."""

    start: int | None = None
    open: float | None = None
    high: float | None = None
    low: float | None = None
    close: float | None = None
    volume: float | None = None
    sequence: int | None = None
    #: True for a bar fetched from Schwab's price history to fill a gap (its `schwab_ts` is
    #: null); additive, so the schema stays v1
    backfilled: bool = False


class ScreenerItem(msgspec.Struct, kw_only=True, gc=False):
    symbol: str
    description: str | None = None
    last_price: float | None = None
    net_change: float | None = None
    net_percent_change: float | None = None
    market_share: float | None = None
    total_volume: float | None = None
    volume: float | None = None
    trades: float | None = None


class ScreenerEvent(_Event, tag="screener"):
    """A whole screener ranking (SCREENER_EQUITY / OPTION); `symbol` is the screener key."""

    screener_ts: int | None = None
    sort_field: str | None = None
    frequency: int | None = None
    items: list[ScreenerItem] = msgspec.field(default_factory=list)


class AccountEvent(_Event, tag="account"):
    """One ACCT_ACTIVITY message; `data` is field 3 decoded from its JSON string when it is JSON."""

    account: str | None = None
    message_type: str | None = None
    data: Any = None
    item_seq: int | None = None


class StatusEvent(_Event, tag="status"):
    """A lifecycle event of the bridge itself (connected, logged_in, gap, token_expiring, ...)."""

    state: str = ""
    detail: str = ""
    code: int | None = None
    info: dict[str, Any] = msgspec.field(default_factory=dict)


_status_seq = itertools.count(1)


def status_event(state: str, detail: str = "", code: int | None = None, **info: Any) -> StatusEvent:
    """A status event stamped now, with this process's next status-stream `seq`: every writer
    of the status stream (the publisher, a waiting standby) shares one counter."""
    return StatusEvent(
        service="ADMIN",
        symbol="",
        seq=next(_status_seq),
        recv_ns=time.time_ns(),
        state=state,
        detail=detail,
        code=code,
        info=info,
    )


Event = TickEvent | Level2Event | BarEvent | ScreenerEvent | AccountEvent | StatusEvent

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    """Encode an event to the UTF-8 JSON stored in the stream entry's `data` field."""
    return _encoder.encode(event)


def decode_event(data: bytes | str) -> Event:
    """Decode a stream entry's `data` back into a typed event (for consumers and tests)."""
    return _decoder.decode(data)
