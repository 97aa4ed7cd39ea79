"""CHART_EQUITY and CHART_FUTURES: one finished one-minute bar as chart fields.

CHART_EQUITY uses the corrected field order (docs/schwab-protocol.md §9.5, §10): its sequence
and chart day are New York wall-clock numbers, computed here from the bar's start.
"""

from __future__ import annotations

from typing import Any

from schwab_stream.sim.clock import DAY_MS, MINUTE_MS, et_local_ms, et_ms_of_day
from schwab_stream.sim.instruments import Bar
from schwab_stream.sim.wire import wire_double


def chart_sequence(start_ms: int) -> int:
    """CHART_EQUITY field 1: the candle's minutes since 07:00 ET (779 is the 19:59 candle)."""
    return et_ms_of_day(start_ms) // MINUTE_MS - 7 * 60


def chart_day(start_ms: int) -> int:
    """CHART_EQUITY field 8: days since 1970-01-01 of the candle's New York date."""
    return et_local_ms(start_ms) // DAY_MS


def chart_item(service: str, bar: Bar) -> dict[str, Any]:
    """CHART_EQUITY (corrected order) or CHART_FUTURES fields for one finished bar."""
    ohlcv = {
        "2": wire_double(bar.open, 6),
        "3": wire_double(bar.high, 6),
        "4": wire_double(bar.low, 6),
        "5": wire_double(bar.close, 6),
        "6": wire_double(float(bar.volume), 0),
    }
    if service == "CHART_FUTURES":
        return {"1": bar.start_ms, **ohlcv}
    return {
        "1": chart_sequence(bar.start_ms),
        **ohlcv,
        "7": bar.start_ms,
        "8": chart_day(bar.start_ms),
    }
