"""The publisher's rules, without sockets: a state machine that takes events, Redis's answers and
`now`, and says what to write next, when to wake, and what to tell people.

Every rule of the hand-off to Redis lives here, so each is a unit test with a fake clock:
- the reader's `submit` never waits: under pressure (a full queue, Redis away) quotes, books and
  screeners are conflated to the newest per stream, bars, account and status events all kept up
  to a hard cap (then dropped, counted);
- a batch goes out as soon as the previous one is on the wire, up to `MAX_IN_FLIGHT` unanswered
  (Redis answers in order), except that nothing overtakes a batch holding never-conflated
  events, so a refused one sent again keeps its place in its stream;
- a lost connection voids every flight: they go back in front of the queue, oldest first, and
  the publisher enters its gap (backing off) until Redis answers again, then says what the gap
  cost in a `gap` status event;
- entries Redis refuses are sent again after every flight sent before them is answered; a key
  of the wrong type holds only its own stream (tried alone, backing off), any other refusal is
  a gap for all; a refused latest-key value never overwrites a newer one;
- the heartbeat key rides along with a batch, or goes alone when the bridge is quiet.
The I/O driver (`publish/redis.py`) only moves bytes and time.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schwab_stream.backoff import Backoff
from schwab_stream.events import Event, encode_event, status_event
from schwab_stream.publish.flight import Answer, Failure, Flight, Outage, Refusal
from schwab_stream.publish.keys import KIND, StreamKeys, TargetCache
from schwab_stream.publish.stats import PublisherStats

#: Batches sent and not yet answered. Two lets a frame go out while the previous batch's replies
#: are on their way back; more would only add to what a failure sends again.
MAX_IN_FLIGHT = 2
#: Retry delays after a failed write, and between the tries of a held stream (seconds).
RETRY_BASE = 0.05
RETRY_CAP = 5.0


@dataclass(frozen=True, slots=True)
class Notice:
    """A log line the core owes: the driver logs it as it is."""

    level: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Sent:
    """What the core keeps of a flight until Redis answers it: its events and latest values,
    not its encoded entries (the driver drops those once they are on the wire)."""

    batch: list[Event]
    latest: dict[bytes, bytes]
    oldest_ns: int
    newest_ns: int
    ordered: bool


@dataclass
class _Hold:
    """A stream whose key Redis refuses: its events wait here, in order (a quote, book or
    screener only as its newest), and are tried alone, backing off, while the others flow."""

    reason: str
    since_ns: int
    conflatable: bool
    backoff: Backoff
    events: list[Event] = field(default_factory=list)
    retry_at: float = -math.inf
    #: Its events are in a flight: the next try waits for that answer.
    retrying: bool = False
    conflated: int = 0
    dropped: int = 0


#: Conflated streams a gap event names (`info.affected_total` has the count).
GAP_KEYS_NAMED = 100


@dataclass
class _Gap:
    started_ns: int
    reason: str
    conflated_at_start: int
    dropped_at_start: int
    #: Quote, book and screener streams whose events were conflated during the gap, as
    #: `TYPE:SYMBOL`: the gap event names the level-one keys it affected
    affected: set[str] = field(default_factory=set)
    #: Set when the writes resumed on another server (a Sentinel failover)
    failover: str = ""


class PublisherCore:
    def __init__(
        self,
        keys: StreamKeys,
        *,
        queue_size: int = 100_000,
        pubsub_mirror: bool = False,
        heartbeat_every: float = 5.0,
        clock_ns: Callable[[], int] = time.time_ns,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.keys = keys
        self.targets = TargetCache(keys)
        self.queue_size = queue_size
        self.hard_cap = queue_size * 10
        self.pubsub_mirror = pubsub_mirror
        self.heartbeat_every = heartbeat_every
        self.stats = PublisherStats()
        #: Told the events of each answered flight that Redis wrote, and the ack's wall time
        self.on_written: Callable[[list[Event], int], None] | None = None
        #: Log lines owed, oldest first; the driver takes them
        self.notices: list[Notice] = []
        #: Added to the `info` of every status event (the pipeline puts its instance id here)
        self.status_info: dict[str, object] = {}
        self._clock_ns = clock_ns
        self._rng = rng
        self._backoff = self._new_backoff()
        self._retry_at = -math.inf
        self._pending: list[Event] = []
        self._conflated: dict[bytes, Event] = {}
        #: Flights sent whose answers are not in yet, oldest first
        self._flights: deque[_Sent] = deque()
        #: Events Redis refused, in order, held until every flight sent before is answered
        self._refused: list[Event] = []
        self._refusal: Refusal | None = None
        self._refusal_per_stream = True
        #: Streams whose key Redis refuses, by stream key, with their held events
        self._holds: dict[bytes, _Hold] = {}
        #: Latest-state values whose MSET was refused and that no later write replaced
        self._latest_retry: dict[bytes, bytes] = {}
        #: id() of each event of a flight whose answer was lost, until a flight holding it is
        #: answered: a flight holding one is sent with the watermark check (`Flight.check`)
        self._unsure: set[int] = set()
        self._gap: _Gap | None = None
        #: (conflated, dropped) totals when the queue last filled up, while it stays full
        self._pressure: tuple[int, int] | None = None
        self._last_heartbeat = -math.inf
        self._closing = False
        self._close_by = math.inf

    # --- the reader's side (never waits) ----------------------------------------------------

    def submit(self, events: list[Event]) -> None:
        """Queue events; conflates or drops (counted) instead of growing without bound."""
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

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        """Queue a lifecycle event for the status stream (the caller logs it); `status_info` is
        added to its `info`, under what the caller gave."""
        self.submit([status_event(state, detail, code, **{**self.status_info, **info})])

    # --- what the driver asks ---------------------------------------------------------------

    @property
    def redis_ok(self) -> bool:
        """False from a failed write until Redis answers again."""
        return self._gap is None

    @property
    def depth(self) -> int:
        """Events waiting (queued, conflated, held), not counting those in flight."""
        held = sum(len(hold.events) for hold in self._holds.values()) if self._holds else 0
        return len(self._pending) + len(self._conflated) + held

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    @property
    def held_streams(self) -> list[str]:
        """Streams whose key Redis refuses, their events held."""
        return [stream.decode() for stream in self._holds]

    @property
    def idle(self) -> bool:
        """Everything submitted so far is written (or counted as lost)."""
        return not (
            self._flights
            or self._pending
            or self._conflated
            or self._holds
            or self._refused
            or self._latest_retry
        )

    def unwritten(self) -> int:
        """Events neither written nor counted as conflated or dropped."""
        return self.depth + len(self._refused) + sum(len(f.batch) for f in self._flights)

    def next_flight(self, now: float) -> Flight | None:
        """The next batch to write now, recorded as in flight; None when nothing may go yet."""
        flights = self._flights
        if now < self._retry_at or self._refusal is not None:
            return None  # backing off; or refused events go again first, in order
        if flights and (len(flights) >= MAX_IN_FLIGHT or flights[0].ordered):
            return None
        if (
            self._pending
            or self._conflated
            or (self._latest_retry and not flights)
            or (self._holds and self._next_try() <= now)
        ):
            return self._take_flight(now)
        if not flights and now - self._last_heartbeat >= self.heartbeat_every:
            return self._record(self._flight([], {}, now))  # quiet: the heartbeat alone
        return None

    def wake_at(self, now: float) -> float:
        """When `next_flight` or `finished` may answer differently with no new event or answer
        (monotonic seconds; inf: only an event or an answer changes anything)."""
        flights = self._flights
        if self._refusal is not None or (
            flights and (len(flights) >= MAX_IN_FLIGHT or flights[0].ordered)
        ):
            return math.inf
        due = math.inf
        if self._pending or self._conflated or (self._latest_retry and not flights):
            due = now
        if self._holds:
            due = min(due, self._next_try())
        if not flights:
            due = min(due, self._last_heartbeat + self.heartbeat_every)
        wake = max(due, self._retry_at)
        if self._closing and not flights:
            wake = min(wake, self._close_by)
        return wake

    def finished(self, now: float) -> bool:
        """Closing, and nothing more will be written: all is out, or the time is up."""
        if not self._closing or self._flights:
            return False
        if now >= self._close_by:
            return True
        return not self._pending and not self._conflated and self._next_try() == math.inf

    def close(self, now: float, timeout: float) -> None:
        """Write what is held until `timeout`; held streams get one more try, then count as lost."""
        self._closing = True
        self._close_by = now + timeout
        for hold in self._holds.values():
            hold.retry_at = -math.inf

    # --- Redis's side -----------------------------------------------------------------------

    def on_answer(self, answer: Answer, now: float) -> None:
        """Redis answered every command of the oldest flight."""
        self._answered(self._flights.popleft(), answer)
        if self._refusal is not None and not self._flights:
            failure = self._settle_refusal(now)
            if failure is not None:
                self._fail(failure, now)
                return
        if self._refusal is None and self._backoff.attempts:
            self._backoff.reset()
        if self._unsure and self.idle:
            self._unsure.clear()  # (ids of events conflated or dropped since their loss)

    def on_lost(self, failure: Failure, now: float) -> None:
        """The connection is gone, and every flight with it (Redis may or may not have run them)."""
        self._fail(failure, now)

    # --- queueing ---------------------------------------------------------------------------

    def _submit_under_pressure(self, event: Event) -> None:
        kind = KIND[type(event)]
        if self._gap is None and self._pressure is None and len(self._pending) >= self.queue_size:
            self._enter_pressure()
        targets = self.targets(event)
        if targets.conflatable:
            key = targets.stream
            if (
                self._gap is not None
                or key in self._conflated
                or len(self._pending) >= self.queue_size
            ):
                if key in self._conflated:
                    self.stats.conflated[kind] += 1
                    if self._gap is not None:
                        self._gap.affected.add(f"{kind}:{event.symbol}")
                self._conflated[key] = event
                return
            self._pending.append(event)
            return
        if len(self._pending) >= self.hard_cap:
            self.stats.dropped[kind] += 1
            return
        self._pending.append(event)

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

    def _take_batch(self, now: float) -> list[Event]:
        batch = self._pending
        self._pending = []
        if self._conflated:
            batch.extend(self._conflated.values())
            self._conflated = {}
        if self._holds:  # held streams that are due go too, alone of their stream
            for hold in self._holds.values():
                if hold.events and not hold.retrying and hold.retry_at <= now:
                    batch.extend(hold.events)
                    hold.events = []
                    hold.retrying = True
        return batch

    def _take_flight(self, now: float) -> Flight:
        # Refused latest values go out only with nothing in flight: a flight in flight may hold
        # a newer value of the same key, and answers are applied in order.
        latest = {} if self._flights else self._latest_retry.copy()
        return self._record(self._flight(self._take_batch(now), latest, now))

    def _flight(self, batch: list[Event], latest: dict[bytes, bytes], now: float) -> Flight:
        """Encode a batch (each event once) with its keys; the heartbeat rides along when due."""
        cached, build = self.targets.cached.get, self.targets
        streams: list[bytes] = []
        payloads: list[bytes] = []
        channels: list[bytes] = []
        latest_entry: dict[bytes, int] = {}
        mirror = self.pubsub_mirror
        oldest = newest = batch[0].recv_ns if batch else 0
        ordered = False
        for event in batch:
            payload = encode_event(event)
            stream, latest_key, channel, conflatable = cached((type(event), event.symbol)) or build(
                event
            )
            ordered = ordered or not conflatable
            streams.append(stream)
            payloads.append(payload)
            if latest_key is not None:
                latest[latest_key] = payload
                latest_entry[latest_key] = len(payloads) - 1
            if mirror:
                channels.append(channel)
            recv = event.recv_ns
            if recv < oldest:
                oldest = recv
            elif recv > newest:
                newest = recv
        unsure = self._unsure
        check = bool(unsure) and any(id(event) in unsure for event in batch)
        heartbeat_ms = None
        if now - self._last_heartbeat >= self.heartbeat_every:
            heartbeat_ms = self._clock_ns() // 1_000_000
            self._last_heartbeat = now
        return Flight(
            batch,
            streams,
            payloads,
            latest,
            latest_entry,
            channels,
            heartbeat_ms,
            oldest,
            newest,
            ordered,
            check,
        )

    def _record(self, flight: Flight) -> Flight:
        self._flights.append(
            _Sent(flight.batch, flight.latest, flight.oldest_ns, flight.newest_ns, flight.ordered)
        )
        return flight

    # --- answers ----------------------------------------------------------------------------

    def _answered(self, flight: _Sent, answer: Answer) -> None:
        """Count what Redis wrote, and hold what it refused until the flights sent after it
        are answered too."""
        if self._unsure:
            self._unsure.difference_update(map(id, flight.batch))
        if not answer.latest_written:
            self._latest_retry.update(flight.latest)
        elif self._latest_retry:
            for key in flight.latest:  # written: newer than a refused value, or that value
                self._latest_retry.pop(key, None)
        written = flight.batch
        refused: list[Event] = []
        if answer.refusal is not None:
            refused = [flight.batch[i] for i in answer.refused]
            indexes = set(answer.refused)
            written = [event for i, event in enumerate(written) if i not in indexes]
        if self._refused:
            self._drop_superseded(written)
        if self._holds:
            self._release(written, refused)
        if answer.refusal is not None:
            self._refusal = self._refusal or answer.refusal
            self._refusal_per_stream = self._refusal_per_stream and answer.per_stream
            self._refused.extend(refused)
        self._acked(flight, written)

    def _acked(self, flight: _Sent, written: list[Event]) -> None:
        """Count the events of a flight that Redis wrote; Redis answering ends a gap."""
        now_ns = self._clock_ns()
        stats = self.stats
        if flight.batch or flight.latest:
            stats.batches += 1
        stats.published.update(KIND[type(event)] for event in written)
        # Not a retry of refused latest keys alone, nor a batch with refused entries (its oldest
        # may be a held event that is still not written).
        if flight.batch and len(written) == len(flight.batch):
            stats.latencies_ns.append((now_ns - flight.oldest_ns, now_ns - flight.newest_ns))
            if stats.latency_sink is not None:
                stats.latency_sink.observe_ns(now_ns - flight.oldest_ns)
        if self.on_written is not None and written:
            self.on_written(written, now_ns)
        if self._refusal is not None or self._refused:
            return
        if self._gap is not None:
            self._leave_gap()
        if self._pressure is not None and not self._pending and not self._conflated:
            self._leave_pressure()

    def _drop_superseded(self, written: list[Event]) -> None:
        """Held refused quotes, books and screeners of a stream that a later flight has written
        to are worthless now (and sending them again would put the stream and its latest key
        back in time): they count as conflated. Bars, account and status events cannot be in
        that position, since no flight overtakes one that holds them."""
        targets = self.targets
        newer = {targets(event).stream for event in written}
        kept: list[Event] = []
        for event in self._refused:
            stream, _, _, conflatable = targets(event)
            if conflatable and stream in newer:
                self.stats.conflated[KIND[type(event)]] += 1
            else:
                kept.append(event)
        self._refused = kept

    def _fail(self, failure: Failure, now: float) -> None:
        """Every flight is void, and events Redis refused go again: all back in front of the
        queue, oldest first (a held stream's back in front of its hold, which lasts); back off."""
        lost = [event for flight in self._flights for event in flight.batch]
        unsure = self._unsure
        unsure.update(map(id, lost))
        void = [*self._refused, *lost]
        self._refused = []
        self._refusal = None
        self._refusal_per_stream = True
        self._flights.clear()
        if self._holds:  # a held stream's try goes back in front of its hold, tried again soon
            void, tried = self._put_back(void)
            for hold in tried:
                hold.retrying = False
                hold.retry_at = -math.inf
        self._last_heartbeat = -math.inf  # the next write carries one
        self.stats.redis_errors += 1
        self._enter_gap(failure)
        self._requeue(void)
        # Only events still waiting stay unsure (the others were conflated or dropped): the set
        # does not grow with a long outage's failures.
        waiting = [*self._pending, *self._conflated.values()]
        waiting += [event for hold in self._holds.values() for event in hold.events]
        self._unsure = unsure.intersection(map(id, waiting))
        self._retry_at = now + self._backoff.next()

    def _settle_refusal(self, now: float) -> Failure | None:
        """Every flight is answered and Redis refused some entries. When it refused only keys
        of the wrong type, their streams are held and tried alone, backing off, while the others
        flow on (None). Anything else (out of memory, no permission) is returned: a gap for
        every stream."""
        refusal, self._refusal = self._refusal, None
        per_stream, self._refusal_per_stream = self._refusal_per_stream, True
        if refusal is None:
            return None
        if not per_stream:
            return Failure(Outage.REFUSED, refusal.reason)
        self.stats.redis_errors += 1
        refused, self._refused = self._refused, []
        _, tried = self._put_back(refused, refusal)
        for hold in tried:
            hold.retrying = False
            # Closing: that was the last try (see `close`).
            hold.retry_at = math.inf if self._closing else now + hold.backoff.next()
        self._pending = self._hold_back(self._pending)
        if self._conflated:
            self._conflated = {
                self.targets(event).stream: event
                for event in self._hold_back(list(self._conflated.values()))
            }
        # Redis answered, and wrote all it was sent but these keys: it is up.
        if self._gap is not None:
            self._leave_gap()
        if self._pressure is not None and not self._pending and not self._conflated:
            self._leave_pressure()
        return None

    # --- held streams -----------------------------------------------------------------------

    def _put_back(
        self, events: list[Event], refusal: Refusal | None = None
    ) -> tuple[list[Event], list[_Hold]]:
        """Events of held streams, older than what their hold gathered since, go back in front
        of it, in order; with a `refusal`, a stream not held yet gets a hold (said once).
        Returns the events of streams not held, and the holds that took events."""
        free: list[Event] = []
        newer: dict[bytes, list[Event]] = {}  # stream -> what its hold had gathered
        for event in events:
            stream, _, _, conflatable = self.targets(event)
            hold = self._holds.get(stream)
            if hold is None and refusal is not None:
                hold = self._holds[stream] = _Hold(
                    refusal.message,
                    self._clock_ns(),
                    conflatable,
                    self._new_backoff(),
                )
                self._say(
                    logging.ERROR,
                    f"redis refused writes to {stream.decode()}, holding its events and trying "
                    f"it alone (the other streams are written): {refusal.message}",
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
        targets = self.targets
        free: list[Event] = []
        for event in events:
            hold = holds.get(targets(event).stream)
            if hold is None:
                free.append(event)
            else:
                self._keep(hold, event)
        return free

    def _keep(self, hold: _Hold, event: Event) -> None:
        """Add an event to a hold: a quote, book or screener replaces the one held (conflated);
        bars, account and status events queue, up to the hard cap (then dropped, counted)."""
        kind = KIND[type(event)]
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
        targets = self.targets
        still = {targets(event).stream for event in refused}
        for event in written:
            stream = targets(event).stream
            hold = self._holds.get(stream)
            if hold is None or not hold.retrying or stream in still:
                continue
            del self._holds[stream]
            self._pending.extend(hold.events)
            name = stream.decode()
            end_ns = self._clock_ns()
            seconds = (end_ns - hold.since_ns) / 1e9
            self._say(
                logging.WARNING,
                f"redis takes writes to {name} again after {seconds:.1f} s: {hold.conflated} "
                f"events conflated, {hold.dropped} dropped while it was refused",
            )
            self.status(
                "gap",
                f"redis refused writes to {name} for {seconds:.1f} s",
                stream=name,
                start_ns=hold.since_ns,
                end_ns=end_ns,
                conflated=hold.conflated,
                dropped=hold.dropped,
                reason=hold.reason,
            )

    # --- pressure and gaps ------------------------------------------------------------------

    def _enter_pressure(self) -> None:
        """The queue is full while Redis answers (slowly): say so once, count from here."""
        self._pressure = (self.stats.total_conflated(), self.stats.total_dropped())
        self._say(
            logging.WARNING,
            f"publish queue full ({self.queue_size} events): redis is slower than the stream, "
            "conflating quotes and books until it catches up",
        )

    def _leave_pressure(self) -> None:
        assert self._pressure is not None
        conflated_at, dropped_at = self._pressure
        self._pressure = None
        conflated = self.stats.total_conflated() - conflated_at
        dropped = self.stats.total_dropped() - dropped_at
        self._say(
            logging.WARNING,
            f"publish queue drained: {conflated} events conflated, {dropped} dropped while it "
            "was full",
            conflated=conflated,
            dropped=dropped,
        )

    def _enter_gap(self, failure: Failure) -> None:
        if self._gap is not None:
            return
        self._gap = _Gap(
            started_ns=self._clock_ns(),
            reason=failure.reason,
            conflated_at_start=self.stats.total_conflated(),
            dropped_at_start=self.stats.total_dropped(),
        )
        self._say(
            logging.ERROR,
            f"redis {failure.outage.value}, holding events (conflating quotes and books): "
            f"{failure.reason}",
        )

    def note_failover(self, what: str) -> None:
        """The writes go to another server now (Sentinel promoted a replica): the gap that
        ends says so. What the old primary had not replicated is gone with it; what was in
        flight is sent again."""
        if self._gap is not None:
            self._gap.failover = what

    def _leave_gap(self) -> None:
        gap, self._gap = self._gap, None
        assert gap is not None
        conflated = self.stats.total_conflated() - gap.conflated_at_start
        dropped = self.stats.total_dropped() - gap.dropped_at_start
        end_ns = self._clock_ns()
        seconds = (end_ns - gap.started_ns) / 1e9
        self._say(
            logging.WARNING,
            f"redis back after {seconds:.1f} s: {conflated} events conflated, {dropped} dropped "
            "during the gap",
        )
        affected = sorted(gap.affected)
        extra: dict[str, Any] = {"failover": gap.failover} if gap.failover else {}
        self.status(
            "gap",
            f"redis was unavailable for {seconds:.1f} s"
            + (f" ({gap.failover})" if gap.failover else ""),
            None,
            **extra,
            start_ns=gap.started_ns,
            end_ns=end_ns,
            seconds=round(seconds, 3),
            conflated=conflated,
            dropped=dropped,
            reason=gap.reason,
            affected=affected[:GAP_KEYS_NAMED],
            affected_total=len(affected),
        )

    def _say(self, level: int, message: str, **extra: Any) -> None:
        self.notices.append(Notice(level, message, extra))

    def _new_backoff(self) -> Backoff:
        return Backoff(RETRY_BASE, RETRY_CAP, rng=self._rng)
