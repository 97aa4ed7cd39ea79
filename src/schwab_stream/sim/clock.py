"""New York time and the exchange calendar: market-hours, expiries and futures contract months.

Schwab stamps books and charts in New York wall-clock terms and expires contracts on New York
dates, so every such rule lives here, computed from epoch ms with DST taken from the tz database.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

ET = ZoneInfo("America/New_York")
DAY_MS = 86_400_000
MINUTE_MS = 60_000

MONTH_CODES = "FGHJKMNQUVXZ"
MONTH_ABBR = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@lru_cache(maxsize=4096)
def _et_offset_ms(hour_key: int) -> int:
    """New York's UTC offset for the UTC hour starting at hour_key*3600 s (DST moves on hours)."""
    offset = datetime.fromtimestamp(hour_key * 3600, ET).utcoffset()
    assert offset is not None
    return int(offset.total_seconds() * 1000)


def et_local_ms(epoch_ms: int) -> int:
    """Epoch ms shifted to New York wall-clock ms (so // DAY_MS is the ET day number)."""
    return epoch_ms + _et_offset_ms(epoch_ms // 3_600_000)


def et_ms_of_day(epoch_ms: int) -> int:
    """Milliseconds since midnight America/New_York (book market-maker times)."""
    return et_local_ms(epoch_ms) % DAY_MS


def et_date(epoch_ms: int) -> date:
    return date(1970, 1, 1) + timedelta(days=et_local_ms(epoch_ms) // DAY_MS)


def parse_market_time(text: str) -> datetime:
    """`YYYY-MM-DDTHH:MM` read as New York time (ValueError otherwise)."""
    try:
        moment = datetime.strptime(text.strip(), "%Y-%m-%dT%H:%M")
    except ValueError:
        raise ValueError(f"{text!r} is not YYYY-MM-DDTHH:MM (New York time)") from None
    return moment.replace(tzinfo=ET)


def utc_midnight_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1000)


def third_friday(year: int, month: int) -> date:
    """Monthly expiry day of options and (here) of futures contracts."""
    first = date(year, month, 1)
    return first + timedelta(days=(4 - first.weekday()) % 7 + 14)


def front_contract(quarterly: bool, today: date) -> tuple[str, int]:
    """(month code + YY, YYYYMM) of the contract a bare root like /ES trades as today."""
    months = (3, 6, 9, 12) if quarterly else tuple(range(1, 13))
    year, month = today.year, today.month + (0 if quarterly else 1)
    if month > 12:
        year, month = year + 1, 1
    while month not in months or (
        quarterly and month == today.month and today > third_friday(year, month)
    ):
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return MONTH_CODES[month - 1] + f"{year % 100:02d}", year * 100 + month
