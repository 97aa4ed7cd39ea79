"""TradingEventPublisher: the Redis edge of the publisher. It moves bytes and time; every rule
(batching, conflation, refusals, holds, gaps, heartbeat) is `PublisherCore`'s.

Batches go out on one connection of the publisher's own, packed by `wire` (hiredis in C), and
their replies are read back in order by one task while the next batch may already be sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets
import time
from collections import deque

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from schwab_stream.events import Event
from schwab_stream.publish import wire
from schwab_stream.publish.core import PublisherCore
from schwab_stream.publish.flight import Answer, Failure, Outage
from schwab_stream.publish.keys import StreamKeys
from schwab_stream.publish.stats import PublisherStats
from schwab_stream.redis_client import async_redis, cluster_redis, is_cluster

log = logging.getLogger(__name__)


class TradingEventPublisher:
    """An `EventSink` that writes to Redis Streams; `run()` is its task."""

    def __init__(
        self,
        redis_url: str,
        prefix: str = "schwab",
        maxlen: int = 100_000,
        queue_size: int = 100_000,
        pubsub_mirror: bool = False,
        heartbeat_ttl: float = 15.0,
    ) -> None:
        cluster = is_cluster(redis_url)
        self.keys = StreamKeys(prefix, cluster=cluster)
        self.core = PublisherCore(
            self.keys,
            queue_size=queue_size,
            pubsub_mirror=pubsub_mirror,
            heartbeat_every=heartbeat_ttl / 3,
        )
        self.queue_size = queue_size
        #: Bounds each write's round trip: its send, and the reading of its replies
        self.write_timeout = 5.0
        # No socket_timeout: redis-py would arm a timer per reply read; `write_timeout` bounds
        # each whole round trip instead.
        #: Cluster mode: flights go through redis-py's cluster pipeline (`ClusterWrites`)
        self._cluster = ClusterWrites(redis_url) if cluster else None
        #: Otherwise one connection of our own (its pool only makes it: Sentinel's asks for the
        #: primary)
        self._conn: AbstractConnection | None = None
        if not cluster:
            self.redis = async_redis(
                redis_url, socket_timeout=None, socket_connect_timeout=2.0, health_check_interval=0
            )
            pool = self.redis.connection_pool
            self._conn = pool.make_connection()  # type: ignore[no-untyped-call]
        self._wire = wire.WriteSettings(
            maxlen=b"%d" % maxlen,
            heartbeat_key=self.keys.heartbeat.encode(),
            heartbeat_px=b"%d" % (heartbeat_ttl * 1000),
            marks_key=self.keys.written.encode(),
            # One per publisher: a resend of its own entries is recognised, another
            # instance's entries (a standby that took over) never hide its own.
            writer=secrets.token_hex(8).encode(),
            cluster=cluster,
            marks_prefix=f"{prefix}:written:".encode(),
        )
        #: host:port of the server the write connection last reached (a failover changes it)
        self._address: str | None = None
        #: What each flight's commands will answer, oldest first (the core's flights, in step)
        self._plans: deque[list[wire.Expect]] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # --- the sink (never awaits) ------------------------------------------------------------

    def submit(self, events: list[Event]) -> None:
        if events:
            self.core.submit(events)
            self._idle.clear()
            self._wakeup.set()

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        self.core.status(state, detail, code, **info)
        self._idle.clear()
        self._wakeup.set()

    # --- what telemetry reads ---------------------------------------------------------------

    @property
    def stats(self) -> PublisherStats:
        return self.core.stats

    @property
    def redis_ok(self) -> bool:
        return self.core.redis_ok

    @property
    def depth(self) -> int:
        return self.core.depth

    @property
    def held_streams(self) -> list[str]:
        return self.core.held_streams

    # --- the task ---------------------------------------------------------------------------

    async def run(self) -> None:
        """Write what the core hands out until it is finished closing; survives Redis outages."""
        core = self.core
        plans = self._plans
        reading: asyncio.Task[Answer] | None = None  # the oldest flight's replies
        try:
            while True:
                now = time.monotonic()
                if reading is not None and reading.done():
                    done, reading = reading, None
                    plans.popleft()
                    error = done.exception()
                    if error is None:
                        core.on_answer(done.result(), now)
                    else:
                        await self._lost(error)
                else:
                    try:
                        sent = await self._send_next(now)
                    except (RedisError, OSError) as exc:
                        if reading is not None:  # the connection is gone, its replies with it
                            if reading.done() and reading.exception() is None:
                                plans.popleft()  # answered before it failed: in first
                                core.on_answer(reading.result(), time.monotonic())
                            reading.cancel()
                            reading = None
                        await self._lost(exc)
                        continue
                    if not sent:
                        self._log_notices()
                        if core.finished(now):
                            self._idle.set()
                            return
                        if core.idle:
                            self._idle.set()
                        await self._sleep_until(core.wake_at(now))
                        continue
                if reading is None and plans:
                    reading = asyncio.create_task(self._receive(plans[0]))
                    reading.add_done_callback(lambda _: self._wakeup.set())
        finally:
            if reading is not None and not reading.cancel():
                reading.exception()  # done: retrieved, so asyncio does not warn about it

    async def _sleep_until(self, deadline: float) -> None:
        """Sleep until an event is submitted, a flight is answered, or `deadline` (monotonic)."""
        self._wakeup.clear()
        timeout = deadline - time.monotonic()
        if timeout == math.inf:
            await self._wakeup.wait()
        elif timeout > 0:
            # asyncio.timeout, not wait_for: no extra task, so a lone event is picked up in the
            # very next loop iteration after submit().
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wakeup.wait()

    async def _send_next(self, now: float) -> bool:
        """Pack the core's next flight, if any, and send it on the write connection, within the
        write timeout. Its bytes live only here: the core keeps its events, not their encoding."""
        flight = self.core.next_flight(now)
        if flight is None:
            return False
        if self._cluster is not None:
            commands, cluster_plan = wire.build(flight, self._wire)
            self._plans.append(cluster_plan)
            self._cluster.send(commands)
            return True
        data, plan = wire.pack(flight, self._wire)
        del flight
        self._plans.append(plan)
        conn = self._conn
        assert conn is not None
        try:
            async with asyncio.timeout(self.write_timeout):
                if not conn.is_connected:
                    # connect() itself: behind Sentinel it asks for the primary first (send
                    # would reconnect to the last address it knew)
                    await self._connect(conn)
                await conn.send_packed_command(data, check_health=False)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return True

    async def _connect(self, conn: AbstractConnection) -> None:
        before = self._address
        await conn.connect()  # type: ignore[no-untyped-call]
        self._address = f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
        if before is not None and self._address != before:
            # Sentinel moved the primary: the gap this write ends says so
            self.core.note_failover(f"primary moved from {before} to {self._address}")

    async def _receive(self, plan: list[wire.Expect]) -> Answer:
        """Read one flight's replies, within the write timeout. An error reply is an outcome
        and leaves the connection in step; any other failure (a timeout, a dropped socket)
        discards the connection and raises RedisError or OSError (TimeoutError is one)."""
        if self._cluster is not None:
            async with asyncio.timeout(self.write_timeout):
                return wire.read_answer(plan, await self._cluster.receive())
        conn = self._conn
        assert conn is not None
        replies: list[object] = []
        try:
            async with asyncio.timeout(self.write_timeout):
                for _ in plan:
                    try:
                        replies.append(await conn.read_response(disable_decoding=True))
                    except ResponseError as exc:
                        replies.append(wire.ErrorReply(str(exc)))
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return wire.read_answer(plan, replies)

    async def _lost(self, error: BaseException) -> None:
        """A write or a read failed: the connection goes (so no late reply is ever read as a
        newer flight's), and every flight with it."""
        if not isinstance(error, (RedisError, OSError)):
            raise error
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)
        if self._cluster is not None:
            self._cluster.reset()
        self._plans.clear()
        reason = f"{type(error).__name__}: {error}"
        self.core.on_lost(Failure(Outage.UNAVAILABLE, reason), time.monotonic())

    def _log_notices(self) -> None:
        notices = self.core.notices
        if notices:
            for notice in notices:
                log.log(notice.level, "%s", notice.message, extra=notice.extra)
            notices.clear()

    # --- shutdown ---------------------------------------------------------------------------

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far reached Redis; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what we hold (bounded by `timeout`), then stop the task and the connection."""
        self.core.close(time.monotonic(), timeout)
        self._wakeup.set()
        await self.flush(timeout)
        self._log_notices()
        lost = self.core.unwritten()
        if lost:
            log.error("closing with %d events not written to redis", lost)
        if self._conn is not None:
            await self._conn.disconnect()
            await self.redis.aclose()
        if self._cluster is not None:
            await self._cluster.aclose()


class ClusterWrites:
    """Cluster mode's writes: each flight's commands go through redis-py's cluster pipeline,
    which sends each to the node owning its slot (every command of a flight touches one slot:
    `wire.build`) and follows MOVED and ASK during a resharding or a failover. Flights run one
    after another, so a later one never overtakes an earlier one on any stream."""

    def __init__(self, redis_url: str) -> None:
        self.cluster = cluster_redis(redis_url, socket_connect_timeout=2.0)
        self._runs: deque[asyncio.Task[list[object]]] = deque()

    def send(self, commands: list[list[bytes]]) -> None:
        before = self._runs[-1] if self._runs else None
        self._runs.append(asyncio.create_task(self._run(before, commands)))

    async def _run(
        self, before: asyncio.Task[list[object]] | None, commands: list[list[bytes]]
    ) -> list[object]:
        if before is not None:
            with contextlib.suppress(BaseException):
                await asyncio.shield(before)
        pipe = self.cluster.pipeline(transaction=False)
        for name, *args in commands:
            pipe.execute_command(name.decode(), *args)  # (the cluster client routes by name)
        replies = await pipe.execute(raise_on_error=False)
        out: list[object] = []
        for reply in replies:
            if isinstance(reply, ResponseError):
                out.append(wire.ErrorReply(str(reply)))
            elif isinstance(reply, BaseException):
                raise reply
            else:
                out.append(reply)
        return out

    async def receive(self) -> list[object]:
        """The replies of the oldest flight sent."""
        run = self._runs[0]
        try:
            return await asyncio.shield(run)
        finally:
            if run.done():
                self._runs.popleft()

    def reset(self) -> None:
        """A flight failed: every flight out is given up (the core sends them again)."""
        while self._runs:
            self._runs.popleft().cancel()

    async def aclose(self) -> None:
        self.reset()
        await self.cluster.aclose()
