"""One place where the parts' plain counters become Prometheus metrics and the health verdict.

The stream client and the publisher count in plain ints and Counters on the hot path (no metric
lock); this copies what changed once a second. Publish latencies need no copy: the publisher
counts them straight into `Metrics.publish_latency`, a histogram made of plain ints.
`watch_redis` asks the Redis topology why while the bridge cannot deliver to it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from schwab_stream.redis_client import diagnose
from schwab_stream.redis_topology import Problem
from schwab_stream.stream.state import ConnectionState

if TYPE_CHECKING:
    from schwab_stream.backfill.runner import Backfiller
    from schwab_stream.publish.stats import PublisherStats
    from schwab_stream.stream.client import ClientStats
    from schwab_stream.stream.subscriptions import SubscriptionBook
    from schwab_stream.telemetry.health import Health
    from schwab_stream.telemetry.metrics import Metrics

log = logging.getLogger(__name__)


class PublisherView(Protocol):
    @property
    def stats(self) -> PublisherStats: ...
    @property
    def redis_ok(self) -> bool: ...
    @property
    def held_streams(self) -> list[str]: ...


class TelemetrySync:
    def __init__(
        self,
        metrics: Metrics,
        health: Health,
        client: ClientStats,
        publisher: PublisherView,
        book: SubscriptionBook,
        *,
        silent_key_after: float = 300.0,
        backfill: Backfiller | None = None,
    ) -> None:
        self.metrics = metrics
        self.health = health
        self.client = client
        self.publisher = publisher
        self.book = book
        self.backfill = backfill
        #: Seconds an acknowledged key may go without any data before it is called silent
        self.silent_key_after = silent_key_after
        #: When each wanted service was first seen here without a message: its age counts from
        #: then, so a service that never sends anything still gets (a growing) age
        self._wanted_since: dict[str, float] = {}
        self._seen: dict[str, Counter[str]] = {}
        #: Events written per second over the last sync interval
        self.events_per_second = 0.0
        self._rate_mark = (time.monotonic(), 0)

    def _delta(self, name: str, current: Counter[str]) -> dict[str, int]:
        before = self._seen.setdefault(name, Counter())
        delta = {k: v - before[k] for k, v in current.items() if v != before[k]}
        before.update(delta)
        return delta

    def sync(self) -> None:
        metrics, health, client = self.metrics, self.health, self.client
        pub = self.publisher.stats
        for kind, n in self._delta("frames", client.frames).items():
            metrics.inc_frame(kind, n)
        for reason, n in self._delta("bad", client.bad_frames).items():
            metrics.inc_bad_frame(reason, n)
        for reason, n in self._delta("reconnects", client.reconnects).items():
            for _ in range(n):
                metrics.inc_reconnect(reason)
        for kind, n in self._delta("published", pub.published).items():
            metrics.inc_published(kind, n)
        for kind, n in self._delta("conflated", pub.conflated).items():
            metrics.inc_conflated(kind, n)
        for kind, n in self._delta("dropped", pub.dropped).items():
            metrics.inc_dropped(kind, "queue_full", n)
        self._sync_subscriptions()
        if self.backfill is not None:
            self._sync_backfill(self.backfill)
        state = ConnectionState.STANDBY if health.standby else client.state
        metrics.set_connection_state(state)
        redis_ok = self.publisher.redis_ok
        metrics.set_redis_up(redis_ok)
        health.logged_in = client.logged_in
        health.set_subscribed(client.subscribed)
        health.redis.observe(redis_ok, time.monotonic())
        health.redis_refused_streams = self.publisher.held_streams
        health.login_needed = client.login_reason if state is ConnectionState.LOGIN_NEEDED else None
        health.idle = state is ConnectionState.IDLE
        last = max(client.last_message.values(), default=None)
        if last is not None:
            health.mark_alive(last)
        self._measure_rate(sum(pub.published.values()))

    def _sync_backfill(self, backfill: Backfiller) -> None:
        metrics, stats = self.metrics, backfill.stats
        rest = backfill.history.stats
        calls = Counter({f"{e}\0{o}": n for (e, o), n in rest.calls.items()})
        for label, n in self._delta("rest_calls", calls).items():
            endpoint, outcome = label.split("\0")
            metrics.rest_requests.labels(endpoint, outcome).inc(n)
        for endpoint, n in self._delta("rest_retries", rest.retries).items():
            metrics.rest_retries.labels(endpoint).inc(n)
        for outcome, n in self._delta("backfill_fetches", stats.fetches).items():
            metrics.backfill_fetches.labels(outcome).inc(n)
        for reason, n in self._delta("candles_bad", stats.candles_bad).items():
            metrics.backfill_candles_bad.labels(reason).inc(n)
        dropped = Counter({str(k): v for k, v in backfill.sequencer.dropped.items()})
        for reason, n in self._delta("bars_dropped", dropped).items():
            metrics.bars_dropped.labels(reason).inc(n)
        totals = Counter({"bars": stats.bars, "missing": stats.minutes_given_up})
        for name, n in self._delta("backfill_totals", totals).items():
            counter = metrics.backfill_bars if name == "bars" else metrics.backfill_minutes_missing
            counter.inc(n)

    def _sync_subscriptions(self) -> None:
        """Message ages for every wanted service (from subscribing when it never sent one),
        key counts by state, and what /healthz calls degraded."""
        metrics, book, now = self.metrics, self.book, time.monotonic()
        wanted = set(book.streaming)
        for service in wanted:
            when = self.client.last_message.get(service)
            if when is None:
                when = self._wanted_since.setdefault(service, now)
            metrics.mark_message(service, when)
        heartbeat = self.client.last_message.get("heartbeat")
        if heartbeat is not None:
            metrics.mark_message("heartbeat", heartbeat)
        metrics.keep_message_ages(wanted | {"heartbeat"})
        for service in [s for s in self._wanted_since if s not in wanted]:
            del self._wanted_since[service]
        silent = book.silent_keys(now, self.silent_key_after)
        counts: Counter[tuple[str, str]] = Counter()
        for status in book.status():
            counts[status.service, status.state.value] += 1
        for service, _ in silent:
            counts[service, "silent"] += 1
        metrics.set_subscription_keys(dict(counts))
        self.health.refused = book.refused_counts()
        self.health.silent_keys = [f"{service}={key}" for service, key in silent]

    def _measure_rate(self, published: int) -> None:
        now = time.monotonic()
        then, count = self._rate_mark
        if now > then:
            self.events_per_second = (published - count) / (now - then)
        self._rate_mark = (now, published)

    async def run(self, interval: float = 1.0) -> None:
        while True:
            self.sync()
            await asyncio.sleep(interval)


async def watch_redis(
    health: Health,
    redis_url: str,
    probe: Callable[[str], Awaitable[Problem]] = diagnose,
    interval: float = 1.0,
) -> None:
    """While the bridge cannot deliver to Redis, ask the topology why (every few seconds: the
    cause may change), and log what `/healthz` says about it, each cause once per outage."""
    watch = health.redis
    while True:
        if watch.probe_due(time.monotonic()):
            try:
                found = await probe(redis_url)
            except Exception as exc:  # (a diagnosis must not end the bridge; asked again later)
                log.debug("asking redis why failed: %s: %s", type(exc).__name__, exc)
            else:
                watch.probed(found, time.monotonic())
        said = watch.notice(time.monotonic(), health.standby)
        if said is not None:
            log.log(*said)
        await asyncio.sleep(interval)
