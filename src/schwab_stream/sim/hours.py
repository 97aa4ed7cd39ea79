"""When each market trades, in New York time: the sessions, and the moments fields reset.

Sans-I/O: every question takes epoch ms of market time. A `Schedule` answers for one kind of
instrument: equities trade in the extended session of NYSE trading days (pre 07:00-09:30,
regular 09:30-16:00, post 16:00-20:00), options and indexes in the regular session only,
futures from the evening before each trade date (Sunday 18:00 for Monday) to 17:00, forex from
17:00 the evening before to 17:00 on weekdays. The times are `MarketHours`, a setting
(`sim --hours`), because some of them are UNVERIFIED (docs/simulator.md says which).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from functools import lru_cache

from schwab_stream.sim.calendar import is_early_close, is_trading_day
from schwab_stream.sim.clock import ET, et_date, et_ms_of_day

Span = tuple[int, int]  # [start, end) in epoch ms
#: How far the schedules look for a session before or after a moment (longest holiday gap + 1).
SEARCH_DAYS = 16
#: CME is closed all day on these NYSE holidays (others are shortened sessions, here full ones).
CME_CLOSED = ((1, 1), (12, 25))


def hhmm(text: str) -> int:
    """'HH:MM' as minutes since midnight (ValueError otherwise)."""
    hours, sep, minutes = text.partition(":")
    if not sep or not (hours.isdigit() and minutes.isdigit() and len(minutes) == 2):
        raise ValueError(f"{text!r} is not HH:MM")
    value = int(hours) * 60 + int(minutes)
    if not 0 <= value <= 24 * 60 or int(minutes) > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return value


@dataclass(frozen=True)
class MarketHours:
    """Session times, minutes since midnight New York (`sim --hours NAME=HH:MM`)."""

    equity_open: int = 7 * 60  # pre-market opens (the /markets capture)
    regular_open: int = 9 * 60 + 30
    regular_close: int = 16 * 60
    equity_close: int = 20 * 60  # post-market closes
    early_regular_close: int = 13 * 60  # day after Thanksgiving, July 3, Christmas Eve
    early_equity_close: int = 17 * 60  # UNVERIFIED: post-market on an early-close day
    futures_open: int = 18 * 60  # the evening before each trade date (UNVERIFIED)
    futures_close: int = 17 * 60  # the daily break is futures_close..futures_open
    forex_open: int = 17 * 60  # the evening before each weekday (Sunday reopen UNVERIFIED)
    forex_close: int = 17 * 60  # last EUR/USD quote before the weekend: Fri 16:59 (captures)

    def replace(self, settings: list[str]) -> MarketHours:
        """These hours with NAME=HH:MM settings applied (ValueError names a bad one)."""
        names = {f.name for f in fields(self)}
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        for setting in settings:
            name, _, value = setting.partition("=")
            if name not in names:
                raise ValueError(f"unknown hours {name!r}: one of {', '.join(sorted(names))}")
            values[name] = hhmm(value)
        return MarketHours(**values)


@lru_cache(maxsize=8192)
def at(day: date, minute: int) -> int:
    """Epoch ms of `minute` minutes after midnight New York on `day` (negative: the day before)."""
    local = datetime(day.year, day.month, day.day) + timedelta(minutes=minute)
    return int(local.replace(tzinfo=ET).timestamp() * 1000)


class Schedule:
    """One kind of instrument's sessions, with the answers to recent questions cached (the feed
    asks for every key of every frame, and market time moves forward)."""

    def __init__(self, kind: str, hours: MarketHours) -> None:
        self.kind = kind
        self.hours = hours
        self._open: tuple[int, int, bool] = (0, 0, False)
        self._regular: tuple[int, int, bool] = (0, 0, False)
        self._resets: dict[int, tuple[int, int, int]] = {}

    # ---- what trades on which date --------------------------------------------------------

    def trades_on(self, day: date) -> bool:
        """Is `day` a trade date of this market?"""
        if self.kind in ("future", "future_option"):
            return day.weekday() < 5 and (day.month, day.day) not in CME_CLOSED
        if self.kind == "forex":
            return day.weekday() < 5
        return is_trading_day(day)

    def spans(self, day: date, regular: bool = False) -> list[Span]:
        """The open span of trade date `day` (the regular one with `regular`), if it trades."""
        if not self.trades_on(day):
            return []
        h = self.hours
        if self.kind in ("future", "future_option"):
            return [(at(day, h.futures_open - 24 * 60), at(day, h.futures_close))]
        if self.kind == "forex":
            return [(at(day, h.forex_open - 24 * 60), at(day, h.forex_close))]
        early = is_early_close(day)
        close = h.early_regular_close if early else h.regular_close
        if regular or self.kind in ("option", "index"):
            return [(at(day, h.regular_open), at(day, close))]
        return [
            (at(day, h.equity_open), at(day, h.early_equity_close if early else h.equity_close))
        ]

    # ---- questions about a moment ----------------------------------------------------------

    def open_at(self, ms: int) -> bool:
        """Does this market trade at `ms` (equities: the extended session)?"""
        lo, hi, value = self._open
        if not lo <= ms < hi:
            self._open = lo, hi, value = self._state(ms, regular=False)
        return value

    def regular_at(self, ms: int) -> bool:
        """Is `ms` in the regular session (for all but equities, the same as open_at)?"""
        lo, hi, value = self._regular
        if not lo <= ms < hi:
            self._regular = lo, hi, value = self._state(ms, regular=True)
        return value

    def _state(self, ms: int, regular: bool) -> tuple[int, int, bool]:
        """(from, until, open): the stretch around `ms` in which the answer does not change."""
        span = self._span_at(ms, regular)
        if span is not None:
            return span[0], span[1], True
        return self.last_close(ms, regular), self.next_open(ms, regular), False

    def _span_at(self, ms: int, regular: bool) -> Span | None:
        today = et_date(ms)
        for day in (today, today + timedelta(days=1)):
            for start, end in self.spans(day, regular):
                if start <= ms < end:
                    return start, end
        return None

    def next_open(self, ms: int, regular: bool = False) -> int:
        """`ms` if open then, else when the next session starts."""
        today = et_date(ms)
        for n in range(SEARCH_DAYS):
            for start, end in self.spans(today + timedelta(days=n), regular):
                if end > ms:
                    return max(start, ms)
        raise ValueError(f"no session within {SEARCH_DAYS} days after {ms}")

    def last_close(self, ms: int, regular: bool = False) -> int:
        """When the latest session that ended by `ms` ended."""
        today = et_date(ms)
        for n in range(-1, SEARCH_DAYS):
            for _, end in reversed(self.spans(today - timedelta(days=n), regular)):
                if end <= ms:
                    return end
        raise ValueError(f"no session within {SEARCH_DAYS} days before {ms}")

    def last_open(self, ms: int, regular: bool = False) -> int:
        """`ms` if open then, else the last millisecond of the latest session."""
        if self._span_at(ms, regular) is not None:
            return ms
        return self.last_close(ms, regular) - 1

    def reset_day(self, ms: int, minute: int) -> int:
        """The latest trade date whose `minute` (New York, may be negative) has passed by `ms`,
        as an ordinal: a field that resets at that minute resets when this changes."""
        lo, hi, value = self._resets.get(minute, (0, 0, 0))
        if lo <= ms < hi:
            return value
        today = et_date(ms)
        day = today + timedelta(days=2)
        while not (self.trades_on(day) and at(day, minute) <= ms):
            day -= timedelta(days=1)
        following = day + timedelta(days=1)
        while not self.trades_on(following):
            following += timedelta(days=1)
        self._resets[minute] = (at(day, minute), at(following, minute), day.toordinal())
        return day.toordinal()


def session_name(equity: Schedule, ms: int) -> str:
    """The equity session at `ms`: "pre-market", "regular session", "post-market" or "closed"."""
    if equity.regular_at(ms):
        return "regular session"
    if not equity.open_at(ms):
        return "closed"
    before_open = et_ms_of_day(ms) < equity.hours.regular_open * 60_000
    return "pre-market" if before_open else "post-market"
