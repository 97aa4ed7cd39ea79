"""What `/healthz` answers: is this bridge delivering, and if not, why (words a person can act on).

Health is about the Schwab side only. Redis being away is reported in the body but does not make the
bridge unhealthy: the publisher buffers and conflates through it, and restarting the bridge (what a
supervisor does on a failed health check) would not bring Redis back. For the same reason, keys
Schwab refused (a symbol limit) or never sends data for make the bridge `degraded` (HTTP 200, the
keys named), not unhealthy: the rest streams, and a restart would not change Schwab's answer.
"""

from __future__ import annotations

import time
from typing import Any

__all__ = ["Health"]


class Health:
    """State the pipeline keeps current; plain attributes so updating them is free on the hot path.

    Times are `time.monotonic()` seconds.
    """

    def __init__(self) -> None:
        self.logged_in = False
        self.subscribed = False
        #: Last data frame or heartbeat; None until the first one.
        self.last_data_or_heartbeat: float | None = None
        #: When `subscribed` last became true: the silence clock starts there, not at startup.
        self.subscribed_since: float | None = None
        self.redis_ok = False
        #: Streams whose key Redis refuses (another type): held by the publisher, others flow.
        self.redis_refused_streams: list[str] = []
        #: Why a person must run `schwab-stream login`, or None.
        self.login_needed: str | None = None
        #: True while this instance waits as a hot standby; that is a healthy state.
        self.standby = False
        #: True while nothing is wanted, so nothing is streamed (healthy: it says so and waits)
        self.idle = False
        #: Keys Schwab refused, per service, and the codes: "SERVICE" -> count
        self.refused: dict[str, int] = {}
        #: Acknowledged keys with no data since their subscription, past the allowed time
        self.silent_keys: list[str] = []

    def mark_alive(self, now: float | None = None) -> None:
        """A data frame or heartbeat arrived."""
        self.last_data_or_heartbeat = time.monotonic() if now is None else now

    def set_subscribed(self, subscribed: bool, now: float | None = None) -> None:
        if subscribed and not self.subscribed:
            self.subscribed_since = time.monotonic() if now is None else now
        self.subscribed = subscribed

    def set_disconnected(self) -> None:
        """The streamer connection is gone: neither logged in nor subscribed any more."""
        self.logged_in = False
        self.subscribed = False

    def silence(self, now: float) -> float | None:
        """Seconds without data or heartbeats since subscribing, or None when not subscribed."""
        if not self.subscribed:
            return None
        marks = [t for t in (self.last_data_or_heartbeat, self.subscribed_since) if t is not None]
        return max(0.0, now - max(marks)) if marks else None

    def check(self, now: float, max_silence: float) -> tuple[bool, str]:
        """(healthy, reason): healthy when logged in, subscribed and not silent past max_silence."""
        if self.login_needed:
            fix = (
                "" if "schwab-stream login" in self.login_needed else " (run `schwab-stream login`)"
            )
            return False, f"login needed: {self.login_needed}{fix}"
        if self.standby:
            if not self.redis_ok:
                # No instance can hold the lease, so nobody is streaming: a person must look.
                return False, "standby: redis is unreachable, so no instance can take the lease"
            return True, "standby: waiting to take over from the active instance"
        if self.idle:
            return True, "idle: nothing to subscribe; waiting for a subscription"
        if not self.logged_in:
            return False, "not logged in to the Schwab streamer"
        if not self.subscribed:
            return False, "logged in but not subscribed"
        silent = self.silence(now)
        if silent is not None and silent > max_silence:
            return False, f"no data or heartbeat for {silent:.1f} s (limit {max_silence:g} s)"
        problems = self.degraded()
        if problems:
            return True, "degraded: " + "; ".join(problems)
        return True, "ok"

    def degraded(self) -> list[str]:
        """What streams less than wanted while the rest streams (empty: nothing)."""
        problems = []
        if self.refused:
            counts = ", ".join(f"{s}={n}" for s, n in self.refused.items())
            problems.append(f"keys refused by Schwab: {counts} (see `schwab-stream subscriptions`)")
        if self.silent_keys:
            shown = ", ".join(self.silent_keys[:10])
            more = len(self.silent_keys) - 10
            shown += f" and {more} more" if more > 0 else ""
            problems.append(f"no data since subscribing: {shown}")
        return problems

    def report(self, now: float, max_silence: float) -> dict[str, Any]:
        """The `/healthz` JSON body: `status` ok, degraded (streaming, some keys not: HTTP 200)
        or unhealthy (HTTP 503)."""
        ok, reason = self.check(now, max_silence)
        silent = self.silence(now)
        status = "unhealthy" if not ok else "degraded" if self.degraded() else "ok"
        return {
            "status": status,
            "reason": reason,
            "logged_in": self.logged_in,
            "subscribed": self.subscribed,
            "standby": self.standby,
            "redis_ok": self.redis_ok,
            "redis_refused_streams": self.redis_refused_streams,
            "idle": self.idle,
            "refused_keys": self.refused,
            "silent_keys": self.silent_keys,
            "silence_seconds": None if silent is None else round(silent, 3),
            "max_silence_seconds": max_silence,
        }
