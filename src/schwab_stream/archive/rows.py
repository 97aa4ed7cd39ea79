"""A stream entry as the row it becomes (sans-I/O): its event decoded against the contract's
types, or, when that fails, kept whole as an `Unmapped` row with the reason (never dropped).

Sizes and volumes are int64 columns, so a fractional one cannot be stored as such: that entry
is unmapped too, with its JSON intact.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from schwab_stream.events import (
    BarEvent,
    Event,
    ScreenerEvent,
    TickEvent,
    decode_event,
)
from schwab_stream.publish.keys import KIND

#: Days are New York trading days: a file never holds two of them.
NEW_YORK = ZoneInfo("America/New_York")
#: The archive's own kinds besides the event types: trimmed entries found, entries kept raw.
GAP_KIND = "gap"
UNMAPPED_KIND = "unmapped"
INT64_LIMIT = 2**63


class Entry(NamedTuple):
    """One stream entry as Redis hands it over."""

    stream: str
    entry_id: str
    data: bytes


class Mapped(NamedTuple):
    kind: str
    day: date
    event: Event


class Unmapped(NamedTuple):
    """An entry no schema takes: its bytes as they were and why."""

    day: date
    data: bytes
    error: str


def ny_day(epoch_ms: int) -> date:
    """New York's date at `epoch_ms`; the last day's bounds are kept, as nearly every call
    falls inside them."""
    global _day_cache
    start, end, day = _day_cache
    if start <= epoch_ms < end:
        return day
    moment = datetime.fromtimestamp(epoch_ms / 1000, NEW_YORK)
    day = moment.date()
    midnight = datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)
    following = (midnight + timedelta(days=1, hours=3)).replace(hour=0)
    _day_cache = (int(midnight.timestamp() * 1000), int(following.timestamp() * 1000), day)
    return day


_day_cache: tuple[int, int, date] = (0, 0, date.min)


def id_ms(entry_id: str) -> int:
    return int(entry_id.partition("-")[0])


def id_order(entry_id: str) -> tuple[int, int]:
    ms, _, n = entry_id.partition("-")
    return int(ms), int(n or 0)


def to_row(entry: Entry) -> Mapped | Unmapped:
    """The row `entry` becomes; its day is New York's at `recv_ns` (Redis's clock in the entry id
    when the event cannot be read)."""
    try:
        event = decode_event(entry.data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return Unmapped(ny_day(id_ms(entry.entry_id)), entry.data, str(exc))
    problem = _not_integral(event)
    if problem:
        return Unmapped(ny_day(id_ms(entry.entry_id)), entry.data, problem)
    return Mapped(KIND[type(event)], ny_day(event.recv_ns // 1_000_000), event)


def _not_integral(event: Event) -> str | None:
    """Why `event` cannot go into its int64 columns, if it cannot."""
    if isinstance(event, TickEvent):
        values = (event.bid_size, event.ask_size, event.last_size, event.volume)
        if all(v is None or (v.is_integer() and -INT64_LIMIT < v < INT64_LIMIT) for v in values):
            return None
        names = ("bid_size", "ask_size", "last_size", "volume")
        pairs = list(zip(names, values, strict=True))
    elif isinstance(event, BarEvent):
        pairs = [("volume", event.volume)]
    elif isinstance(event, ScreenerEvent):
        pairs = [
            (f"items.{name}", getattr(item, name))
            for item in event.items
            for name in ("total_volume", "volume", "trades")
        ]
    else:
        return None
    for name, value in pairs:
        if value is not None and not (float(value).is_integer() and abs(value) < INT64_LIMIT):
            return f"{name} {value!r} is not a whole number an int64 column holds"
    return None
