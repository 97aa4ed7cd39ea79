"""Schwab's price-history candles as bar events: the window's well-formed minutes, each once, in
order (`rest.candles.candles_between`), with CHART_EQUITY's fields; what was left out is counted
by kind, never published as a wrong bar. Sans-I/O.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from schwab_stream.events import BarEvent
from schwab_stream.rest.candles import candles_between
from schwab_stream.rest.models import CandleList

MINUTE_MS = 60_000
NEW_YORK = ZoneInfo("America/New_York")
#: CHART_EQUITY's `sequence` counts minutes from 07:00 New York time (779 is the 19:59 bar).
CHART_EQUITY_FIRST_MINUTE = 7 * 60


class CandleProblem(StrEnum):
    """What was left out of an answer: the `backfill_candles_bad_total` reasons."""

    #: Outside the minutes asked for (expected: Schwab may send the whole day)
    OUTSIDE = "outside"
    #: A second candle for a minute: the first is kept
    DUPLICATE = "duplicate"
    #: The answer was not in time order (it is sorted before use): counted once per answer
    OUT_OF_ORDER = "out_of_order"
    #: Figures that cannot be true (`rest.candles.well_formed`): dropped
    BAD_VALUE = "bad_value"


def to_bars(
    service: str,
    symbol: str,
    answer: CandleList,
    start_ms: int,
    end_ms: int,
    recv_ns: int,
    problems: Counter[str],
) -> list[BarEvent]:
    """The bars of the minutes [start_ms, end_ms) in `answer`, sorted by start, marked
    back-filled; `problems` counts what was left out, by `CandleProblem`."""
    window = candles_between(answer, start_ms, end_ms)
    problems[CandleProblem.OUTSIDE] += window.outside
    problems[CandleProblem.DUPLICATE] += window.duplicates
    problems[CandleProblem.BAD_VALUE] += window.malformed
    problems[CandleProblem.OUT_OF_ORDER] += window.reordered
    return [
        BarEvent(
            service=service,
            symbol=symbol,
            schwab_ts=None,
            recv_ns=recv_ns,
            start=candle.datetime,
            open=candle.open,
            high=candle.high,
            low=candle.low,
            close=candle.close,
            volume=candle.volume,  # an int, as a live bar's
            sequence=chart_sequence(candle.datetime) if service == "CHART_EQUITY" else None,
            backfilled=True,
        )
        for candle in window.candles
    ]


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
