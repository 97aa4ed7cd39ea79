"""The refresh token's clock, sans-I/O: when a person is warned, and how its times are told.

Schwab's refresh token dies about 7 days after the browser login and refreshing never extends it,
so a bridge left alone for a week stops unless a person logs in again. This module is the one
place that decides:

* the thresholds (48 h, 24 h, 1 h left) at which a person is warned, once each per login
  (`ExpiryWarnings`, `crossed_threshold`), and when the next one is due (`next_warning_in`);
* what `token status` calls fine, expiring or expired (`refresh_state`);
* the words of the warning and the human form of token times (`warning_message`,
  `format_duration`, `format_when`).

Everything takes the time left (or `now`) from its caller: no clock is read here. The auth client
logs the warning, `alerts` carries it further (status event, hook), `cli` shows the state.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

#: Refresh-token time left (seconds) at which a person is warned, once each per login.
THRESHOLDS: tuple[float, ...] = (48 * 3600.0, 24 * 3600.0, 3600.0)

RefreshState = Literal["ok", "expiring", "expired"]


def crossed_threshold(
    seconds_left: float, thresholds: tuple[float, ...] = THRESHOLDS
) -> float | None:
    """The most urgent threshold `seconds_left` is at or below; None above them all or expired.

    A bridge started at 20 h left announces the 24 h threshold only: the 48 h one is old news.
    """
    if seconds_left <= 0:
        return None
    crossed = [t for t in thresholds if seconds_left <= t]
    return min(crossed) if crossed else None


def next_warning_in(
    seconds_left: float, thresholds: tuple[float, ...] = THRESHOLDS
) -> float | None:
    """Seconds until the next threshold is reached (0 when one is due now); None when none is
    ahead."""
    upcoming = [seconds_left - t for t in thresholds if seconds_left > t]
    return max(min(upcoming), 0.0) if upcoming else None


def refresh_state(seconds_left: float) -> RefreshState:
    """`expired` (a login is needed), `expiring` (inside the first threshold: log in soon) or
    `ok`."""
    if seconds_left <= 0:
        return "expired"
    return "expiring" if crossed_threshold(seconds_left) is not None else "ok"


class ExpiryWarnings:
    """Which warnings were given: each threshold once per login (a new login starts over)."""

    __slots__ = ("_last", "thresholds")

    def __init__(self, thresholds: tuple[float, ...] = THRESHOLDS) -> None:
        self.thresholds = thresholds
        self._last: tuple[float, float] | None = None  # (login_at, threshold)

    def due(self, login_at: float, seconds_left: float) -> float | None:
        """The threshold to warn about now, or None (none crossed, or this one already said)."""
        threshold = crossed_threshold(seconds_left, self.thresholds)
        if threshold is None or self._last == (login_at, threshold):
            return None
        self._last = (login_at, threshold)
        return threshold


def warning_message(seconds_left: float, expires_at: float) -> str:
    """The warning a person reads in the log, the status event and the hook's environment."""
    return (
        f"the Schwab refresh token expires in {format_duration(seconds_left)} "
        f"(at {format_when(expires_at)}): run `schwab-stream login` before then"
    )


def format_when(epoch: float) -> str:
    """Local wall-clock time of an epoch, for messages people read."""
    return datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def format_duration(seconds: float) -> str:
    """A compact "2 d 3 h" for messages people read."""
    if seconds <= 0:
        return "0 s (expired)"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
