"""Sans-I/O rate limiter for the market-data REST calls of one process.

Two rules, because Schwab's limiter is undocumented (docs/schwab-protocol.md §14): never more
than `per_minute` requests in any 60 s (a sliding window, so a server that counts by window is
never exceeded), and no more than `burst` at once, then one every 60/`per_minute` s (a token
bucket as GCRA, so a server that counts per second is not hit by a wall). A 429 pauses every
caller, not just the one that got it. The clock comes in: `acquire(now)`.
"""

from __future__ import annotations

import math
from collections import deque
from email.utils import parsedate_to_datetime

WINDOW_SECONDS = 60.0


class RateLimiter:
    """Hands out request slots. `acquire(now)` reserves the next one and says how long until it;
    a caller sleeps that long and, if `paused_for` is then positive, acquires again."""

    __slots__ = ("_granted", "_interval", "_paused_until", "_tat", "burst", "per_minute")

    def __init__(self, per_minute: int, burst: int | None = None) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        if burst is not None and burst < 1:
            raise ValueError("burst must be at least 1")
        self.per_minute = per_minute
        self.burst = per_minute if burst is None else min(burst, per_minute)
        self._interval = WINDOW_SECONDS / per_minute
        #: GCRA's theoretical arrival time of the next request at the steady rate
        self._tat = -math.inf
        #: The last `per_minute` slots handed out, oldest first
        self._granted: deque[float] = deque(maxlen=per_minute)
        self._paused_until = -math.inf

    def acquire(self, now: float) -> float:
        """Reserve the earliest slot both rules and any pause allow: seconds from `now` to it
        (0: go now). Slots are handed out in order, so waiting callers are served first come,
        first served."""
        slot = max(now, self._paused_until, self._tat - (self.burst - 1) * self._interval)
        if self._granted:
            slot = max(slot, self._granted[-1])
            if len(self._granted) == self.per_minute:
                slot = max(slot, self._granted[0] + WINDOW_SECONDS)
        self._granted.append(slot)
        self._tat = max(self._tat, slot) + self._interval
        return slot - now

    def pause(self, now: float, seconds: float) -> None:
        """Hold every caller for `seconds` from `now` (a 429); a longer pause already set stays."""
        self._paused_until = max(self._paused_until, now + max(0.0, seconds))

    def paused_for(self, now: float) -> float:
        """Seconds the current pause has left, 0 when none."""
        return max(0.0, self._paused_until - now)


def retry_after_seconds(value: str | None, wall_now: float) -> float | None:
    """The wait a `Retry-After` header asks for (delta-seconds or an HTTP date, against the wall
    clock `wall_now`), None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - wall_now
        except (TypeError, ValueError, IndexError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None
