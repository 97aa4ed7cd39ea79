"""TradingEventPublisher: the bounded hand-off from the websocket reader to Redis Streams.

The reader calls `submit()` and never waits; one task drains what accumulated into one batch and
sends it at once, with up to `MAX_IN_FLIGHT` batches on the wire (Redis answers them in order), so
a lone event goes out at once, a burst goes out in one round trip, and a frame that arrives while a
batch is in flight does not wait for its reply. When Redis is away or slow, quotes, books and
screeners are conflated to the latest per stream, while bars, account activity and status events
are all kept; on recovery the backlog goes out and a `gap` status event says what happened. A
stream whose key Redis refuses (it holds another type) is held and tried alone, so the other
streams flow on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, ResponseError

from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    Event,
    Level2Event,
    ScreenerEvent,
    StatusEvent,
    TickEvent,
    encode_event,
    status_event,
)
from schwab_stream.publish.resp import CommandBuffer

log = logging.getLogger(__name__)

#: Event types whose latest value is all a late reader needs: conflated under pressure.
CONFLATABLE: tuple[type, ...] = (TickEvent, Level2Event, ScreenerEvent)
#: Event types with a `latest:` key beside their stream.
LATEST_TYPES = ("tick", "level2")

_TYPE_NAMES: dict[type, str] = {
    TickEvent: "tick",
    Level2Event: "level2",
    BarEvent: "bar",
    ScreenerEvent: "screener",
    AccountEvent: "account",
    StatusEvent: "status",
}


class StreamKeys:
    """The contract's Redis key names for one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.status = f"{prefix}:status"
        self.account = f"{prefix}:account"
        self.heartbeat = f"{prefix}:heartbeat"

    def stream(self, event: Event) -> str:
        kind = _TYPE_NAMES[type(event)]
        if kind == "status":
            return self.status
        if kind == "account":
            return self.account
        return f"{self.prefix}:{kind}:{event.symbol}"

    def latest(self, kind: str, symbol: str) -> str:
        return f"{self.prefix}:latest:{kind}:{symbol}"

    def pubsub(self, event: Event) -> str:
        return f"{self.prefix}:pub:{_TYPE_NAMES[type(event)]}:{event.symbol}"


class LatencySink(Protocol):
    def observe_ns(self, ns: int) -> None: ...


@dataclass
class PublisherStats:
    """Plain counters the telemetry layer reads; no locking needed on one event loop."""

    published: Counter[str] = field(default_factory=Counter)
    conflated: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)
    batches: int = 0
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


#: Events per script call: bounds how long one call holds the Redis server (~1 ms).
XADD_CHUNK = 500
#: Batches this small go as plain XADDs: a reply each costs less than running the script.
XADD_DIRECT = 4
#: Batches sent and not yet answered. Two lets a frame go out while the previous batch's replies
#: are on their way back (the wait behind them was a third of the latency at 2,500 frames/s);
#: more would only add to what a failure sends again.
MAX_IN_FLIGHT = 2
#: XADD KEYS[i] MAXLEN ~ ARGV[1] * data ARGV[i + 1], for every key: the same entries as one
#: XADD each, with one reply. An entry Redis refuses (a key of another type, out of memory) does
#: not stop the others; the reply lists the refused ones as [i, error, i, error, ...], so only
#: those are sent again. EVAL (not EVALSHA) so a restarted Redis needs no reload step; Redis
#: caches the compiled script either way.
_XADD_MANY = b"""
local refused = {}
for i, key in ipairs(KEYS) do
  local reply = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i + 1])
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = i
    refused[#refused + 1] = reply.err
  end
end
return refused
"""
#: What a command's reply says about a batch: (kind, first entry, entries). Kinds:
_ENTRY, _SCRIPT, _LATEST, _OTHER = range(4)  # one XADD; EVAL of a chunk; the MSET; anything else
_Reply = tuple[int, int, int]
#: An event's stream key and latest-state key (None for kinds without one), as bytes, and whether
#: its kind is conflatable (a newer event of its stream makes it worthless).
_Targets = tuple[bytes, bytes | None, bool]


@dataclass
class _Flight:
    """A batch on the wire: what to record once Redis has answered all its commands."""

    batch: list[Event]
    replies: list[_Reply]
    latest: dict[bytes, bytes]
    oldest_ns: int
    newest_ns: int
    #: It holds events never conflated (bars, account, status): no batch may overtake it, since
    #: a refused one sent again after a newer one of its stream would break the stream's order.
    ordered: bool


@dataclass
class _Answer:
    """Redis's answer to a flight: the entries it refused (indexes into the batch, in order),
    whether the latest keys were written, and the first error reply."""

    refused: list[int] = field(default_factory=list)
    latest_written: bool = True
    error: ResponseError | None = None
    #: Every refusal was of a key alone (WRONGTYPE): only those streams need holding.
    per_stream: bool = True

    def refuse(self, entries: Iterable[int], errors: Iterable[str], kind: int) -> None:
        errors = list(errors)
        self.error = self.error or ResponseError(errors[0])
        self.refused.extend(entries)
        self.latest_written = self.latest_written and kind != _LATEST
        self.per_stream = (
            self.per_stream and kind != _LATEST and all(e.startswith("WRONGTYPE") for e in errors)
        )


@dataclass
class _Hold:
    """A stream whose key Redis refuses: its events wait here, in order (a quote, book or
    screener only as its newest), and are tried alone, backing off, while the others flow."""

    reason: str
    since_ns: int
    conflatable: bool
    events: list[Event] = field(default_factory=list)
    retry_at: float = 0.0
    backoff: float = 0.05
    #: Its events are in a flight: the next try waits for that answer.
    retrying: bool = False
    conflated: int = 0
    dropped: int = 0


@dataclass
class _Gap:
    started_ns: int
    reason: str
    conflated_at_start: int
    dropped_at_start: int


class TradingEventPublisher:
    def __init__(
        self,
        redis_url: str,
        prefix: str = "schwab",
        maxlen: int = 100_000,
        queue_size: int = 100_000,
        pubsub_mirror: bool = False,
        heartbeat_ttl: float = 15.0,
    ) -> None:
        self.keys = StreamKeys(prefix)
        self.maxlen = maxlen
        self.queue_size = queue_size
        self.hard_cap = queue_size * 10
        self.pubsub_mirror = pubsub_mirror
        self.heartbeat_ttl = heartbeat_ttl
        self.stats = PublisherStats()
        # No socket_timeout: redis-py would arm a timer per reply read (half the publisher's CPU
        # at 50,000 events/s); `_write` bounds each whole pipeline round trip instead.
        self.write_timeout = 5.0
        self.redis = aioredis.Redis.from_url(
            redis_url, socket_timeout=None, socket_connect_timeout=2.0, health_check_interval=0
        )
        # Batches go out on one connection of their own, packed by `resp.CommandBuffer`.
        pool = self.redis.connection_pool
        self._conn: AbstractConnection = pool.make_connection()  # type: ignore[no-untyped-call]
        self._maxlen = b"%d" % maxlen
        self._heartbeat_key = self.keys.heartbeat.encode()
        self._target_cache: dict[tuple[type, str], _Targets] = {}
        self._pending: list[Event] = []
        self._conflated: dict[str, Event] = {}
        #: Batches sent whose replies are not all read yet, oldest first
        self._flights: deque[_Flight] = deque()
        #: Events Redis refused, in order, held until every flight sent before is answered
        self._refused: list[Event] = []
        self._refusal: ResponseError | None = None
        self._refusal_per_stream = True
        #: Streams whose key Redis refuses, by stream key, with their held events
        self._holds: dict[bytes, _Hold] = {}
        #: Latest-state values whose MSET was refused and that no later write replaced
        self._latest_retry: dict[bytes, bytes] = {}
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self._gap: _Gap | None = None
        #: (conflated, dropped) totals when the queue last filled up, while it stays full
        self._pressure: tuple[int, int] | None = None
        self._last_heartbeat = 0.0

    # --- the reader's side (never awaits) ---------------------------------------------------

    def submit(self, events: list[Event]) -> None:
        """Queue events for publishing; conflates or drops (counted) instead of blocking."""
        if not events:
            return
        if self._holds:
            events = self._hold_back(events)
        pending = self._pending
        if (
            self._gap is None
            and not self._conflated
            and len(pending) + len(events) <= self.queue_size
        ):
            pending.extend(events)
        else:
            for event in events:
                self._submit_under_pressure(event)
        self._idle.clear()
        self._wakeup.set()

    def _submit_under_pressure(self, event: Event) -> None:
        kind = _TYPE_NAMES[type(event)]
        if self._gap is None and self._pressure is None and len(self._pending) >= self.queue_size:
            self._enter_pressure()
        if isinstance(event, CONFLATABLE):
            key = self.keys.stream(event)
            if (
                self._gap is not None
                or key in self._conflated
                or len(self._pending) >= self.queue_size
            ):
                if key in self._conflated:
                    self.stats.conflated[kind] += 1
                self._conflated[key] = event
                return
            self._pending.append(event)
            return
        if len(self._pending) >= self.hard_cap:
            self.stats.dropped[kind] += 1
            return
        self._pending.append(event)

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        """Publish a lifecycle event on the status stream (the caller logs it)."""
        self.submit([status_event(state, detail, code, **info)])

    @property
    def redis_ok(self) -> bool:
        """False from a failed write until the next successful one."""
        return self._gap is None

    @property
    def depth(self) -> int:
        held = sum(len(hold.events) for hold in self._holds.values()) if self._holds else 0
        return len(self._pending) + len(self._conflated) + held

    @property
    def held_streams(self) -> list[str]:
        """Streams whose key Redis refuses, their events held (see `_settle_refusal`)."""
        return [stream.decode() for stream in self._holds]

    # --- the publishing task ----------------------------------------------------------------

    async def run(self) -> None:
        """Drain the queue into Redis until `close()`; survives Redis outages."""
        flights = self._flights
        replies: asyncio.Task[_Answer] | None = None  # reads the oldest flight's replies
        backoff = 0.05
        try:
            while True:
                error: BaseException | None = None
                if replies is not None and replies.done():
                    error = replies.exception()
                    if error is None:
                        self._answered(flights.popleft(), replies.result())
                        if self._refusal is not None and not flights:
                            error = self._settle_refusal()
                        if error is None and self._refusal is None:
                            backoff = 0.05
                    replies = None
                elif (
                    (
                        self._pending
                        or self._conflated
                        or (self._latest_retry and not flights)
                        or (self._holds and self._next_try() <= time.monotonic())
                    )
                    and (not flights or (len(flights) < MAX_IN_FLIGHT and not flights[0].ordered))
                    and self._refusal is None  # refused events go again first, in order
                ):
                    try:
                        await self._transmit(self._pack(self._take_batch()))
                    except (RedisError, OSError) as exc:
                        error = exc
                elif (
                    not flights
                    and self._closing
                    and not self._pending
                    and not self._conflated
                    and (self._next_try() == math.inf or self._close_deadline_passed())
                ):
                    self._idle.set()
                    return
                else:
                    await self._wait(idle=not flights)
                    continue
                if error is not None:
                    if not isinstance(error, (RedisError, OSError)):
                        raise error
                    if replies is not None:  # the connection is gone, and its replies with it
                        if replies.done() and replies.exception() is None:
                            self._answered(flights.popleft(), replies.result())  # in before it
                        replies.cancel()
                        replies = None
                    if self._fail(error) and self._close_deadline_passed():
                        return
                    await asyncio.sleep(backoff * (0.5 + random.random()))
                    backoff = min(backoff * 2, 5.0)
                elif replies is None and flights:
                    replies = asyncio.create_task(self._receive(flights[0].replies))
                    replies.add_done_callback(lambda _: self._wakeup.set())
        finally:
            if replies is not None and not replies.cancel():
                replies.exception()  # done: retrieved, so asyncio does not warn about it

    async def _wait(self, idle: bool) -> None:
        """Sleep until events are submitted or a flight is answered; when nothing is in flight
        either, keep the heartbeat alive while waiting."""
        if idle and not self._pending and not self._conflated and not self._holds:
            self._idle.set()
        self._wakeup.clear()
        if not idle:
            await self._wakeup.wait()
            return
        timeout = self.heartbeat_ttl / 3
        if self._holds:  # wake for the next try of a held stream, or to give up when closing
            wake = min(self._next_try(), self._close_by if self._closing else math.inf)
            timeout = max(0.0, min(timeout, wake - time.monotonic()))
        # asyncio.timeout, not wait_for: no extra task, so a lone event is picked up in the very
        # next loop iteration after submit().
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        if not self._pending and not self._conflated:
            await self._heartbeat_when_idle()

    def _fail(self, exc: RedisError | OSError) -> bool:
        """Redis refused entries, or a write failed and its connection is gone (voiding every
        batch in flight): all of them go back in front of the queue, oldest first (a held
        stream's back in front of its hold, which lasts). True when closing."""
        void = [*self._refused, *[event for flight in self._flights for event in flight.batch]]
        self._refused = []
        self._refusal = None
        self._refusal_per_stream = True
        self._flights.clear()
        if self._holds:  # a held stream's try goes back in front of its hold, tried again soon
            void, tried = self._put_back(void)
            for hold in tried:
                hold.retrying = False
                hold.retry_at = 0.0
        self._last_heartbeat = 0.0  # the next write carries one
        self.stats.redis_errors += 1
        self._enter_gap(exc)
        self._requeue(void)
        return self._closing

    def _answered(self, flight: _Flight, answer: _Answer) -> None:
        """Redis answered every command of the oldest flight: count what it wrote, and hold
        what it refused until the flights sent after it are answered too."""
        if not answer.latest_written:
            self._latest_retry.update(flight.latest)
        elif self._latest_retry:
            for key in flight.latest:  # written: newer than a refused value, or that value
                self._latest_retry.pop(key, None)
        written = flight.batch
        refused: list[Event] = []
        if answer.error is not None:
            refused = [flight.batch[i] for i in answer.refused]
            indexes = set(answer.refused)
            written = [event for i, event in enumerate(written) if i not in indexes]
        if self._refused:
            self._drop_superseded(written)
        if self._holds:
            self._release(written, refused)
        if answer.error is not None:
            self._refusal = self._refusal or answer.error
            self._refusal_per_stream = self._refusal_per_stream and answer.per_stream
            self._refused.extend(refused)
        self._acked(flight, written)

    def _settle_refusal(self) -> ResponseError | None:
        """Every flight is answered and Redis refused some entries. When it refused only keys
        of the wrong type, their streams are held and tried alone, backing off, while the others
        flow on (None). Anything else (out of memory, no permission) is returned: the caller's
        gap, for every stream."""
        error, self._refusal = self._refusal, None
        per_stream, self._refusal_per_stream = self._refusal_per_stream, True
        if error is None or not per_stream:
            return error
        self.stats.redis_errors += 1
        refused, self._refused = self._refused, []
        _, tried = self._put_back(refused, error)
        now = time.monotonic()
        for hold in tried:
            hold.retrying = False
            # Closing: that was the last try (see `close`).
            hold.retry_at = (
                math.inf if self._closing else now + hold.backoff * (0.5 + random.random())
            )
            hold.backoff = min(hold.backoff * 2, 5.0)
        self._pending = self._hold_back(self._pending)
        if self._conflated:
            self._conflated = {
                self.keys.stream(event): event
                for event in self._hold_back(list(self._conflated.values()))
            }
        # Redis answered, and wrote all it was sent but these keys: it is up.
        if self._gap is not None:
            self._leave_gap()
        if self._pressure is not None and not self._pending and not self._conflated:
            self._leave_pressure()
        return None

    def _put_back(
        self, events: list[Event], refusal: ResponseError | None = None
    ) -> tuple[list[Event], list[_Hold]]:
        """Events of held streams, older than what their hold gathered since, go back in front
        of it, in order; with a `refusal`, a stream not held yet gets a hold (said once).
        Returns the events of streams not held, and the holds that took events."""
        free: list[Event] = []
        newer: dict[bytes, list[Event]] = {}  # stream -> what its hold had gathered
        for event in events:
            stream, _, conflatable = self._target_cache[(type(event), event.symbol)]
            hold = self._holds.get(stream)
            if hold is None and refusal is not None:
                hold = self._holds[stream] = _Hold(str(refusal), time.time_ns(), conflatable)
                log.error(
                    "redis refused writes to %s, holding its events and trying it alone (the "
                    "other streams are written): %s",
                    stream.decode(),
                    refusal,
                )
            if hold is None:
                free.append(event)
                continue
            if stream not in newer:
                newer[stream], hold.events = hold.events, []
            self._keep(hold, event)
        tried = []
        for stream, gathered in newer.items():
            hold = self._holds[stream]
            for event in gathered:
                self._keep(hold, event)
            tried.append(hold)
        return free, tried

    def _hold_back(self, events: list[Event]) -> list[Event]:
        """The events not of a held stream; the others join their stream's hold."""
        holds = self._holds
        cached = self._target_cache.get
        free: list[Event] = []
        for event in events:
            stream = (cached((type(event), event.symbol)) or self._targets(event))[0]
            hold = holds.get(stream)
            if hold is None:
                free.append(event)
            else:
                self._keep(hold, event)
        return free

    def _keep(self, hold: _Hold, event: Event) -> None:
        """Add an event to a hold: a quote, book or screener replaces the one held (conflated);
        bars, account and status events queue, up to the hard cap (then dropped, counted)."""
        kind = _TYPE_NAMES[type(event)]
        if hold.conflatable and hold.events:
            self.stats.conflated[kind] += len(hold.events)
            hold.conflated += len(hold.events)
            hold.events = [event]
        elif len(hold.events) >= self.hard_cap:
            self.stats.dropped[kind] += 1
            hold.dropped += 1
        else:
            hold.events.append(event)

    def _next_try(self) -> float:
        """When the first held stream not already being tried is due (monotonic seconds)."""
        return min(
            (h.retry_at for h in self._holds.values() if h.events and not h.retrying),
            default=math.inf,
        )

    def _release(self, written: list[Event], refused: list[Event]) -> None:
        """A held stream whose try Redis wrote is held no more: what it gathered meanwhile goes
        next, and a `gap` status event on the status stream says what the hold cost."""
        cache = self._target_cache
        still = {cache[(type(event), event.symbol)][0] for event in refused}
        for event in written:
            stream = cache[(type(event), event.symbol)][0]
            hold = self._holds.get(stream)
            if hold is None or not hold.retrying or stream in still:
                continue
            del self._holds[stream]
            self._pending.extend(hold.events)
            name = stream.decode()
            seconds = (time.time_ns() - hold.since_ns) / 1e9
            log.warning(
                "redis takes writes to %s again after %.1f s: %d events conflated, %d dropped "
                "while it was refused",
                name,
                seconds,
                hold.conflated,
                hold.dropped,
            )
            self.status(
                "gap",
                f"redis refused writes to {name} for {seconds:.1f} s",
                stream=name,
                start_ns=hold.since_ns,
                end_ns=time.time_ns(),
                conflated=hold.conflated,
                dropped=hold.dropped,
                reason=hold.reason,
            )

    def _drop_superseded(self, written: list[Event]) -> None:
        """Held refused quotes, books and screeners of a stream that a later flight has written
        to are worthless now (and sending them again would put the stream and its latest key
        back in time): they count as conflated. Bars, account and status events cannot be in
        that position, since no flight overtakes one that holds them."""
        targets = self._target_cache
        newer = {targets[(type(event), event.symbol)][0] for event in written}
        kept: list[Event] = []
        for event in self._refused:
            stream, _, conflatable = targets[(type(event), event.symbol)]
            if conflatable and stream in newer:
                self.stats.conflated[_TYPE_NAMES[type(event)]] += 1
            else:
                kept.append(event)
        self._refused = kept

    def _acked(self, flight: _Flight, written: list[Event]) -> None:
        """Count the events of a flight that Redis wrote."""
        now = time.time_ns()
        stats = self.stats
        stats.batches += 1
        stats.published.update(_TYPE_NAMES[type(event)] for event in written)
        # Not a retry of refused latest keys alone, nor a batch with refused entries (its oldest
        # may be a held event that is still not written).
        if flight.batch and len(written) == len(flight.batch):
            stats.latencies_ns.append((now - flight.oldest_ns, now - flight.newest_ns))
            if stats.latency_sink is not None:
                stats.latency_sink.observe_ns(now - flight.oldest_ns)
        if self._refusal is not None or self._refused:
            return
        if self._gap is not None:
            self._leave_gap()
        if self._pressure is not None and not self._pending and not self._conflated:
            self._leave_pressure()

    def _take_batch(self) -> list[Event]:
        batch = self._pending
        self._pending = []
        if self._conflated:
            batch.extend(self._conflated.values())
            self._conflated = {}
        if self._holds:  # held streams that are due go too, alone of their stream
            now = time.monotonic()
            for hold in self._holds.values():
                if hold.events and not hold.retrying and hold.retry_at <= now:
                    batch.extend(hold.events)
                    hold.events = []
                    hold.retrying = True
        return batch

    def _requeue(self, batch: list[Event]) -> None:
        """Put a failed batch back in front, then re-apply the pressure rules to everything."""
        newer = self._pending
        conflated = self._conflated
        self._pending = []
        self._conflated = {}
        for event in batch:
            self._submit_under_pressure(event)
        for event in newer:
            self._submit_under_pressure(event)
        for event in conflated.values():
            self._submit_under_pressure(event)

    def _targets(self, event: Event) -> _Targets:
        """Stream and latest key of an event's (type, symbol), encoded once and cached."""
        kind = _TYPE_NAMES[type(event)]
        latest = self.keys.latest(kind, event.symbol).encode() if kind in LATEST_TYPES else None
        targets = (self.keys.stream(event).encode(), latest, isinstance(event, CONFLATABLE))
        self._target_cache[(type(event), event.symbol)] = targets
        return targets

    def _pack(self, batch: list[Event]) -> CommandBuffer:
        """Encode a batch into one buffer and record it as in flight. The XADDs go as one script
        call per chunk (one reply each instead of one per event: redis-py's per-reply cost was
        most of our CPU), then one MSET of the latest value per symbol (not one SET per event)."""
        mirror = self.pubsub_mirror
        cached = self._target_cache.get
        buffer = CommandBuffer()
        streams: list[bytes] = []
        payloads: list[bytes] = []
        # Refused latest values go out only with nothing in flight: a flight in flight may hold
        # a newer value of the same key, and answers are applied in order.
        latest = {} if self._flights else self._latest_retry.copy()
        replies: list[_Reply] = []
        oldest = newest = batch[0].recv_ns if batch else time.time_ns()
        ordered = False
        for event in batch:
            payload = encode_event(event)
            stream, latest_key, conflatable = cached((type(event), event.symbol)) or self._targets(
                event
            )
            ordered = ordered or not conflatable
            streams.append(stream)
            payloads.append(payload)
            if latest_key is not None:
                latest[latest_key] = payload
            if mirror:
                buffer.add(b"PUBLISH", self.keys.pubsub(event).encode(), payload)
                replies.append((_OTHER, 0, 0))
            recv = event.recv_ns
            if recv < oldest:
                oldest = recv
            elif recv > newest:
                newest = recv
        maxlen = self._maxlen
        if len(batch) <= XADD_DIRECT:  # a lone event or two: plain XADDs skip the script call
            for i, (stream, payload) in enumerate(zip(streams, payloads, strict=True)):
                buffer.add(b"XADD", stream, b"MAXLEN", b"~", maxlen, b"*", b"data", payload)
                replies.append((_ENTRY, i, 1))
        else:
            for i in range(0, len(batch), XADD_CHUNK):
                keys = streams[i : i + XADD_CHUNK]
                chunk = payloads[i : i + XADD_CHUNK]
                buffer.add_all([b"EVAL", _XADD_MANY, b"%d" % len(keys), *keys, maxlen, *chunk])
                replies.append((_SCRIPT, i, len(keys)))
        if latest:
            buffer.add_all([b"MSET", *[item for pair in latest.items() for item in pair]])
            replies.append((_LATEST, 0, 0))
        if self._add_heartbeat(buffer):
            replies.append((_OTHER, 0, 0))
        self._flights.append(_Flight(batch, replies, latest, oldest, newest, ordered))
        return buffer

    async def _transmit(self, buffer: CommandBuffer) -> None:
        """Send packed commands on the write connection, within the write timeout; their
        replies are read by `_receive`, in order."""
        conn = self._conn
        try:
            async with asyncio.timeout(self.write_timeout):
                await conn.send_packed_command(buffer.getvalue(), check_health=False)
        except BaseException:
            await conn.disconnect(nowait=True)
            raise

    async def _receive(self, replies: list[_Reply]) -> _Answer:
        """Read the replies of one sent buffer, within the write timeout. An error reply refuses
        its entries and leaves the connection in step; any other failure (a timeout, a dropped
        socket) discards the connection, so no late reply can be read as the next batch's (a
        new one is made on the next write), and raises RedisError or OSError (TimeoutError is
        one): the caller's gap."""
        conn = self._conn
        answer = _Answer()
        try:
            async with asyncio.timeout(self.write_timeout):
                for kind, first, entries in replies:
                    try:
                        reply = await conn.read_response(disable_decoding=True)
                    except ResponseError as exc:
                        answer.refuse(range(first, first + entries), [str(exc)], kind)
                        continue
                    if kind == _SCRIPT and reply:  # [i, error, ...], i counted from 1
                        answer.refuse(
                            (first + i - 1 for i in reply[::2]),
                            (bytes(error).decode() for error in reply[1::2]),
                            kind,
                        )
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        return answer

    def _add_heartbeat(self, buffer: CommandBuffer) -> bool:
        """Add the `PREFIX:heartbeat` refresh when it is due (a failed write makes it due)."""
        now = time.monotonic()
        if now - self._last_heartbeat < self.heartbeat_ttl / 3:
            return False
        value = b"%d" % (time.time_ns() // 1_000_000)
        buffer.add(b"SET", self._heartbeat_key, value, b"PX", b"%d" % (self.heartbeat_ttl * 1000))
        self._last_heartbeat = now
        return True

    async def _heartbeat_when_idle(self) -> None:
        """Keep `PREFIX:heartbeat` alive with a TTL while no event flows, so readers can tell a
        live but quiet bridge from a dead one. Only called with nothing in flight."""
        buffer = CommandBuffer()
        if not self._add_heartbeat(buffer):
            return
        try:
            await self._transmit(buffer)
            error: RedisError | OSError | None = (await self._receive([(_OTHER, 0, 0)])).error
        except (RedisError, OSError) as exc:
            error = exc
        if error is not None:
            self._last_heartbeat = 0.0
            self._enter_gap(error)

    def _enter_pressure(self) -> None:
        """The queue is full while Redis answers (slowly): say so once, count from here."""
        self._pressure = (sum(self.stats.conflated.values()), sum(self.stats.dropped.values()))
        log.warning(
            "publish queue full (%d events): redis is slower than the stream, conflating "
            "quotes and books until it catches up",
            self.queue_size,
        )

    def _leave_pressure(self) -> None:
        assert self._pressure is not None
        conflated_at, dropped_at = self._pressure
        self._pressure = None
        conflated = sum(self.stats.conflated.values()) - conflated_at
        dropped = sum(self.stats.dropped.values()) - dropped_at
        log.warning(
            "publish queue drained: %d events conflated, %d dropped while it was full",
            conflated,
            dropped,
            extra={"conflated": conflated, "dropped": dropped},
        )

    def _enter_gap(self, exc: BaseException) -> None:
        if self._gap is not None:
            return
        reason = f"{type(exc).__name__}: {exc}"
        self._gap = _Gap(
            started_ns=time.time_ns(),
            reason=reason,
            conflated_at_start=sum(self.stats.conflated.values()),
            dropped_at_start=sum(self.stats.dropped.values()),
        )
        what = "refused a write" if isinstance(exc, ResponseError) else "unavailable"
        log.error("redis %s, holding events (conflating quotes and books): %s", what, reason)

    def _leave_gap(self) -> None:
        gap, self._gap = self._gap, None
        assert gap is not None
        conflated = sum(self.stats.conflated.values()) - gap.conflated_at_start
        dropped = sum(self.stats.dropped.values()) - gap.dropped_at_start
        seconds = (time.time_ns() - gap.started_ns) / 1e9
        log.warning(
            "redis back after %.1f s: %d events conflated, %d dropped during the gap",
            seconds,
            conflated,
            dropped,
        )
        self.status(
            "gap",
            f"redis was unavailable for {seconds:.1f} s",
            start_ns=gap.started_ns,
            end_ns=time.time_ns(),
            conflated=conflated,
            dropped=dropped,
            reason=gap.reason,
        )

    # --- shutdown ---------------------------------------------------------------------------

    _close_by: float = 0.0

    def _close_deadline_passed(self) -> bool:
        return time.monotonic() >= self._close_by

    async def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far reached Redis; False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def close(self, timeout: float = 5.0) -> None:
        """Flush what we hold (bounded by `timeout`), then stop the task and the connection."""
        self._closing = True
        self._close_by = time.monotonic() + timeout
        for hold in self._holds.values():
            hold.retry_at = 0.0  # one more try before giving up on them
        self._wakeup.set()
        await self.flush(timeout)
        lost = self.depth + len(self._refused) + sum(len(f.batch) for f in self._flights)
        if lost:
            log.error("closing with %d events not written to redis", lost)
        await self._conn.disconnect()
        await self.redis.aclose()
