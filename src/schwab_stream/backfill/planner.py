"""BackfillPlanner: which minutes of which key to fetch next, and what to do when a fetch fails.

Sans-I/O: it is told which windows are missing (at start, after a reconnect, for a key added at
run time) and answers with `Fetch`es; the runner does the REST calls and reports back. Keys whose
live bars wait for their back-fill (`urgent`) go first, so a 500-key reconnect under the REST rate
limit delays as few live bars as it can. A failed fetch is tried again with backoff up to
`max_attempts`; one Schwab cannot answer (no history for the symbol) is given up at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from schwab_stream.backoff import Backoff


class Why(StrEnum):
    """Why a window is missing: the status events and log lines say it."""

    START = "start"
    RECONNECT = "reconnect"
    ADDED = "added"


@dataclass(frozen=True, slots=True)
class Fetch:
    service: str
    symbol: str
    #: The minutes [start_ms, end_ms)
    start_ms: int
    end_ms: int
    why: Why
    attempt: int


@dataclass
class _Want:
    service: str
    symbol: str
    start_ms: int
    end_ms: int
    why: Why
    urgent: bool
    attempt: int = 0
    not_before: float = 0.0
    out: bool = False
    #: A window that came while this one was out: fetched after it (they land in order)
    then: _Want | None = None


class BackfillPlanner:
    def __init__(self, max_attempts: int = 6, retry_base: float = 2.0, retry_cap: float = 60.0):
        self.max_attempts = max_attempts
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        #: symbol -> its window (one per key: a new window of a key widens the one waiting)
        self._wants: dict[str, _Want] = {}

    def want(
        self, service: str, symbol: str, start_ms: int, end_ms: int, why: Why, *, urgent: bool
    ) -> bool:
        """The minutes [start_ms, end_ms) of `symbol` are missing; False when the window is
        empty (nothing to do)."""
        if end_ms <= start_ms:
            return False
        current = self._wants.get(symbol)
        if current is not None and current.out:  # one is out: this window waits behind it
            if current.then is None:
                current.then = _Want(service, symbol, start_ms, end_ms, why, urgent)
                return True
            current = current.then
        if current is not None:
            current.start_ms = min(current.start_ms, start_ms)
            current.end_ms = max(current.end_ms, end_ms)
            current.urgent = current.urgent or urgent
            return True
        self._wants[symbol] = _Want(service, symbol, start_ms, end_ms, why, urgent)
        return True

    def next_fetch(self, now: float) -> Fetch | None:
        """The most urgent window that may be fetched now (None: wait for `wake_at` or news)."""
        ready = [
            (not w.urgent, w.not_before, key)
            for key, w in self._wants.items()
            if not w.out and w.not_before <= now
        ]
        if not ready:
            return None
        _, _, key = min(ready)
        want = self._wants[key]
        want.out = True
        want.attempt += 1
        return Fetch(want.service, want.symbol, want.start_ms, want.end_ms, want.why, want.attempt)

    def done(self, fetch: Fetch) -> None:
        want = self._wants.pop(fetch.symbol, None)
        if want is not None and want.then is not None:
            self._wants[fetch.symbol] = want.then

    def failed(self, fetch: Fetch, now: float, *, final: bool = False) -> bool:
        """A fetch failed; True when it will be tried again, False when it is given up (after
        `max_attempts`, or at once when `final`)."""
        want = self._wants.get(fetch.symbol)
        if want is None:
            return False
        if final or want.attempt >= self.max_attempts:
            self.done(fetch)
            return False
        backoff = Backoff(self._retry_base, self._retry_cap, jitter=0.3)
        backoff.attempts = want.attempt - 1
        want.not_before = now + backoff.next()
        want.out = False
        return True

    def wake_at(self) -> float | None:
        times = [w.not_before for w in self._wants.values() if not w.out]
        return min(times, default=None)

    def pending(self, symbol: str) -> bool:
        return symbol in self._wants

    @property
    def idle(self) -> bool:
        return not self._wants
