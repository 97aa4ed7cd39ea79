"""GET /marketdata/v1/pricehistory, sans-I/O: the OAS parameters and the candles, from the tape.

A minute candle is the tape's bar for that minute (tape.py), the very bar CHART_EQUITY /
CHART_FUTURES streams, so a back-filled bar is the bar that would have streamed. Only finished
minutes are served (a bar's start + 1 min <= the market clock), never one in the future.
What the simulator decides where the reference says UNVERIFIED (docs/simulator.md, "Market-data
REST"): startDate and endDate both inclusive, compared with a candle's `datetime` (its start);
history depth `history_days`; no history for options, futures options or forex, and for futures
only with `futures_history`; `history_whole_days` answers whole sessions as schwab-py#148 saw.
"""

from __future__ import annotations

import calendar as _calendar
import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schwab_stream.sim.clock import DAY_MS, MINUTE_MS, et_date, et_ms_of_day
from schwab_stream.sim.hours import at
from schwab_stream.sim.instruments import Instrument
from schwab_stream.sim.registry import Market
from schwab_stream.sim.tape import Bar, Tape
from schwab_stream.sim.wire import wire_double

CHICAGO = ZoneInfo("America/Chicago")

PERIODS: dict[str, tuple[int, ...]] = {
    "day": (1, 2, 3, 4, 5, 10),
    "month": (1, 2, 3, 6),
    "year": (1, 2, 3, 5, 10, 15, 20),
    "ytd": (1,),
}
DEFAULT_PERIOD = {"day": 10, "month": 1, "year": 1, "ytd": 1}
FREQUENCY_TYPES: dict[str, tuple[str, ...]] = {
    "day": ("minute",),
    "month": ("daily", "weekly"),
    "year": ("daily", "weekly", "monthly"),
    "ytd": ("daily", "weekly"),
}
DEFAULT_FREQUENCY_TYPE = {"day": "minute", "month": "weekly", "year": "monthly", "ytd": "weekly"}
FREQUENCIES: dict[str, tuple[int, ...]] = {
    "minute": (1, 5, 10, 15, 30),
    "daily": (1,),
    "weekly": (1,),
    "monthly": (1,),
}
PARAMETERS = frozenset(
    {
        "symbol",
        "periodType",
        "period",
        "frequencyType",
        "frequency",
        "startDate",
        "endDate",
        "needExtendedHoursData",
        "needPreviousClose",
    }
)
#: Kinds with history by default; futures with `futures_history` (schwab-api.md §6.1).
HISTORY_KINDS = frozenset({"equity", "index"})


class BadParameter(ValueError):
    """A 400: `detail` says what is wrong, `parameter` names the query parameter."""

    def __init__(self, parameter: str, detail: str) -> None:
        super().__init__(detail)
        self.parameter = parameter
        self.detail = detail


@dataclass(frozen=True)
class HistoryRequest:
    symbol: str
    period_type: str
    period: int
    frequency_type: str
    frequency: int
    start_ms: int | None
    end_ms: int | None
    extended: bool
    previous_close: bool


@dataclass(frozen=True)
class HistoryPolicy:
    """The settings (SimConfig) that shape answers."""

    depth_days: int = 48
    futures: bool = False
    whole_days: bool = False


def _int(query: Mapping[str, str], name: str) -> int | None:
    raw = query.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise BadParameter(name, f"{name} must be an integer, got {raw!r}") from None


def _bool(query: Mapping[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() not in ("true", "false"):
        raise BadParameter(name, f"{name} must be true or false, got {raw!r}")
    return raw.lower() == "true"


def parse(query: Mapping[str, str]) -> HistoryRequest:
    """The request, with the OAS defaults filled in (BadParameter for a 400)."""
    symbol = query.get("symbol", "").strip()
    if not symbol:
        raise BadParameter("symbol", "symbol is required")
    period_type = query.get("periodType") or "day"
    if period_type not in PERIODS:
        raise BadParameter(
            "periodType", f"periodType must be one of {', '.join(PERIODS)}, got {period_type!r}"
        )
    period = _int(query, "period")
    if period is None:
        period = DEFAULT_PERIOD[period_type]
    if period not in PERIODS[period_type]:
        allowed = ", ".join(map(str, PERIODS[period_type]))
        raise BadParameter("period", f"period for periodType {period_type} is one of {allowed}")
    frequency_type = query.get("frequencyType") or DEFAULT_FREQUENCY_TYPE[period_type]
    if frequency_type not in FREQUENCY_TYPES[period_type]:
        allowed = ", ".join(FREQUENCY_TYPES[period_type])
        raise BadParameter(
            "frequencyType", f"frequencyType for periodType {period_type} is one of {allowed}"
        )
    frequency = _int(query, "frequency") or 1
    if frequency not in FREQUENCIES[frequency_type]:
        allowed = ", ".join(map(str, FREQUENCIES[frequency_type]))
        raise BadParameter(
            "frequency", f"frequency for frequencyType {frequency_type} is one of {allowed}"
        )
    start_ms, end_ms = _int(query, "startDate"), _int(query, "endDate")
    for name, value in (("startDate", start_ms), ("endDate", end_ms)):
        if value is not None and value < 0:
            raise BadParameter(name, f"{name} must be epoch milliseconds")
    if start_ms is not None and end_ms is not None and start_ms > end_ms:
        raise BadParameter("startDate", "startDate must not be after endDate")
    return HistoryRequest(
        symbol=symbol,
        period_type=period_type,
        period=period,
        frequency_type=frequency_type,
        frequency=frequency,
        start_ms=start_ms,
        end_ms=end_ms,
        extended=_bool(query, "needExtendedHoursData", True),
        previous_close=_bool(query, "needPreviousClose", False),
    )


# ---- the window ------------------------------------------------------------------------------


def _months_back(day: date, months: int) -> date:
    month = day.month - 1 - months
    year = day.year + month // 12
    month = month % 12 + 1
    return date(year, month, min(day.day, _calendar.monthrange(year, month)[1]))


def window(tape: Tape, req: HistoryRequest, now_ms: int) -> tuple[int, int]:
    """[start, end] (inclusive, epoch ms) the request asks for, defaults as the OAS says: endDate
    the close of the previous business day, startDate endDate minus the period (trading days for
    periodType day)."""
    end = req.end_ms
    if end is None:
        today = et_date(now_ms)
        previous = tape.previous_trade_date(today + timedelta(days=1))
        spans = tape.schedule.spans(previous)
        if not spans or spans[0][1] > now_ms:
            previous = tape.previous_trade_date(previous)
            spans = tape.schedule.spans(previous)
        end = spans[0][1] - 1 if spans else now_ms
    start = req.start_ms
    if start is None:
        last_day = tape.trade_date_at(end) or et_date(end)
        if req.period_type == "day":
            first = last_day
            for _ in range(req.period - 1):
                first = tape.previous_trade_date(first)
            spans = tape.schedule.spans(first)
            start = spans[0][0] if spans else at(first, 0)
        elif req.period_type == "month":
            start = at(_months_back(last_day, req.period), 0)
        elif req.period_type == "year":
            start = at(_months_back(last_day, 12 * req.period), 0)
        else:
            start = at(date(last_day.year, 1, 1), 0)
    return start, end


# ---- the answer ------------------------------------------------------------------------------


def _chicago_midnight(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=CHICAGO).timestamp() * 1000)


def _candle(bar: Bar, places: int) -> dict[str, Any]:
    return {
        "open": wire_double(bar.open, places),
        "high": wire_double(bar.high, places),
        "low": wire_double(bar.low, places),
        "close": wire_double(bar.close, places),
        "volume": int(bar.volume),
        "datetime": bar.start_ms,
    }


def _merge(bars: list[Bar], start_ms: int) -> Bar:
    return Bar(
        start_ms,
        bars[0].open,
        max(b.high for b in bars),
        min(b.low for b in bars),
        bars[-1].close,
        sum(b.volume for b in bars),
    )


def _aggregate_minutes(bars: list[Bar], frequency: int) -> list[Bar]:
    """k-minute candles from one-minute ones, aligned to New York clock minutes (09:30, 09:35)."""
    if frequency == 1:
        return bars
    size = frequency * MINUTE_MS
    groups: dict[int, list[Bar]] = {}
    for bar in bars:
        groups.setdefault(bar.start_ms - et_ms_of_day(bar.start_ms) % size, []).append(bar)
    return [_merge(group, start) for start, group in groups.items()]


def _daily(tape: Tape, day: date, now_ms: int, depth_start: int) -> Bar | None:
    """One trade date's daily candle (regular session), stamped 00:00 America/Chicago: the
    minute bars' aggregate inside the minute-history depth, a coarser model before it."""
    spans = tape.schedule.spans(day, regular=True)
    if not spans or spans[0][1] > now_ms:
        return None
    stamp = _chicago_midnight(day)
    if spans[0][0] >= depth_start:
        bars = tape.bars(spans[0][0], spans[0][1])
        return _merge(bars, stamp) if bars else None
    rng = random.Random(f"{tape.seed}|{tape.symbol}|daily|{day.isoformat()}")
    open_ = tape.anchor(day)
    close = tape.anchor(tape.next_trade_date(day)) * math.exp(rng.gauss(0, tape.sigma * 5))
    high = max(open_, close) * (1 + abs(rng.gauss(0, tape.daily / 2)))
    low = min(open_, close) * (1 - abs(rng.gauss(0, tape.daily / 2)))
    volume = int(390 * sum(tape.per_minute) / 2 * 5 * tape.trade_lot * rng.uniform(0.7, 1.3))
    r = tape.places
    return Bar(stamp, round(open_, r), round(high, r), round(low, r), round(close, r), volume)


def _long_candles(
    tape: Tape, req: HistoryRequest, start: int, end: int, now_ms: int, depth_start: int
) -> list[Bar]:
    days: list[Bar] = []
    day, last = et_date(start), et_date(end)
    while day <= last:
        if tape.schedule.trades_on(day):
            candle = _daily(tape, day, now_ms, depth_start)
            if candle is not None:
                days.append(candle)
        day += timedelta(days=1)
    if req.frequency_type == "daily":
        return days
    groups: dict[date, list[Bar]] = {}
    for candle in days:
        d = datetime.fromtimestamp(candle.start_ms / 1000, CHICAGO).date()
        key = (
            d - timedelta(days=d.weekday()) if req.frequency_type == "weekly" else d.replace(day=1)
        )
        groups.setdefault(key, []).append(candle)
    return [_merge(group, group[0].start_ms) for group in groups.values()]


def _whole_sessions(tape: Tape, start: int, end: int) -> tuple[int, int]:
    """The window widened to the whole sessions it touches."""
    first = tape.schedule.spans(tape.trade_date_at(start) or et_date(start))
    last = tape.schedule.spans(tape.trade_date_at(end) or et_date(end))
    return (first[0][0] if first else start), (last[0][1] - 1 if last else end)


def has_history(inst: Instrument | None, policy: HistoryPolicy) -> bool:
    if inst is None or inst.tape is None:
        return False
    return inst.kind in HISTORY_KINDS or (inst.kind == "future" and policy.futures)


def answer(market: Market, req: HistoryRequest, policy: HistoryPolicy) -> dict[str, Any]:
    """The CandleList for a request: `{"candles":[...], ["previousClose", "previousCloseDate",]
    "symbol", "empty"}` in the captured key order."""
    now_ms = market.now_ms()
    inst = market.instrument(req.symbol)
    body: dict[str, Any] = {"candles": []}
    if inst is not None and has_history(inst, policy):
        tape = inst.tape
        assert tape is not None
        start, end = window(tape, req, now_ms)
        depth_start = now_ms - policy.depth_days * DAY_MS
        if req.frequency_type == "minute":
            if policy.whole_days:  # schwab-py#148: whole sessions whatever the window
                start, end = _whole_sessions(tape, start, end)
            lo = max(start, depth_start)
            hi = min(end, now_ms - MINUTE_MS)  # only finished minutes
            bars = tape.bars(lo, hi + 1)
            if not req.extended:
                regular = tape.schedule
                bars = [b for b in bars if regular.regular_at(b.start_ms)]
            candles = _aggregate_minutes(bars, req.frequency)
        else:
            candles = _long_candles(tape, req, start, end, now_ms, depth_start)
        body["candles"] = [_candle(c, inst.places) for c in candles]
        if req.previous_close:
            first_day = tape.trade_date_at(start) or tape.next_trade_date(et_date(start))
            price, _ = tape.previous_close(first_day)
            body["previousClose"] = wire_double(price, inst.places)
            body["previousCloseDate"] = _chicago_midnight(tape.previous_trade_date(first_day))
    body["symbol"] = req.symbol
    body["empty"] = not body["candles"]
    return body
