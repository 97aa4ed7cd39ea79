"""BarSequencer: every bar stream in `start` order with no minute twice, back-fill included.

Sans-I/O: bars come in (live ones from the stream client, back-filled ones from REST) with `now`;
out come the bars to publish, in order. A Redis stream only appends, so a back-filled minute must
be written before any later live bar of its key: while a key's back-fill is out, its live bars
wait here (ticks, books and other keys never do), at most `hold_seconds`; a back-fill that has not
landed by then is given up for the minutes before the first live bar, and said so.

`seq` of a bar is numbered here, per key, in publishing order, so it stays one more than the
previous bar's even when back-filled bars slip in between live ones.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import msgspec

from schwab_stream.events import BarEvent


class Dropped(StrEnum):
    """Why a bar was not published: the `bars_dropped_total` reasons."""

    #: Its minute is already in the stream (a reconnect's snapshot bar, a back-fill overlap)
    DUPLICATE = "duplicate"
    #: Older than a bar already published: writing it would break the order
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True, slots=True)
class GivenUp:
    """A back-fill that did not land within the hold: the minutes [start_ms, end_ms) of
    `symbol` stay missing (end is the first live bar published instead)."""

    symbol: str
    start_ms: int
    end_ms: int


@dataclass
class _Key:
    #: Start of the last bar published (or found in Redis); None: nothing known yet
    last_start: int | None = None
    seq: int = 0
    #: A back-fill is out: live bars wait in `held` until `hold_until`
    filling: bool = False
    fill_from: int = 0
    hold_until: float = 0.0
    held: list[BarEvent] = field(default_factory=list)


class BarSequencer:
    def __init__(self, hold_seconds: float = 300.0) -> None:
        self.hold_seconds = hold_seconds
        self._keys: dict[str, _Key] = {}
        self.dropped: dict[Dropped, int] = dict.fromkeys(Dropped, 0)
        #: Back-fills given up since the last `take_given_up()`
        self._given_up: list[GivenUp] = []

    # --- what is already there ----------------------------------------------------------------

    def known(self, symbol: str, last_start: int | None) -> None:
        """The stream's last bar start as read from Redis (None: the stream is empty)."""
        key = self._keys.setdefault(symbol, _Key())
        if last_start is not None and (key.last_start is None or last_start > key.last_start):
            key.last_start = last_start

    def last_start(self, symbol: str) -> int | None:
        key = self._keys.get(symbol)
        return None if key is None else key.last_start

    # --- live bars ------------------------------------------------------------------------------

    def live(self, bar: BarEvent) -> list[BarEvent]:
        """A bar from the stream: published now, held while its key's back-fill is out, or
        dropped if its minute is already there."""
        key = self._keys.setdefault(bar.symbol, _Key())
        if key.filling:
            key.held.append(bar)
            return []
        return self._publish(key, [bar])

    # --- back-fill ----------------------------------------------------------------------------

    def begin_fill(self, symbol: str, from_ms: int, now: float) -> None:
        """A back-fill of `symbol` from `from_ms` is out: hold its live bars until it lands."""
        key = self._keys.setdefault(symbol, _Key())
        if not key.filling:
            key.filling = True
            key.fill_from = from_ms
            key.hold_until = now + self.hold_seconds

    def fill_window(self, symbol: str, from_ms: int) -> None:
        """The first minute the back-fill out asks for (what a give-up reports as missing)."""
        key = self._keys.get(symbol)
        if key is not None and key.filling:
            key.fill_from = from_ms

    def filling_keys(self) -> list[str]:
        return [symbol for symbol, key in self._keys.items() if key.filling]

    def filling(self, symbol: str) -> bool:
        key = self._keys.get(symbol)
        return key is not None and key.filling

    def filled(self, symbol: str, bars: Iterable[BarEvent]) -> list[BarEvent]:
        """The back-filled bars of `symbol` (any order): those before its held live bars are
        published, then the held ones; overlaps are dropped as duplicates."""
        key = self._keys.setdefault(symbol, _Key())
        key.filling = False
        held, key.held = key.held, []
        return self._publish(key, [*sorted(bars, key=_start), *held])

    def abandon(self, symbol: str) -> list[BarEvent]:
        """The back-fill failed for good: release the held bars; the minutes before them stay
        missing (said through `take_given_up`)."""
        key = self._keys.get(symbol)
        if key is None or not key.filling:
            return []
        key.filling = False
        held, key.held = key.held, []
        if held and held[0].start is not None:
            self._given_up.append(GivenUp(symbol, key.fill_from, min(_start(b) for b in held)))
        return self._publish(key, held)

    def expire(self, now: float) -> list[BarEvent]:
        """Release the bars of every key held past `hold_seconds`."""
        out: list[BarEvent] = []
        for symbol, key in self._keys.items():
            if key.filling and now >= key.hold_until:
                out.extend(self.abandon(symbol))
        return out

    def wake_at(self) -> float | None:
        times = [k.hold_until for k in self._keys.values() if k.filling]
        return min(times, default=None)

    def take_given_up(self) -> list[GivenUp]:
        given, self._given_up = self._given_up, []
        return given

    # --- publishing ---------------------------------------------------------------------------

    def _publish(self, key: _Key, bars: list[BarEvent]) -> list[BarEvent]:
        out: list[BarEvent] = []
        for bar in bars:
            start = bar.start
            if start is not None and key.last_start is not None and start <= key.last_start:
                reason = Dropped.DUPLICATE if start == key.last_start else Dropped.OUT_OF_ORDER
                if reason is Dropped.OUT_OF_ORDER and any(b.start == start for b in out):
                    reason = Dropped.DUPLICATE
                self.dropped[reason] += 1
                continue
            if start is not None:
                key.last_start = start
            key.seq += 1
            out.append(msgspec.structs.replace(bar, seq=key.seq))
        return out


def _start(bar: BarEvent) -> int:
    return bar.start if bar.start is not None else -1
