"""Sans-I/O: the minute bars of a price-history answer that may be published for a time range.

Schwab may answer a narrow minute request with the whole day (schwab-py#148) and whether
`endDate` is inclusive is UNVERIFIED (docs/schwab-protocol.md §14), so the client returns what
Schwab sent and the caller keeps a window with this. Each candle dropped is counted by why, so a
back-fill can say what it refused instead of publishing a wrong bar.
"""

from __future__ import annotations

import math

import msgspec

from schwab_stream.rest.models import Candle, CandleList

MINUTE_MS = 60_000


class CandleWindow(msgspec.Struct, frozen=True):
    """The candles of `[start_ms, end_ms)`, one per minute, in time order, and what was dropped:
    `outside` the range, `duplicates` of a minute already kept (the first one wins), `malformed`
    (not on a minute boundary, a non-finite price or a negative volume, high below low or outside
    open/close). `reordered` says Schwab's order was not time order."""

    candles: list[Candle]
    outside: int = 0
    duplicates: int = 0
    malformed: int = 0
    reordered: bool = False


def well_formed(candle: Candle) -> bool:
    """A one-minute bar whose figures can be true."""
    prices = (candle.open, candle.high, candle.low, candle.close)
    if candle.datetime % MINUTE_MS or candle.volume < 0:
        return False
    if not all(math.isfinite(p) for p in prices):  # negative is possible (oil, April 2020)
        return False
    body_low, body_high = sorted((candle.open, candle.close))
    return candle.low <= body_low and body_high <= candle.high


def candles_between(answer: CandleList, start_ms: int, end_ms: int) -> CandleWindow:
    """The bars starting at or after `start_ms` and before `end_ms` (half-open, whatever Schwab
    does with endDate), de-duplicated by minute and sorted by start."""
    kept: dict[int, Candle] = {}
    outside = duplicates = malformed = 0
    reordered = False
    previous: int | None = None
    for candle in answer.candles:
        if previous is not None and candle.datetime < previous:
            reordered = True
        previous = candle.datetime
        if not well_formed(candle):
            malformed += 1
        elif not start_ms <= candle.datetime < end_ms:
            outside += 1
        elif candle.datetime in kept:
            duplicates += 1
        else:
            kept[candle.datetime] = candle
    return CandleWindow(
        candles=[kept[minute] for minute in sorted(kept)],
        outside=outside,
        duplicates=duplicates,
        malformed=malformed,
        reordered=reordered,
    )
