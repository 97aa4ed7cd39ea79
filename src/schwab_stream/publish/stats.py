"""The publisher's own counters: plain ints and Counters that telemetry reads, no locks (one
event loop), nothing on the hot path but an increment."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Protocol


class LatencySink(Protocol):
    def observe_ns(self, ns: int) -> None: ...


@dataclass
class PublisherStats:
    #: Events written, conflated (replaced by a newer one of their stream) and dropped (past the
    #: hard cap), by event kind
    published: Counter[str] = field(default_factory=Counter)
    conflated: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    #: Flights Redis answered (heartbeat-only writes are not counted)
    batches: int = 0
    #: Failed writes and refusals, each counted once per try
    redis_errors: int = 0
    #: (oldest, newest) receive-to-ack latency in ns of recent batches
    latencies_ns: deque[tuple[int, int]] = field(default_factory=lambda: deque(maxlen=4096))
    #: Also told each batch's oldest-event latency, when set (the Prometheus histogram)
    latency_sink: LatencySink | None = None

    def latency_quantiles_ms(self) -> tuple[float, float] | None:
        """p50 and p99 of recent batches' oldest-event latency, in milliseconds."""
        if not self.latencies_ns:
            return None
        values = sorted(oldest for oldest, _ in self.latencies_ns)
        p50 = values[len(values) // 2]
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        return p50 / 1e6, p99 / 1e6

    def total_conflated(self) -> int:
        return sum(self.conflated.values())

    def total_dropped(self) -> int:
        return sum(self.dropped.values())
