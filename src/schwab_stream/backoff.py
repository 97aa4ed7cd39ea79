"""Exponential backoff with jitter, the one formula every retry in the package uses.

Sans-I/O: it says how long to wait, the caller sleeps. Jitter spreads the retries of many
clients (or many held streams) so they do not hit a recovering server in step.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable


class Backoff:
    """Delays `base * 2**(n-1)` capped at `cap`, each scaled by a random factor in
    [`1 - jitter`, 1]. `reset()` after a success starts again from `base`."""

    __slots__ = ("_random", "attempts", "base", "cap", "jitter")

    def __init__(
        self,
        base: float,
        cap: float,
        *,
        jitter: float = 0.5,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not 0.0 <= jitter <= 1.0:
            raise ValueError("jitter is a fraction of the delay, from 0 to 1")
        self.base = base
        self.cap = cap
        self.jitter = jitter
        #: Delays handed out since the last reset
        self.attempts = 0
        self._random = rng

    def ceiling(self) -> float:
        """The delay the next `next()` scales down by its jitter. The exponent stops growing
        once the cap is reached, so weeks of failures never overflow a float."""
        if self.base <= 0 or self.base >= self.cap:
            return max(0.0, min(self.base, self.cap))
        doublings = min(self.attempts, math.ceil(math.log2(self.cap) - math.log2(self.base)))
        try:
            return min(self.cap, math.ldexp(self.base, doublings))
        except OverflowError:  # a cap near the largest float
            return self.cap

    def next(self) -> float:
        """The next delay, in seconds; each call doubles the ceiling up to the cap."""
        delay = self.ceiling() * (1.0 - self.jitter * self._random())
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
