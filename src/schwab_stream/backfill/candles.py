"""Schwab's price-history candles as bar events: only well-formed minutes inside the window asked
for, each once, in order; anything else is counted, never published as a wrong bar.

Sans-I/O. Schwab may answer a minute request with the whole day (schwab-py#148), so candles
outside the window are expected and only counted; the other problems are the server's.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo

from schwab_stream.events import BarEvent

MINUTE_MS = 60_000
NEW_YORK = ZoneInfo("America/New_York")
#: CHART_EQUITY's `sequence` counts minutes from 07:00 New York time (779 is the 19:59 bar).
CHART_EQUITY_FIRST_MINUTE = 7 * 60


class CandleProblem(StrEnum):
    """What was wrong with a candle: the `backfill_candles_bad_total` reasons."""

    #: Outside the minutes asked for (expected: Schwab may send the whole day)
    OUTSIDE = "outside"
    #: A second candle for a minute: the first is kept
    DUPLICATE = "duplicate"
    #: Before the candle ahead of it in the answer (they are sorted before use)
    OUT_OF_ORDER = "out_of_order"
    #: Not a minute start, a price that is not a positive finite number, high below low,
    #: open or close outside them, or a negative volume: dropped
    BAD_VALUE = "bad_value"


class Candle(Protocol):
    @property
    def open(self) -> float: ...
    @property
    def high(self) -> float: ...
    @property
    def low(self) -> float: ...
    @property
    def close(self) -> float: ...
    @property
    def volume(self) -> int | float: ...
    @property
    def datetime(self) -> int: ...


def to_bars(
    service: str,
    symbol: str,
    candles: Iterable[Candle],
    start_ms: int,
    end_ms: int,
    recv_ns: int,
    problems: Counter[str],
) -> list[BarEvent]:
    """The bars of the minutes [start_ms, end_ms) among `candles`, sorted by start, marked
    back-filled; `problems` counts what was left out, by `CandleProblem`."""
    by_start: dict[int, BarEvent] = {}
    previous = -1
    for candle in candles:
        start = candle.datetime
        if start < previous:
            problems[CandleProblem.OUT_OF_ORDER] += 1
        previous = start
        if not start_ms <= start < end_ms:
            problems[CandleProblem.OUTSIDE] += 1
            continue
        if not _well_formed(candle):
            problems[CandleProblem.BAD_VALUE] += 1
            continue
        if start in by_start:
            problems[CandleProblem.DUPLICATE] += 1
            continue
        by_start[start] = BarEvent(
            service=service,
            symbol=symbol,
            schwab_ts=None,
            recv_ns=recv_ns,
            start=start,
            open=float(candle.open),
            high=float(candle.high),
            low=float(candle.low),
            close=float(candle.close),
            volume=float(candle.volume),
            sequence=chart_sequence(start) if service == "CHART_EQUITY" else None,
            backfilled=True,
        )
    return [by_start[start] for start in sorted(by_start)]


def _well_formed(candle: Candle) -> bool:
    prices = (candle.open, candle.high, candle.low, candle.close)
    if candle.datetime % MINUTE_MS:
        return False
    if not all(isinstance(p, int | float) and math.isfinite(p) and p > 0 for p in prices):
        return False
    volume = candle.volume
    if not isinstance(volume, int | float) or not math.isfinite(volume) or volume < 0:
        return False
    return (
        candle.low
        <= min(candle.open, candle.close)
        <= max(candle.open, candle.close)
        <= (candle.high)
    )


def chart_sequence(start_ms: int) -> int:
    """CHART_EQUITY's field 1 for a bar starting at `start_ms`: minutes since 07:00 New York."""
    local = datetime.fromtimestamp(start_ms / 1000, NEW_YORK)
    return local.hour * 60 + local.minute - CHART_EQUITY_FIRST_MINUTE


def minute_floor(ms: int) -> int:
    return ms - ms % MINUTE_MS


def local_time_ms(day_ms: int, hour: int, minute: int, days_back: int = 0) -> int:
    """Epoch ms of HH:MM New York time on the New York date of `day_ms` (minus `days_back`)."""
    day = datetime.fromtimestamp(day_ms / 1000, NEW_YORK).date() - timedelta(days=days_back)
    return (
        int(datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK).timestamp())
        * 1000
    )
