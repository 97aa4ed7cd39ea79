"""A stream entry as the row it becomes (sans-I/O): its event decoded against the contract's
types, or, when that fails, kept whole as an `Unmapped` row with the reason (never dropped).

Sizes and volumes are int64 columns, so a fractional one cannot be stored as such: that entry
is unmapped too, with its JSON intact.

A delivery is decoded in one pass (`runs`) into row types that keep the free-form parts (a
tick's `fields`, a status event's `info`, an account event's `data`) as the entry's own JSON
text, so they are neither decoded nor encoded again; `to_row` is the rule entry by entry, the
one the whole pass must agree with, and what a delivery falls back to when any entry of it needs
a look of its own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    Event,
    Level2Event,
    ScreenerEvent,
    StatusEvent,
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
#: What a failed decode raises: msgspec's errors, and a string that is not UTF-8.
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError)


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


# The row types: the events as the archive reads them, their free-form parts as JSON text (a
# subclass may narrow a field's type in msgspec; mypy sees an incompatible override).
class TickRow(TickEvent, tag="tick"):
    fields: msgspec.Raw = msgspec.Raw(b"{}")  # type: ignore[assignment]


class AccountRow(AccountEvent, tag="account"):
    data: msgspec.Raw = msgspec.Raw(b"null")


class StatusRow(StatusEvent, tag="status"):
    info: msgspec.Raw = msgspec.Raw(b"{}")  # type: ignore[assignment]


Row = TickRow | Level2Event | BarEvent | ScreenerEvent | AccountRow | StatusRow
ROW_KIND: dict[type, str] = {
    TickRow: "tick",
    Level2Event: "level2",
    BarEvent: "bar",
    ScreenerEvent: "screener",
    AccountRow: "account",
    StatusRow: "status",
}
_row: Callable[[bytes], Row] = msgspec.json.Decoder(Row).decode


class Run(NamedTuple):
    """Entries of one stream, kind and New York day, in stream order, with their rows."""

    kind: str
    day: date
    entry_ids: list[str]
    rows: list[Any]


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
    except DECODE_ERRORS as exc:
        return kept_raw(entry, str(exc))
    problem = _not_integral(event)
    day = _day(event.recv_ns)
    if problem or day is None:
        return kept_raw(entry, problem or f"recv_ns {event.recv_ns} is not a time")
    return Mapped(KIND[type(event)], day, event)


def kept_raw(entry: Entry, reason: str) -> Unmapped:
    """`entry` as an unmapped row, of New York's day at Redis's clock in its id."""
    return Unmapped(ny_day(id_ms(entry.entry_id)), entry.data, reason)


def _day(recv_ns: int) -> date | None:
    """New York's date at `recv_ns`; None for a value no date has."""
    try:
        return ny_day(recv_ns // 1_000_000)
    except (OverflowError, OSError, ValueError):
        return None


def as_row(data: bytes) -> Row:
    """The row type of an entry `to_row` mapped (it takes all that `decode_event` takes)."""
    return _row(data)


def run_of(entries: list[Entry]) -> Run | None:
    """One stream's entries (in stream order) as one run when they decode in one pass and are
    of one kind and one New York day (and a screener's sizes are whole); None when any of them
    needs a look of its own (`to_row` entry by entry). A fractional size of a tick or bar is
    found when its column is made (tables.batch raises Unstorable)."""
    if not entries:
        return None
    try:
        rows = list(map(_row, [entry.data for entry in entries]))
    except DECODE_ERRORS:
        return None
    kinds = set(map(type, rows))
    if len(kinds) != 1:
        return None
    kind = ROW_KIND[kinds.pop()]
    recv = [row.recv_ns for row in rows]
    day = _day(min(recv))
    if day is None or _day(max(recv)) != day:
        return None
    # Nested sizes are checked here; flat ones by their columns (tables.py), in one C pass.
    if kind == "screener" and any(map(_not_integral, rows)):
        return None
    return Run(kind, day, [entry.entry_id for entry in entries], rows)


def _not_integral(event: Any) -> str | None:
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
