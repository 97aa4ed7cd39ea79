"""The running bridge: auth, the stream client, the publisher and telemetry, started and stopped
together. `schwab-stream run` and `demo` both drive this one object.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from schwab_stream.alerts import ExpiryNotifier
from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.auth.token_store import TokenRecord
from schwab_stream.backfill.gate import BarGate
from schwab_stream.backfill.quotes import seed_latest
from schwab_stream.backfill.runner import Backfiller, SessionStart
from schwab_stream.backfill.sequencer import BarSequencer
from schwab_stream.config import Settings
from schwab_stream.control.bridge import ControlLoop
from schwab_stream.errors import ExitCode, LeaseLost, LoginRequiredError, StreamStopped
from schwab_stream.publish.redis import TradingEventPublisher
from schwab_stream.redact import safe_url
from schwab_stream.rest.client import MarketDataClient
from schwab_stream.sink import EventSink
from schwab_stream.standby import Lease, Standby, StandbyReason, StandbyReporter
from schwab_stream.stream.client import SchwabStreamClient, wait_for_new_login
from schwab_stream.stream.state import ConnectionState
from schwab_stream.telemetry.health import Health
from schwab_stream.telemetry.metrics import Metrics
from schwab_stream.telemetry.server import MetricsServer, start_metrics_server
from schwab_stream.telemetry.sync import TelemetrySync, watch_redis

log = logging.getLogger(__name__)


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


class Pipeline:
    """Owns one of each part and runs them as tasks on one event loop. Build it with
    `from_settings`; the constructor takes the parts, so a test or a bench can swap one."""

    def __init__(
        self,
        settings: Settings,
        *,
        auth: SchwabAuthClient,
        publisher: TradingEventPublisher,
        client: SchwabStreamClient,
        lease: Lease,
        metrics: Metrics,
        health: Health,
        backfill: Backfiller | None = None,
        rest: MarketDataClient | None = None,
    ) -> None:
        self.settings = settings
        self.auth = auth
        self.publisher = publisher
        self.client = client
        self.lease = lease
        self.metrics = metrics
        self.health = health
        #: Bars missed while the socket was down (or before start) from Schwab's price history
        self.backfill = backfill
        #: The one market-data REST client of the process (back-fill, quotes at start)
        self.rest = rest
        self.telemetry = TelemetrySync(
            metrics,
            health,
            client.stats,
            publisher,
            client.book,
            silent_key_after=settings.silent_key_seconds,
            backfill=backfill,
        )
        self.expiry = ExpiryNotifier(settings.expiry_hook, publisher, settings.expiry_hook_timeout)
        #: Live subscriptions: the settings' keys are pinned, the rest comes from Redis
        self.control = ControlLoop(
            settings.redis_url, settings.redis_prefix, client, client.book.wanted, publisher
        )
        metrics.set_token_callbacks(
            lambda: auth.token_seconds_left()[0], lambda: auth.token_seconds_left()[1]
        )
        metrics.watch_queue(lambda: publisher.depth, settings.queue_size)
        publisher.stats.latency_sink = metrics.publish_latency
        # Every status event this bridge writes (the client's, the expiry notifier's, the
        # publisher's own gaps, ours) carries info.instance, so two bridges can be told apart.
        publisher.core.status_info["instance"] = lease.instance_id
        self.metrics_server: MetricsServer | None = None
        self.exit_code = ExitCode.OK
        #: The last status event's detail and code: it says why the run stopped, once.
        self._stopped: tuple[str, int | None] = ("schwab-stream run stopped", None)
        self._stop = asyncio.Event()

    @classmethod
    def from_settings(cls, settings: Settings, subscriptions: dict[str, list[str]]) -> Pipeline:
        """The bridge `run` and `demo` drive: every part configured from `settings`."""
        auth = SchwabAuthClient(settings)
        publisher = TradingEventPublisher(
            settings.redis_url,
            prefix=settings.redis_prefix,
            maxlen=settings.stream_maxlen,
            queue_size=settings.queue_size,
            pubsub_mirror=settings.pubsub_mirror,
        )
        backfill: Backfiller | None = None
        sink: EventSink = publisher
        if settings.backfill:
            sequencer = BarSequencer(settings.backfill_hold_seconds)
            # (the gate calls the back-fill, which is built after the client it watches)
            sink = BarGate(
                publisher,
                sequencer,
                lambda: backfill.on_logged_in() if backfill else None,
                lambda ts: backfill.observe(ts) if backfill else None,
            )
        client = SchwabStreamClient(
            auth,
            subscriptions,
            sink,
            watchdog_seconds=settings.watchdog_seconds,
            max_frame_bytes=settings.max_frame_bytes,
            command_timeout=settings.command_timeout,
            reconnect_max_delay=settings.reconnect_max_delay,
        )
        rest: MarketDataClient | None = None
        if settings.backfill or settings.quotes_at_start:
            rest = MarketDataClient(
                auth,
                requests_per_minute=settings.rest_requests_per_minute,
                timeout=settings.rest_timeout,
                max_attempts=settings.rest_max_attempts,
            )
        if settings.backfill and rest is not None:
            backfill = Backfiller(
                rest,
                settings.redis_url,
                settings.redis_prefix,
                publisher,
                lambda: client.book.wanted,
                sequencer=sequencer,
                sessions=SessionStart.from_settings(
                    settings.backfill_equity_from, settings.backfill_futures_from
                ),
                concurrency=settings.backfill_concurrency,
            )
            client.on_change = backfill.on_change
        lease = Lease(settings.redis_url, f"{settings.redis_prefix}:lease", settings.lease_ttl)
        return cls(
            settings,
            auth=auth,
            publisher=publisher,
            client=client,
            lease=lease,
            metrics=Metrics(),
            health=Health(settings.redis_unhealthy_seconds),
            backfill=backfill,
            rest=rest,
        )

    def stop(self) -> None:
        """Ask the pipeline to stop (safe from a signal handler)."""
        self._stop.set()

    def snapshot(self) -> Snapshot:
        """What a live view shows; reading it changes nothing."""
        quantiles = self.publisher.stats.latency_quantiles_ms()
        access, refresh = self.auth.token_seconds_left()
        return Snapshot(
            state=self.client.stats.state,
            events_published=sum(self.publisher.stats.published.values()),
            events_per_second=self.telemetry.events_per_second,
            latency_p50_ms=quantiles[0] if quantiles else None,
            latency_p99_ms=quantiles[1] if quantiles else None,
            queue_depth=self.publisher.depth,
            reconnects=sum(self.client.stats.reconnects.values()),
            access_seconds_left=access,
            refresh_seconds_left=refresh,
        )

    def _on_refresh(self, record: TokenRecord) -> None:
        self.publisher.status("token_refreshed", "access token refreshed")

    async def run(self) -> ExitCode:
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
            log.info(
                "metrics and health on %s/metrics, /healthz and /livez", self.metrics_server.url
            )
        redis_watch = asyncio.create_task(
            watch_redis(self.health, self.settings.redis_url), name="redis-watch"
        )
        try:
            acquired = await self._wait_for_lease()
            if acquired and not self._stop.is_set():
                return await self._run_active()
            if acquired:  # stopped as it was taken: free it for a standby, stream nothing
                await self.lease.release()
            log.info("stopped while on standby")
            await self.publisher.close(timeout=0.1)
            await self.auth.aclose()
            return ExitCode.OK
        finally:
            redis_watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await redis_watch
            if self.metrics_server is not None:
                await self.metrics_server.stop()
            await self.lease.aclose()

    async def _wait_for_lease(self) -> bool:
        """Hold nothing until the lease is ours (True), or stop() is called (False)."""
        reporter = StandbyReporter(
            self.lease, self.publisher.keys.status, self.settings.stream_maxlen
        )

        def on_standby(standby: Standby) -> None:
            redis_down = standby.reason is StandbyReason.REDIS_UNREACHABLE
            self.health.standby = True
            self.health.redis.observe(not redis_down, time.monotonic())
            self.metrics.set_connection_state(ConnectionState.STANDBY)
            self.metrics.set_redis_up(not redis_down)
            detail = standby.detail
            if redis_down:
                detail = f"{detail} at {safe_url(self.settings.redis_url)}"
            log.log(
                logging.WARNING if redis_down else logging.INFO,
                "standby: %s",
                detail,
                extra={"state": "standby", "instance": self.lease.instance_id},
            )
            reporter.status("standby", detail)

        try:
            acquired = await self.lease.wait_until_acquired(self._stop, on_standby)
        finally:
            await reporter.aclose()
        self.health.standby = False
        if acquired:  # Redis answered
            self.health.redis.observe(True, time.monotonic())
        return acquired

    async def _run_active(self) -> ExitCode:
        publisher_task = asyncio.create_task(self.publisher.run(), name="publisher")
        await self.control.load()  # what was wanted before (a restart, a takeover) streams first
        control_task = asyncio.create_task(self.control.run(), name="subscription-control")
        backfill_task: asyncio.Task[None] | None = None
        if self.backfill is not None:
            await self.backfill.prepare()  # the first live bars already wait for the back-fill
            backfill_task = asyncio.create_task(self.backfill.run(), name="backfill")
        quotes_task: asyncio.Task[int] | None = None
        if self.settings.quotes_at_start and self.rest is not None:
            quotes_task = asyncio.create_task(
                seed_latest(
                    self.rest,
                    self.settings.redis_url,
                    self.settings.redis_prefix,
                    self.client.book.wanted,
                ),
                name="quotes-at-start",
            )
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
                lost = await self._taken_by_our_standby(client_task)
                self.exit_code = (
                    self._lost(lost) if lost is not None else self._client_outcome(client_task)
                )
            elif lease_task in done:
                self.exit_code = self._lease_outcome(lease_task)
        finally:
            log.info("stopping: logging out and flushing events to redis")
            await self.client.stop()
            if not self.client.stats.logged_in:  # nothing to log out of: do not finish a connect
                client_task.cancel()
            # asyncio.wait, not wait_for: the client's exception (code 12) was already handled.
            await asyncio.wait({client_task}, timeout=5.0)
            lease_task.cancel()
            if self.exit_code != ExitCode.LEASE_LOST:
                await self.lease.release()  # logged out: a standby may log in right away
            for task in (refresh_task, stop_task, telemetry_task, control_task, backfill_task):
                if task is not None:
                    task.cancel()
            if backfill_task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await backfill_task
            if quotes_task is not None:
                quotes_task.cancel()
            if self.backfill is not None:
                await self.backfill.aclose()
            if self.rest is not None:
                await self.rest.aclose()
            await self.expiry.aclose()
            if self.backfill is not None:
                self.backfill.release_held()  # a live bar waiting for a back-fill is not lost
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

    def _lease_outcome(self, task: asyncio.Task[None]) -> ExitCode:
        exc = task.exception()
        if isinstance(exc, LeaseLost):
            return self._lost(exc)
        log.error("lease keeper failed: %r", exc)
        return ExitCode.FAILED

    def _lost(self, exc: LeaseLost) -> ExitCode:
        log.error("%s; stopped streaming so two instances never share one connection", exc)
        self.publisher.status("lease_lost", str(exc))
        return exc.exit_code

    async def _taken_by_our_standby(self, task: asyncio.Task[None]) -> LeaseLost | None:
        """Code 12 while another instance holds our lease is that instance's LOGIN: it took the
        lease while we could not renew (a Redis stall) and logged in before our renew told us.
        That is a lost lease (exit 4: come back as the standby), not another Schwab client (3).
        When Redis cannot say (a network split), code 12 stays exit 3."""
        if not isinstance(task.exception(), StreamStopped):
            return None
        try:
            holder = await asyncio.wait_for(self.lease.holder(), 2.0)
        except (RedisError, OSError, TimeoutError):
            return None
        if holder is None or holder == self.lease.instance_id:
            return None
        return LeaseLost(f"the lease is now held by {holder}, whose login ended our session")

    def _client_outcome(self, task: asyncio.Task[None]) -> ExitCode:
        exc = task.exception()
        if isinstance(exc, StreamStopped):
            log.error("%s; not reconnecting so the two sessions do not fight", exc)
            self._stopped = (str(exc), exc.code)
            return exc.exit_code
        if exc is not None:
            log.error("stream client failed: %r", exc)
            return ExitCode.FAILED
        return ExitCode.OK
