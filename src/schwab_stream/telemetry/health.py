"""What `/healthz` answers: is this bridge delivering, and if not, why (words a person can act on).

A Redis the bridge cannot deliver to for longer than a grace period makes it unhealthy, with the
cause the topology gave (`RedisWatch`): alerting follows `/healthz`. It is not a reason to
restart: the publisher buffers and conflates through the outage, and a restart would lose that
and not bring Redis back, so supervisors that restart probe `/livez` instead. Keys Schwab refused
(a symbol limit) or never sends data for make the bridge `degraded` (HTTP 200, the keys named),
not unhealthy: the rest streams, and a restart would not change Schwab's answer.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from schwab_stream.redis_topology import Problem

__all__ = ["Health", "RedisWatch"]

#: While Redis stays away, the topology is asked again this often (seconds): the cause may change
#: (sentinels back, the primary still down).
PROBE_EVERY = 5.0


class RedisWatch:
    """Whether the bridge can deliver to Redis, since when, and why not. Sans-I/O: told what
    the parts see (`observe`) and what asking the topology found (`probed`), with `now`; says
    when to ask (`probe_due`) and the log lines owed (`notice`), each cause once per outage."""

    def __init__(self, unhealthy_after: float = 10.0) -> None:
        #: Seconds without delivering to Redis before `/healthz` says unhealthy
        self.unhealthy_after = unhealthy_after
        #: False until a part has reached Redis (and while it cannot)
        self.ok = False
        #: When the parts last found Redis away (monotonic); None while it answers, or not seen
        self.down_since: float | None = None
        #: What asking the topology found, this outage
        self.problem: Problem | None = None
        self._probed_at: float | None = None
        #: The causes said in the log this outage, and when it started
        self._said: set[str] = set()
        self._said_since: float | None = None

    def observe(self, ok: bool, now: float) -> None:
        if ok:
            self.down_since = None
            self.problem = None
            self._probed_at = None
        elif self.down_since is None:
            self.down_since = now
        self.ok = ok

    def probe_due(self, now: float) -> bool:
        if self.down_since is None:
            return False
        return self._probed_at is None or now - self._probed_at >= PROBE_EVERY

    def probed(self, found: Problem, now: float) -> None:
        if self.down_since is not None:  # (not back meanwhile)
            self.problem = found
            self._probed_at = now

    def down_for(self, now: float) -> float | None:
        return None if self.down_since is None else max(0.0, now - self.down_since)

    def unhealthy(self, now: float) -> bool:
        down = self.down_for(now)
        return down is not None and down >= self.unhealthy_after

    def reason(self, now: float) -> str:
        why = self.problem.detail if self.problem else "asking the topology why"
        return f"redis unreachable for {self.down_for(now) or 0:.0f} s: {why}"

    def notice(self, now: float, standby: bool) -> tuple[int, str] | None:
        """A log line owed: once the outage makes `/healthz` unhealthy (a standby at once,
        otherwise past the grace) and its cause is known, for each new cause, and when Redis is
        back after that."""
        found = self.problem
        if found is not None and (standby or self.unhealthy(now)):
            if found.cause in self._said:
                return None
            self._said.add(found.cause)
            self._said_since = self.down_since
            then = (
                "waiting as a standby (no instance can take the lease)"
                if standby
                else "holding events until it is back"
            )
            return logging.ERROR, f"/healthz unhealthy: {self.reason(now)}; {then}"
        if self.ok and self._said_since is not None:
            took = now - self._said_since
            self._said, self._said_since = set(), None
            return logging.INFO, f"redis reachable again after {took:.0f} s: /healthz follows"
        return None


class Health:
    """State the pipeline keeps current; plain attributes so updating them is free on the hot path.

    Times are `time.monotonic()` seconds.
    """

    def __init__(self, redis_unhealthy_after: float = 10.0) -> None:
        self.logged_in = False
        self.subscribed = False
        #: Last data frame or heartbeat; None until the first one.
        self.last_data_or_heartbeat: float | None = None
        #: When `subscribed` last became true: the silence clock starts there, not at startup.
        self.subscribed_since: float | None = None
        #: Whether the bridge delivers to Redis, and why not (the standby's lease tries, else the
        #: publisher's writes)
        self.redis = RedisWatch(redis_unhealthy_after)
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

    @property
    def redis_ok(self) -> bool:
        return self.redis.ok

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
                why = f" ({self.redis.problem.detail})" if self.redis.problem else ""
                return (
                    False,
                    f"standby: redis is unreachable{why}, so no instance can take the lease",
                )
            return True, "standby: waiting to take over from the active instance"
        if self.redis.unhealthy(now):
            return False, self.redis.reason(now)
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
        down = self.redis.down_for(now)
        status = "unhealthy" if not ok else "degraded" if self.degraded() else "ok"
        return {
            "status": status,
            "reason": reason,
            "logged_in": self.logged_in,
            "subscribed": self.subscribed,
            "standby": self.standby,
            "redis_ok": self.redis_ok,
            "redis_cause": self.redis.problem.cause.value if self.redis.problem else None,
            "redis_down_seconds": None if down is None else round(down, 3),
            "redis_unhealthy_seconds": self.redis.unhealthy_after,
            "redis_refused_streams": self.redis_refused_streams,
            "idle": self.idle,
            "refused_keys": self.refused,
            "silent_keys": self.silent_keys,
            "silence_seconds": None if silent is None else round(silent, 3),
            "max_silence_seconds": max_silence,
        }
