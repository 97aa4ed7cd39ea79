"""The running bridge: auth, the stream client, the publisher and telemetry, started and stopped
together. `schwab-stream run` and `demo` both drive this one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from schwab_stream.alerts import ExpiryNotifier
from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.auth.token_store import TokenRecord
from schwab_stream.config import Settings
from schwab_stream.errors import LoginRequiredError, StreamStopped
from schwab_stream.publish.redis import TradingEventPublisher
from schwab_stream.standby import Lease, LeaseLost, StandbyReporter
from schwab_stream.stream.client import SchwabStreamClient, wait_for_new_login
from schwab_stream.telemetry import Health, Metrics, MetricsServer, start_metrics_server
from schwab_stream.telemetry.metrics import CONNECTION_STATES

log = logging.getLogger(__name__)

#: Exit code of `run` when another instance took the lease (this one stopped streaming at once).
EXIT_LEASE_LOST = 4


@dataclass
class Snapshot:
    """What a live view shows: rates, latency, connection and token state."""

    state: str
    events_published: int
    events_per_second: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    queue_depth: int
    reconnects: int
    access_seconds_left: float | None
    refresh_seconds_left: float | None


class _TelemetrySync:
    """Copies the client's and publisher's plain counters into Prometheus once a second, so the
    hot path never touches a metric lock. (Publish latencies need no copy: the publisher counts
    them straight into `metrics.publish_latency`, a histogram made of plain ints.)"""

    def __init__(self, pipeline: Pipeline) -> None:
        self.p = pipeline
        self.seen: dict[str, Counter[str]] = {}

    def _delta(self, name: str, current: Counter[str]) -> dict[str, int]:
        before = self.seen.setdefault(name, Counter())
        delta = {k: v - before[k] for k, v in current.items() if v != before[k]}
        before.update(delta)
        return delta

    def sync(self) -> None:
        self._sync_state()

    def _sync_state(self) -> None:
        p, metrics, health = self.p, self.p.metrics, self.p.health
        client, pub = p.client.stats, p.publisher.stats
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
        for service, when in client.last_message.items():
            metrics.mark_message(service, when)
        state = client.state if client.state in CONNECTION_STATES else "disconnected"
        if health.standby:
            state = "standby"
        metrics.set_connection_state(state)
        metrics.set_redis_up(p.publisher.redis_ok)
        health.logged_in = client.logged_in
        health.set_subscribed(client.subscribed)
        health.redis_ok = p.publisher.redis_ok
        health.redis_refused_streams = p.publisher.held_streams
        health.login_needed = client.login_reason if state == "login_needed" else None
        last = max(client.last_message.values(), default=None)
        if last is not None:
            health.mark_alive(last)

    async def run(self) -> None:
        while True:
            self._sync_state()
            await asyncio.sleep(1.0)


class Pipeline:
    def __init__(self, settings: Settings, subscriptions: dict[str, list[str]]) -> None:
        self.settings = settings
        self.metrics = Metrics()
        self.health = Health()
        self.auth = SchwabAuthClient(settings)
        self.publisher = TradingEventPublisher(
            settings.redis_url,
            prefix=settings.redis_prefix,
            maxlen=settings.stream_maxlen,
            queue_size=settings.queue_size,
            pubsub_mirror=settings.pubsub_mirror,
        )
        self.publisher.stats.latency_sink = self.metrics.publish_latency
        self.client = SchwabStreamClient(
            self.auth,
            subscriptions,
            self.publisher,
            watchdog_seconds=settings.watchdog_seconds,
            command_timeout=settings.command_timeout,
            reconnect_max_delay=settings.reconnect_max_delay,
        )
        self.metrics.set_token_callbacks(
            lambda: self.auth.token_seconds_left()[0], lambda: self.auth.token_seconds_left()[1]
        )
        self.metrics.watch_queue(lambda: self.publisher.depth, settings.queue_size)
        self.telemetry = _TelemetrySync(self)
        self.expiry = ExpiryNotifier(
            settings.expiry_hook, self.publisher.status, settings.expiry_hook_timeout
        )
        self.lease = Lease(settings.redis_url, f"{settings.redis_prefix}:lease", settings.lease_ttl)
        self.metrics_server: MetricsServer | None = None
        self.exit_code = 0
        #: The last status event's detail and code: it says why the run stopped, once.
        self._stopped: tuple[str, int | None] = ("schwab-stream run stopped", None)
        self._stop = asyncio.Event()
        self._rate_mark = (time.monotonic(), 0)

    def stop(self) -> None:
        """Ask the pipeline to stop (safe from a signal handler)."""
        self._stop.set()

    def snapshot(self) -> Snapshot:
        published = sum(self.publisher.stats.published.values())
        now = time.monotonic()
        then, count = self._rate_mark
        rate = (published - count) / (now - then) if now > then else 0.0
        self._rate_mark = (now, published)
        quantiles = self.publisher.stats.latency_quantiles_ms()
        access, refresh = self.auth.token_seconds_left()
        return Snapshot(
            state=self.client.stats.state,
            events_published=published,
            events_per_second=rate,
            latency_p50_ms=quantiles[0] if quantiles else None,
            latency_p99_ms=quantiles[1] if quantiles else None,
            queue_depth=self.publisher.depth,
            reconnects=sum(self.client.stats.reconnects.values()),
            access_seconds_left=access,
            refresh_seconds_left=refresh,
        )

    def _on_refresh(self, record: TokenRecord) -> None:
        self.publisher.status("token_refreshed", "access token refreshed")

    async def run(self) -> int:
        """Run until stop(), a takeover (code 12, or the lease lost) or a fatal error; returns the
        exit code. Waits as a hot standby first while another instance holds the lease."""
        if self.settings.metrics_port:
            self.metrics_server = await start_metrics_server(
                "127.0.0.1",
                self.settings.metrics_port,
                self.metrics,
                self.health,
                self.settings.watchdog_seconds,
            )
            log.info("metrics and health on %s/metrics and /healthz", self.metrics_server.url)
        try:
            if await self._wait_for_lease():
                return await self._run_active()
            log.info("stopped while on standby")
            await self.publisher.close(timeout=0.1)
            await self.auth.aclose()
            return 0
        finally:
            if self.metrics_server is not None:
                await self.metrics_server.stop()
            await self.lease.aclose()

    async def _wait_for_lease(self) -> bool:
        """Hold nothing until the lease is ours (True), or stop() is called (False)."""
        reporter = StandbyReporter(
            self.lease, self.publisher.keys.status, self.settings.stream_maxlen
        )

        async def on_standby(reason: str) -> None:
            redis_down = reason.startswith("redis")
            self.health.standby = True
            self.health.redis_ok = not redis_down
            self.metrics.set_connection_state("standby")
            self.metrics.set_redis_up(not redis_down)
            if redis_down:
                reason = f"{reason} at {_safe_url(self.settings.redis_url)}"
            log.log(
                logging.WARNING if redis_down else logging.INFO,
                "standby: %s",
                reason,
                extra={"state": "standby", "instance": self.lease.instance_id},
            )
            await reporter.report("standby", reason)

        acquired = await self.lease.wait_until_acquired(self._stop, on_standby)
        self.health.standby = False
        return acquired

    async def _run_active(self) -> int:
        publisher_task = asyncio.create_task(self.publisher.run(), name="publisher")
        client_task = asyncio.create_task(self.client.run(), name="stream-client")
        refresh_task = asyncio.create_task(self._keep_tokens_fresh(), name="token-refresh")
        stop_task = asyncio.create_task(self._stop.wait(), name="stop")
        telemetry_task = asyncio.create_task(self.telemetry.run(), name="telemetry")
        lease_task = asyncio.create_task(self.lease.hold(), name="lease")
        log.info(
            "active: holding the lease",
            extra={"state": "active", "instance": self.lease.instance_id},
        )
        self.publisher.status("active", "holding the lease", instance=self.lease.instance_id)
        self.publisher.status("started", "schwab-stream run started")
        try:
            done, _ = await asyncio.wait(
                {client_task, stop_task, lease_task}, return_when=asyncio.FIRST_COMPLETED
            )
            if client_task in done:
                self.exit_code = self._client_outcome(client_task)
            elif lease_task in done:
                self.exit_code = self._lease_outcome(lease_task)
        finally:
            log.info("stopping: logging out and flushing events to redis")
            await self.client.stop()
            # asyncio.wait, not wait_for: the client's exception (code 12) was already handled.
            await asyncio.wait({client_task}, timeout=5.0)
            lease_task.cancel()
            if self.exit_code != EXIT_LEASE_LOST:
                await self.lease.release()  # logged out: a standby may log in right away
            for task in (refresh_task, stop_task, telemetry_task):
                task.cancel()
            await self.expiry.aclose()
            self.telemetry.sync()
            self.publisher.status("stopped", *self._stopped)
            await self.publisher.close(timeout=5.0)
            publisher_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher_task
            await self.auth.aclose()
        return self.exit_code

    async def _keep_tokens_fresh(self) -> None:
        """Refresh ahead of expiry for the whole run; after a dead refresh token, wait for a
        new `schwab-stream login` (the client reports the login_needed state)."""
        while True:
            try:
                await self.auth.refresh_forever(self._on_refresh, self.expiry)
            except LoginRequiredError:
                await wait_for_new_login(self.auth.store.path, self._stop, 2.0)
                if self._stop.is_set():
                    return

    def _lease_outcome(self, task: asyncio.Task[None]) -> int:
        exc = task.exception()
        if isinstance(exc, LeaseLost):
            log.error("%s; stopped streaming so two instances never share one connection", exc)
            self.publisher.status("lease_lost", str(exc))
            return EXIT_LEASE_LOST
        log.error("lease keeper failed: %r", exc)
        return 1

    def _client_outcome(self, task: asyncio.Task[None]) -> int:
        exc = task.exception()
        if isinstance(exc, StreamStopped):
            log.error("%s; not reconnecting so the two sessions do not fight", exc)
            self._stopped = (str(exc), 12)
            return 3
        if exc is not None:
            log.error("stream client failed: %r", exc)
            return 1
        return 0


def _safe_url(url: str) -> str:
    """A Redis URL fit for a log line: the password, if any, masked."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))
