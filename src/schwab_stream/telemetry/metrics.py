"""Prometheus metrics of one bridge, in their own registry so tests and embedders get fresh sets.

The pipeline updates these per frame and per batch, so each helper uses a label child bound once
and cached; what is cheaper to read than to keep current (message ages, token lifetimes, queue
depth) is computed when Prometheus scrapes.
"""

from __future__ import annotations

import bisect
import logging
import math
import platform
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Info
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

from schwab_stream import __version__
from schwab_stream.stream.state import ConnectionState
from schwab_stream.telemetry.logging import log_once

__all__ = [
    "CONNECTION_STATES",
    "EVENT_TYPES",
    "FRAME_KINDS",
    "NAMESPACE",
    "PUBLISH_LATENCY_BUCKETS",
    "LatencyHistogram",
    "Metrics",
]

NAMESPACE = "schwab_stream"

#: Streamer frame kinds: `data`, `response` (to our commands), `notify`, `heartbeat`.
FRAME_KINDS: tuple[str, ...] = ("data", "response", "notify", "heartbeat")
#: Event `type` values of the v1 contract.
EVENT_TYPES: tuple[str, ...] = ("tick", "level2", "bar", "screener", "account", "status")
#: Values of the `state` label of `connection_state` (the client's `ConnectionState`, in its
#: order); exactly one is 1 at any time.
CONNECTION_STATES: tuple[str, ...] = tuple(state.value for state in ConnectionState)
#: From 50 µs (a local Redis pipeline round trip) to 1 s (Redis in trouble).
PUBLISH_LATENCY_BUCKETS: tuple[float, ...] = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)

log = logging.getLogger(__name__)

SecondsLeft = Callable[[], float | None]


class _MessageAges:
    """Scrape-time collector: seconds since the last message of each service that sent one."""

    name = f"{NAMESPACE}_last_message_age_seconds"
    doc = "Seconds since the last streamer message (data or heartbeat) of each service."

    def __init__(self) -> None:
        self.last_seen: dict[str, float] = {}

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.doc, labels=["service"])

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.doc, labels=["service"])
        now = time.monotonic()
        for service, seen in sorted(self.last_seen.items()):
            family.add_metric([service], max(0.0, now - seen))
        yield family


class LatencyHistogram:
    """`publish_latency_seconds`, counted in plain ints by the publisher (one bisect per batch)
    and turned into a Prometheus histogram only when scraped.

    prometheus_client's Histogram takes a lock and a Python call per observation; copying a
    second's batches into it held the event loop long enough, once a second, to show as the p99
    of the latency bench (figures: docs/performance.md, "Figures behind design choices"). Counts
    are only ever incremented, so a scrape from the metrics thread sees at worst a batch counted
    in one bucket and not yet in the sum.
    """

    name = f"{NAMESPACE}_publish_latency_seconds"
    doc = "Seconds from receiving a frame to Redis acknowledging its events."

    def __init__(self, buckets: tuple[float, ...] = PUBLISH_LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self._bounds_ns = [round(b * 1e9) for b in buckets]
        self._counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self._sum_ns = 0

    def observe_ns(self, ns: int) -> None:
        self._counts[bisect.bisect_left(self._bounds_ns, ns)] += 1
        self._sum_ns += ns

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(self.name, self.doc)

    def collect(self) -> Iterator[HistogramMetricFamily]:
        cumulative, total = [], 0
        for bound, count in zip((*map(str, self.buckets), "+Inf"), self._counts, strict=True):
            total += count
            cumulative.append((bound, total))
        yield HistogramMetricFamily(
            self.name, self.doc, buckets=cumulative, sum_value=self._sum_ns / 1e9
        )


class Metrics:
    """Every metric of the bridge (names in docs/operations.md) and cheap helpers to update them."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry: CollectorRegistry = (
            registry if registry is not None else CollectorRegistry(auto_describe=True)
        )
        common: dict[str, Any] = {"namespace": NAMESPACE, "registry": self.registry}
        self.frames_received = Counter(
            "frames_received", "Streamer frames received, by kind.", ["kind"], **common
        )
        self.frames_bad = Counter(
            "frames_bad",
            "Frames or items that could not be decoded, by reason.",
            ["reason"],
            **common,
        )
        self.events_published = Counter(
            "events_published", "Events written to Redis, by event type.", ["type"], **common
        )
        self.events_dropped = Counter(
            "events_dropped", "Events lost, by event type and reason.", ["type", "reason"], **common
        )
        self.events_conflated = Counter(
            "events_conflated",
            "Events replaced by a newer state of the same key while Redis was behind, by type.",
            ["type"],
            **common,
        )
        self.reconnects = Counter(
            "reconnects", "Streamer reconnect attempts, by reason.", ["reason"], **common
        )
        self.access_token_seconds_left = Gauge(
            "access_token_seconds_left", "Seconds until the access token expires.", **common
        )
        self.refresh_token_seconds_left = Gauge(
            "refresh_token_seconds_left",
            "Seconds until the refresh token expires and a person must log in again.",
            **common,
        )
        self.queue_depth = Gauge(
            "queue_depth", "Events waiting between the streamer and the publisher.", **common
        )
        self.queue_capacity = Gauge(
            "queue_capacity", "Capacity of the streamer-to-publisher queue.", **common
        )
        self.connection_state = Gauge(
            "connection_state",
            "Streamer connection state: 1 for the current state, 0 for the others.",
            ["state"],
            **common,
        )
        self.redis_up = Gauge("redis_up", "1 when the last Redis operation succeeded.", **common)
        self.subscription_keys = Gauge(
            "subscription_keys",
            "Wanted streamer keys by service and state (active, pending, refused, silent: "
            "acknowledged but no data since).",
            ["service", "state"],
            **common,
        )
        self._subscription_labels: set[tuple[str, str]] = set()
        # Back-fill and market-data REST (docs/backfill.md): counted from their plain stats
        self.rest_requests = Counter(
            "rest_requests",
            "Market-data REST calls by endpoint and outcome (ok, or why it failed).",
            ["endpoint", "outcome"],
            **common,
        )
        self.rest_retries = Counter(
            "rest_retries",
            "REST attempts made again (429, 5xx, network), by endpoint.",
            ["endpoint"],
            **common,
        )
        self.backfill_bars = Counter(
            "backfill_bars", "Bars published from Schwab's price history to fill gaps.", **common
        )
        self.backfill_fetches = Counter(
            "backfill_fetches",
            "Back-fill windows fetched, by outcome (ok, retried, given_up).",
            ["outcome"],
            **common,
        )
        self.backfill_minutes_missing = Counter(
            "backfill_minutes_missing",
            "Minutes a back-fill gave up on (said in backfill_incomplete status events).",
            **common,
        )
        self.backfill_candles_bad = Counter(
            "backfill_candles_bad",
            "Price-history candles left out, by reason (outside, duplicate, out_of_order, "
            "bad_value).",
            ["reason"],
            **common,
        )
        self.bars_dropped = Counter(
            "bars_dropped",
            "Bars not published because their minute was already in the stream (duplicate) or "
            "older than one published (out_of_order).",
            ["reason"],
            **common,
        )
        self.build_info = Info("build", "Version of schwab-stream and of Python.", **common)
        self.build_info.info({"version": __version__, "python": platform.python_version()})

        self._ages = _MessageAges()
        self.registry.register(self._ages)
        self.publish_latency = LatencyHistogram()
        self.registry.register(self.publish_latency)
        self._frames = {k: self.frames_received.labels(k) for k in FRAME_KINDS}
        self._published = {t: self.events_published.labels(t) for t in EVENT_TYPES}
        self._conflated = {t: self.events_conflated.labels(t) for t in EVENT_TYPES}
        self._bad: dict[str, Any] = {}
        self._dropped: dict[tuple[str, str], Any] = {}
        self._reconnects: dict[str, Any] = {}
        self._states = {s: self.connection_state.labels(s) for s in CONNECTION_STATES}
        self.set_connection_state(ConnectionState.DISCONNECTED)
        self.access_token_seconds_left.set_function(lambda: math.nan)
        self.refresh_token_seconds_left.set_function(lambda: math.nan)

    # --- hot path ------------------------------------------------------------------------

    def inc_frame(self, kind: str, n: int = 1) -> None:
        """Count received frames of `kind` (one of FRAME_KINDS)."""
        child = self._frames.get(kind)
        if child is None:
            child = self._frames[kind] = self.frames_received.labels(kind)
        child.inc(n)

    def inc_bad_frame(self, reason: str, n: int = 1) -> None:
        """Count frames or items that failed to decode; keep `reason` to a small fixed set."""
        child = self._bad.get(reason)
        if child is None:
            child = self._bad[reason] = self.frames_bad.labels(reason)
        child.inc(n)

    def inc_published(self, event_type: str, n: int = 1) -> None:
        """Count events of `event_type` that Redis acknowledged."""
        child = self._published.get(event_type)
        if child is None:
            child = self._published[event_type] = self.events_published.labels(event_type)
        child.inc(n)

    def inc_dropped(self, event_type: str, reason: str, n: int = 1) -> None:
        """Count events lost for good, with why (e.g. `queue_full`, `redis_down`)."""
        key = (event_type, reason)
        child = self._dropped.get(key)
        if child is None:
            child = self._dropped[key] = self.events_dropped.labels(event_type, reason)
        child.inc(n)

    def inc_conflated(self, event_type: str, n: int = 1) -> None:
        """Count events superseded by a newer state of the same key before reaching Redis."""
        child = self._conflated.get(event_type)
        if child is None:
            child = self._conflated[event_type] = self.events_conflated.labels(event_type)
        child.inc(n)

    def mark_message(self, service: str, now: float | None = None) -> None:
        """Note a message (data or heartbeat) of `service` at `now` (time.monotonic())."""
        self._ages.last_seen[service] = time.monotonic() if now is None else now

    def keep_message_ages(self, services: set[str]) -> None:
        """Drop the ages of services not in `services` (no longer subscribed: their age would
        only grow and fire the stale alert)."""
        for service in [s for s in self._ages.last_seen if s not in services]:
            del self._ages.last_seen[service]

    def observe_publish_latency(self, seconds: float) -> None:
        """Record one receive-to-acknowledge latency (the publisher calls `observe_ns`)."""
        self.publish_latency.observe_ns(round(seconds * 1e9))

    # --- state changes -------------------------------------------------------------------

    def inc_reconnect(self, reason: str) -> None:
        """Count a reconnect attempt; `reason` from a small set (`dropped`, `silence`, `code_3`)."""
        child = self._reconnects.get(reason)
        if child is None:
            child = self._reconnects[reason] = self.reconnects.labels(reason)
        child.inc()

    def set_connection_state(self, state: str) -> None:
        """Make `state` (a `ConnectionState`, or its value) the current one."""
        if state not in self._states:
            raise ValueError(
                f"unknown connection state {state!r}; expected one of {CONNECTION_STATES}"
            )
        for name, child in self._states.items():
            child.set(1 if name == state else 0)

    def set_subscription_keys(self, counts: dict[tuple[str, str], int]) -> None:
        """Key counts by (service, state); series of pairs no longer present are removed."""
        for labels in self._subscription_labels - counts.keys():
            self.subscription_keys.remove(*labels)
        for labels, n in counts.items():
            self.subscription_keys.labels(*labels).set(n)
        self._subscription_labels = set(counts)

    def set_redis_up(self, up: bool) -> None:
        self.redis_up.set(1 if up else 0)

    def set_token_callbacks(self, access: SecondsLeft, refresh: SecondsLeft) -> None:
        """Read both token lifetimes at scrape time; a callback returning None means no token."""
        self.access_token_seconds_left.set_function(_safe_seconds("access", access))
        self.refresh_token_seconds_left.set_function(_safe_seconds("refresh", refresh))

    def watch_queue(self, depth: Callable[[], int], capacity: int) -> None:
        """Read the queue depth at scrape time from `depth` (e.g. `queue.qsize`)."""
        self.queue_capacity.set(capacity)
        self.queue_depth.set_function(lambda: float(depth()))


def _safe_seconds(which: str, source: SecondsLeft) -> Callable[[], float]:
    """A scrape must not fail because the token file is mid-rewrite: errors read as NaN."""

    def read() -> float:
        try:
            value = source()
        except Exception as exc:
            log_once(
                log,
                f"telemetry.token_seconds.{which}",
                "cannot read token lifetime for metrics",
                which=which,
                error=repr(exc),
            )
            return math.nan
        return math.nan if value is None else float(value)

    return read
