"""The NYSE calendar: which New York dates trade, and which close early.

Equities and options trade only on exchange trading days, so the simulator needs the real
holidays for any year a `--market-time` may name. They are computed from NYSE Rule 7.2 (fixed
dates moved off weekends, Monday holidays, Good Friday from Easter) plus the few unscheduled
closures tabled below, rather than tabled for a handful of years that would run out.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import lru_cache

#: Unscheduled full-day closures (national days of mourning, storms, 9/11).
SPECIAL_CLOSURES = frozenset(
    {
        date(2001, 9, 11),
        date(2001, 9, 12),
        date(2001, 9, 13),
        date(2001, 9, 14),
        date(2004, 6, 11),
        date(2007, 1, 2),
        date(2012, 10, 29),
        date(2012, 10, 30),
        date(2018, 12, 5),
        date(2025, 1, 9),
    }
)


def easter(year: int) -> date:
    """Western Easter Sunday (the anonymous Gregorian computus)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    weekday_fix = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * weekday_fix) // 451
    month, day = divmod(h + weekday_fix - 7 * m + 114, 31)
    return date(year, month, day + 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th `weekday` (0 = Monday) of a month; n = -1 is the last one."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """A fixed-date holiday on a Saturday moves to the Friday before, on a Sunday to Monday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=256)
def holidays(year: int) -> frozenset[date]:
    """NYSE full-day holidays of `year` (New Year's Day on a Saturday is not moved: Rule 7.2)."""
    days = {
        _nth_weekday(year, 1, 0, 3),  # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),  # Washington's Birthday
        easter(year) - timedelta(days=2),  # Good Friday
        _nth_weekday(year, 5, 0, -1),  # Memorial Day
        _observed(date(year, 7, 4)),
        _nth_weekday(year, 9, 0, 1),  # Labor Day
        _nth_weekday(year, 11, 3, 4),  # Thanksgiving
        _observed(date(year, 12, 25)),
    }
    new_year = date(year, 1, 1)
    if new_year.weekday() != 5:
        days.add(_observed(new_year))
    if year >= 2022:
        days.add(_observed(date(year, 6, 19)))  # Juneteenth
    days |= {d for d in SPECIAL_CLOSURES if d.year == year}
    return frozenset(days)


def is_trading_day(day: date) -> bool:
    """A weekday that is not an NYSE holiday."""
    return day.weekday() < 5 and day not in holidays(day.year)


@lru_cache(maxsize=256)
def early_closes(year: int) -> frozenset[date]:
    """Days the regular session ends at 13:00: July 3 before a Tuesday-Friday Independence Day,
    the day after Thanksgiving, and Christmas Eve on a weekday that is not itself a holiday."""
    days = {_nth_weekday(year, 11, 3, 4) + timedelta(days=1)}
    if date(year, 7, 4).weekday() in (1, 2, 3, 4):
        days.add(date(year, 7, 3))
    eve = date(year, 12, 24)
    if eve.weekday() < 5 and eve not in holidays(year):
        days.add(eve)
    return frozenset(days)


def is_early_close(day: date) -> bool:
    return day in early_closes(day.year)
