"""TradingEventPublisher: the Redis edge of the publisher. It moves bytes and time; every rule
(batching, conflation, refusals, holds, gaps, heartbeat) is `PublisherCore`'s.

Batches go out on one connection of the publisher's own (in cluster mode one per primary,
`publish/cluster.py`), packed by `wire` (hiredis in C), and their replies are read back in order
by one long-lived reader per connection (`publish/link.py`) while the next batch may already be
sent. One watchdog timer bounds the oldest batch in flight (`write_timeout`) instead of a timeout
per send and per read: a batch costs no task and no timer of its own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections import deque

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import NoScriptError, RedisError

from schwab_stream.events import Event
from schwab_stream.publish import link, wire
from schwab_stream.publish.cluster import ClusterLinks, Gather
from schwab_stream.publish.core import PublisherCore
from schwab_stream.publish.flight import Failure, Outage
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
        self._wakeup = asyncio.Event()
        # No socket_timeout: redis-py would arm a timer per reply read; `write_timeout` bounds
        # each whole round trip instead.
        #: Cluster mode: a connection per primary, each flight split by node
        self._cluster: ClusterLinks | None = None
        if cluster:
            self._cluster = ClusterLinks(
                lambda: cluster_redis(redis_url, socket_connect_timeout=2.0, socket_timeout=None),
                self._answer_ready,
                self._wakeup.set,
                self.core.note_failover,
            )
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
        #: What each flight's commands will answer, oldest first (the core's flights, in step),
        #: and when each was sent (monotonic): the watchdog's clock
        self._plans: deque[list[wire.Expect]] = deque()
        self._sent_at: deque[float] = deque()
        #: The replies of the oldest flight read so far (standalone); each flight's replies as
        #: they gather from the nodes (cluster mode), in step with `_plans`
        self._replies: list[object] = []
        self._gathers: deque[Gather] = deque()
        #: Reads the replies of every flight sent on the current connection, in order, and
        #: hands each flight's answer to the core; ends (with its error) when the connection does
        self._reader: asyncio.Task[None] | None = None
        #: One timer on the oldest flight in flight; it fired: the connection was cut for it
        self._watchdog: asyncio.TimerHandle | None = None
        self._timed_out = False
        #: The timer that wakes `run` at the core's next deadline, and that deadline
        self._alarm: asyncio.TimerHandle | None = None
        self._alarm_at = math.inf
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
        try:
            while True:
                reader = self._reader
                if reader is not None and reader.done():
                    await self._lost(self._reader_error(reader))
                    continue
                ended = self._cluster.ended() if self._cluster is not None else None
                if ended is not None:
                    await self._lost(self._timeout_error() if self._timed_out else ended)
                    continue
                now = time.monotonic()
                try:
                    sent = await self._send_next(now)
                except (RedisError, OSError) as exc:
                    await self._lost(self._timeout_error() if self._timed_out else exc)
                    continue
                if not sent:
                    self._log_notices()
                    if core.finished(now):
                        self._idle.set()
                        return
                    if core.idle:
                        self._idle.set()
                    await self._sleep_until(core.wake_at(now), now)
        finally:
            self._stop_reader()
            self._stop_timers()

    async def _sleep_until(self, deadline: float, now: float) -> None:
        """Sleep until an event is submitted, a flight is answered, or `deadline` (monotonic).
        The alarm for a deadline is armed once, not per sleep: while it stays the same (the
        next heartbeat, between frames) no timer is made."""
        self._wakeup.clear()
        if deadline <= now:
            return
        if deadline < self._alarm_at:
            if self._alarm is not None:
                self._alarm.cancel()
            self._alarm = asyncio.get_running_loop().call_later(deadline - now, self._ring)
            self._alarm_at = deadline
        await self._wakeup.wait()

    def _ring(self) -> None:
        self._alarm = None
        self._alarm_at = math.inf
        self._wakeup.set()

    async def _send_next(self, now: float) -> bool:
        """Pack the core's next flight, if any, and send it on the write connection; its
        replies are the reader's. Its bytes live only here: the core keeps its events, not
        their encoding."""
        flight = self.core.next_flight(now)
        if flight is None:
            return False
        if self._cluster is not None:
            commands, cluster_plan = wire.build(flight, self._wire)
            del flight
            gather = await self._cluster.send(commands, self.write_timeout)
            self._gathers.append(gather)
            self._sent(cluster_plan, now)
            if not gather.left:
                self._answer_ready()  # nothing to send after all
            return True
        data, plan = wire.pack(flight, self._wire)
        del flight
        conn = self._conn
        assert conn is not None
        if not conn.is_connected:
            try:
                async with asyncio.timeout(self.write_timeout):
                    # connect() itself: behind Sentinel it asks for the primary first (send
                    # would reconnect to the last address it knew)
                    await self._connect(conn)
            except BaseException:
                await conn.disconnect(nowait=True)
                raise
        self._sent(plan, now)
        if data:
            await link.write(conn, data)
        return True

    def _sent(self, plan: list[wire.Expect], now: float) -> None:
        """A flight goes out: its plan joins the reader's, the watchdog watches it."""
        plans = self._plans
        plans.append(plan)
        self._sent_at.append(now)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().call_later(self.write_timeout, self._watch)
        if self._cluster is not None:
            return  # the links read their own replies
        if self._reader is None:
            self._reader = asyncio.create_task(self._read())
            self._reader.add_done_callback(lambda _: self._wakeup.set())
        elif not plan and len(plans) == 1:
            self._answer_empty()  # nothing to wait for, nothing before it

    def _watch(self) -> None:
        """The watchdog: the oldest flight in flight has waited `write_timeout` for its answer:
        the connection goes (a send stuck on it fails, the reader stops), as a timeout."""
        self._watchdog = None
        if not self._sent_at:
            return
        left = self._sent_at[0] + self.write_timeout - time.monotonic()
        if left > 0:
            self._watchdog = asyncio.get_running_loop().call_later(left, self._watch)
            return
        self._timed_out = True
        if self._reader is not None:
            self._reader.cancel()
        link.abort(self._conn)
        if self._cluster is not None:
            self._cluster.abort()
        self._wakeup.set()

    async def _read(self) -> None:
        """The reader (standalone): each reply in turn, into the oldest flight's; a flight's
        last reply hands its answer to the core. It ends only by failing (RedisError or
        OSError), and `run` gives up the connection and every flight with it."""
        assert self._conn is not None
        await link.read_replies(self._conn, self._deliver, (NoScriptError,))

    def _deliver(self, reply: object) -> None:
        replies = self._replies
        replies.append(reply)
        plan = self._plans[0]
        if len(replies) == len(plan):
            self._replies = []
            self._answered(plan, replies)

    def _answer_ready(self) -> None:
        """Cluster mode: the flights at the head of the line whose replies are all in are
        answered, oldest first (a later flight's nodes may answer before an earlier one's)."""
        gathers = self._gathers
        while gathers and not gathers[0].left:
            self._answered(self._plans[0], gathers.popleft().replies)

    def _answered(self, plan: list[wire.Expect], replies: list[object]) -> None:
        core = self.core
        self._plans.popleft()
        self._sent_at.popleft()
        now = time.monotonic()
        core.on_answer(wire.read_answer(plan, replies), now)
        if self._plans and not self._plans[0] and self._cluster is None:
            self._answer_empty()  # (cluster mode: `_answer_ready`)
        # What `run` would do next, done here when it is only bookkeeping, so an answer does
        # not wake `run` just to find nothing to send (at 1,000 frames/s most frames are their
        # own flight, answered before the next arrives): it is woken when a flight may go or
        # a notice is owed; the idle flag and the alarm for the core's next deadline are set
        # here.
        if core.notices or core.finished(now):
            self._wakeup.set()
            return
        wake = core.wake_at(now)
        if wake <= now:
            self._wakeup.set()
            return
        if core.idle:
            self._idle.set()
        if wake < self._alarm_at:
            if self._alarm is not None:
                self._alarm.cancel()
            self._alarm = asyncio.get_running_loop().call_later(wake - now, self._ring)
            self._alarm_at = wake

    def _answer_empty(self) -> None:
        """Flights with no command (nothing to write after all) at the head of the line are
        answered now: no reply will come for them (standalone; a cluster flight is a task)."""
        plans = self._plans
        while plans and not plans[0]:
            plans.popleft()
            self._sent_at.popleft()
            self.core.on_answer(wire.read_answer([], []), time.monotonic())

    def _reader_error(self, reader: asyncio.Task[None]) -> BaseException:
        """Why the reader ended (it only ends by failing, or by the watchdog)."""
        self._reader = None
        if self._timed_out or reader.cancelled():
            return self._timeout_error()
        error = reader.exception()
        assert error is not None
        return error

    def _timeout_error(self) -> TimeoutError:
        return TimeoutError(f"no answer from redis in {self.write_timeout:g} s")

    def _stop_reader(self) -> None:
        reader, self._reader = self._reader, None
        if reader is not None and not reader.cancel():
            reader.exception()  # done: retrieved, so asyncio does not warn about it

    def _stop_timers(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._alarm is not None:
            self._alarm.cancel()
            self._alarm = None
            self._alarm_at = math.inf

    async def _connect(self, conn: AbstractConnection) -> None:
        before = self._address
        await conn.connect()  # type: ignore[no-untyped-call]
        await link.load_script(conn)  # a restarted or promoted server has lost it
        self._address = f"{getattr(conn, 'host', '?')}:{getattr(conn, 'port', '?')}"
        if before is not None and self._address != before:
            # Sentinel moved the primary: the gap this write ends says so
            self.core.note_failover(f"primary moved from {before} to {self._address}")

    async def _lost(self, error: BaseException) -> None:
        """A write or a read failed: the connection goes (so no late reply is ever read as a
        newer flight's), and every flight with it."""
        if not isinstance(error, (RedisError, OSError)):
            raise error
        self._stop_reader()
        if self._conn is not None:
            await self._conn.disconnect(nowait=True)
        if self._cluster is not None:
            await self._cluster.reset()
        self._plans.clear()
        self._sent_at.clear()
        self._replies = []
        self._gathers.clear()
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        self._timed_out = False
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
