"""The publisher's rules as a state machine, driven by a fake clock and a model of Redis: every
sequence is deterministic (the real-Redis proof is tests/integration/test_publisher.py)."""

from __future__ import annotations

import itertools
import logging
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pytest

from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    Event,
    StatusEvent,
    TickEvent,
    decode_event,
    encode_event,
)
from schwab_stream.publish import wire
from schwab_stream.publish.core import MAX_IN_FLIGHT, PublisherCore
from schwab_stream.publish.flight import Answer, Failure, Flight, Outage
from schwab_stream.publish.keys import StreamKeys, hash_tag

WRONGTYPE = "WRONGTYPE Operation against a key holding the wrong kind of value"
NOPERM = "NOPERM this user has no permissions to run the 'xadd' command"


def tick(symbol: str, seq: int, recv_ns: int = 1) -> TickEvent:
    return TickEvent(service="LEVELONE_EQUITIES", symbol=symbol, seq=seq, recv_ns=recv_ns, last=seq)


def bar(symbol: str, seq: int, recv_ns: int = 1) -> BarEvent:
    return BarEvent(service="CHART_EQUITY", symbol=symbol, seq=seq, recv_ns=recv_ns)


def latest_values(args: Sequence[bytes], n: int, m: int) -> list[bytes]:
    """The values a script call gives its `m` latest keys: the first `r` by the number of one of
    its `n` entries (whose payload is the value), the others as they are."""
    argv = 3 + int(args[2]) - 1  # args[argv + k] is ARGV[k]
    base = argv + 2 * n + 5  # r
    refs = int(args[base])
    given = list(args[base + 1 : base + 1 + m])
    return [args[argv + 2 * int(g) + 4] if j < refs else g for j, g in enumerate(given)]


SETTINGS = wire.WriteSettings(b"1000", b"t:heartbeat", b"15000", b"t:written", b"w1")


@dataclass
class FakeRedis:
    """What Redis does with a flight's commands: entries appended to their streams once (the
    XADD script's watermark per stream and writer), latest keys set, and refusals for keys of
    the wrong type (`broken`) or commands not allowed (`denied`). Answers go through
    `wire.pack` and `wire.read_answer`, as on the real connection."""

    broken: set[str] = field(default_factory=set)
    denied: set[bytes] = field(default_factory=set)
    streams: dict[str, list[Event]] = field(default_factory=dict)
    latest: dict[str, Event] = field(default_factory=dict)
    #: stream -> (writer, seq) of the last entry written there
    marks: dict[str, tuple[bytes, int]] = field(default_factory=dict)
    heartbeats: int = 0
    settings: wire.WriteSettings = SETTINGS

    def run(self, flight: Flight, settings: wire.WriteSettings | None = None) -> Answer:
        settings = settings or self.settings
        commands, plan = wire.build(flight, settings)
        replies: list[object] = []
        for args, (kind, first, entries, indices) in zip(commands, plan, strict=True):
            if kind is wire.SCRIPT or kind is wire.SCRIPT_LATEST:
                covered = range(first, first + entries) if indices is None else indices
                check = args[3 + int(args[2]) + 3] == b"1"  # ARGV[4]
                refused = self._script(flight, covered, settings.writer, check)
                if kind is wire.SCRIPT_LATEST:  # latest keys after the marks hash
                    keys = args[3 + len(covered) + 1 : 3 + int(args[2])]
                    refused += self._mset(keys, latest_values(args, len(covered), len(keys)))
                replies.append(refused)
            else:
                self.heartbeats += flight.heartbeat_ms is not None
                replies.append(b"OK")
        return wire.read_answer(plan, replies)

    def _script(
        self, flight: Flight, covered: Sequence[int], writer: bytes, check: bool
    ) -> list[object]:
        refused: list[object] = []
        blocked: dict[str, wire.ErrorReply] = {}
        for position, i in enumerate(covered):
            stream, seq = flight.streams[i].decode(), flight.batch[i].seq
            marked_by, mark = self.marks.get(stream, (b"", -1))
            error = blocked.get(stream)
            if error is None and (not check or marked_by != writer or seq > mark):
                error = self._xadd(flight, i)
                if error is None:
                    self.marks[stream] = (writer, seq)
                else:
                    blocked[stream] = error
            if error is not None:
                refused += [position + 1, error.message.encode()]
        return refused

    def _mset(self, keys: Sequence[bytes], values: Sequence[bytes]) -> list[object]:
        """The script's MSET: [0, error] when refused."""
        if b"MSET" in self.denied:
            return [0, b"NOPERM no MSET"]
        for key, value in zip(keys, values, strict=True):
            self.latest[key.decode()] = decode_event(value)
        return []

    def _xadd(self, flight: Flight, i: int) -> wire.ErrorReply | None:
        if b"XADD" in self.denied:
            return wire.ErrorReply(NOPERM)
        stream = flight.streams[i].decode()
        if stream in self.broken:
            return wire.ErrorReply(WRONGTYPE)
        self.streams.setdefault(stream, []).append(decode_event(flight.payloads[i]))
        return None

    def seqs(self, stream: str) -> list[int]:
        return [e.seq for e in self.streams.get(stream, [])]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.ns = 1_000_000_000_000

    def wall(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.ns += int(seconds * 1e9)


def make_core(clock: Clock, **kwargs: object) -> PublisherCore:
    return PublisherCore(
        StreamKeys("t"),
        clock_ns=clock.wall,
        rng=lambda: 0.0,  # every backoff at its ceiling
        **kwargs,  # type: ignore[arg-type]
    )


def drive(core: PublisherCore, redis: FakeRedis, clock: Clock, rounds: int = 50) -> None:
    """Send and answer until nothing is due; waits out backoffs on the fake clock."""
    for _ in range(rounds):
        flight = core.next_flight(clock.now)
        if flight is not None:
            core.on_answer(redis.run(flight), clock.now)
            continue
        wake = core.wake_at(clock.now)
        if core.idle or wake == math.inf or core.finished(clock.now):
            return
        clock.advance(max(0.0, wake - clock.now))


def notices(core: PublisherCore) -> list[str]:
    said = [n.message for n in core.notices]
    core.notices.clear()
    return said


def status_states(redis: FakeRedis) -> list[str]:
    return [e.state for e in redis.streams.get("t:status", []) if isinstance(e, StatusEvent)]


# --- batching and flights --------------------------------------------------------------------


def test_a_lone_event_goes_at_once_and_a_burst_in_one_flight() -> None:
    clock, redis = Clock(), FakeRedis()
    core = make_core(clock)
    core.submit([tick("A", 1)])
    first = core.next_flight(clock.now)
    assert first is not None and len(first.batch) == 1
    core.submit([tick("B", i) for i in range(1, 40)])
    second = core.next_flight(clock.now)
    assert second is not None and len(second.batch) == 39
    core.on_answer(redis.run(first), clock.now)
    core.on_answer(redis.run(second), clock.now)
    assert redis.seqs("t:tick:B") == list(range(1, 40)) and core.idle
    assert core.stats.published["tick"] == 40 and core.stats.batches == 2


def test_two_quote_flights_go_out_before_the_first_reply_and_a_third_waits() -> None:
    clock = Clock()
    core = make_core(clock)
    flights = []
    for i in range(3):
        core.submit([tick(f"S{i}", 1)])
        flights.append(core.next_flight(clock.now))
    assert flights[0] is not None and flights[1] is not None and flights[2] is None
    assert core.in_flight == MAX_IN_FLIGHT and core.depth == 1
    assert core.wake_at(clock.now) == math.inf  # only an answer can free a slot


def test_no_flight_overtakes_one_holding_bars() -> None:
    clock = Clock()
    core = make_core(clock)
    core.submit([bar("A", 1)])
    assert core.next_flight(clock.now) is not None
    core.submit([bar("A", 2)])
    assert core.next_flight(clock.now) is None  # ordered: waits for the answer
    core.on_answer(Answer(), clock.now)
    nxt = core.next_flight(clock.now)
    assert nxt is not None and [e.seq for e in nxt.batch] == [2]


def test_a_refused_bar_goes_again_before_the_newer_bar_of_its_stream() -> None:
    """Redis ran the first flight with BAD refused, then the key was fixed: the refused bar is
    sent again ahead of the newer one (nothing overtook the flight that held it)."""
    clock, redis = Clock(), FakeRedis(broken={"t:bar:BAD"})
    core = make_core(clock)
    core.submit([bar("BAD", 1), tick("MARK", 1)])
    first = core.next_flight(clock.now)
    assert first is not None
    answer = redis.run(first)
    redis.broken.clear()
    core.submit([bar("BAD", 2)])
    assert core.next_flight(clock.now) is None
    core.on_answer(answer, clock.now)
    drive(core, redis, clock)
    assert redis.seqs("t:bar:BAD") == [1, 2]


def test_a_refused_quote_overtaken_by_a_newer_one_is_conflated_not_sent_back_in_time() -> None:
    clock, redis = Clock(), FakeRedis(broken={"t:tick:BAD"})
    core = make_core(clock)
    core.submit([tick("BAD", 1)])
    first = core.next_flight(clock.now)
    assert first is not None
    first_answer = redis.run(first)
    redis.broken.clear()
    core.submit([tick("BAD", 2)])
    second = core.next_flight(clock.now)  # quotes may overtake
    assert second is not None
    core.on_answer(first_answer, clock.now)
    core.on_answer(redis.run(second), clock.now)
    drive(core, redis, clock)
    assert redis.seqs("t:tick:BAD") == [2]
    assert redis.latest["t:latest:tick:BAD"].seq == 2
    assert core.stats.conflated["tick"] == 1 and core.idle


# --- a lost connection -----------------------------------------------------------------------


def test_a_lost_connection_sends_both_flights_again_in_order_and_the_gap_is_reported() -> None:
    clock, redis = Clock(), FakeRedis()
    core = make_core(clock)
    core.submit([tick("A", 1)])
    core.next_flight(clock.now)
    core.submit([tick("A", 2)])
    core.next_flight(clock.now)
    core.submit([bar("A", 1)])
    core.on_lost(Failure(Outage.UNAVAILABLE, "ConnectionError: gone"), clock.now)
    assert not core.redis_ok and core.in_flight == 0
    assert notices(core) == [
        "redis unavailable, holding events (conflating quotes and books): ConnectionError: gone"
    ]
    assert core.next_flight(clock.now) is None  # backing off
    assert core.wake_at(clock.now) == pytest.approx(clock.now + 0.05)
    clock.advance(1.0)
    drive(core, redis, clock)
    assert redis.seqs("t:tick:A") == [2]  # conflated to the newer under the gap
    assert core.stats.conflated["tick"] == 1 and redis.seqs("t:bar:A") == [1]
    assert core.redis_ok and status_states(redis) == ["gap"]
    gap = redis.streams["t:status"][0]
    assert isinstance(gap, StatusEvent) and gap.info["reason"] == "ConnectionError: gone"
    assert gap.info["end_ns"] - gap.info["start_ns"] == 1_000_000_000
    # #17: the event that ends a gap says how long it was and which keys it affected
    assert gap.info["seconds"] == 1.0
    assert (gap.info["affected"], gap.info["affected_total"]) == (["tick:A"], 1)


def test_a_flight_redis_ran_before_its_answer_was_lost_is_not_written_twice() -> None:
    """Redis stalled past the write timeout: it ran the flight, but the publisher never read the
    answer and sends it again. The watermark of this writer makes the resend a no-op."""
    clock, redis = Clock(), FakeRedis()
    core = make_core(clock)
    core.submit([bar("A", 1), AccountEvent(symbol="", seq=1, recv_ns=1), tick("A", 1)])
    flight = core.next_flight(clock.now)
    assert flight is not None
    redis.run(flight)  # written, answer lost
    core.on_lost(Failure(Outage.UNAVAILABLE, "TimeoutError: "), clock.now)
    core.submit([bar("A", 2)])
    clock.advance(1.0)
    drive(core, redis, clock)
    assert redis.seqs("t:bar:A") == [1, 2] and redis.seqs("t:account") == [1]
    assert redis.seqs("t:tick:A") == [1]
    assert core.stats.published["bar"] == 2 and core.stats.published["account"] == 1


def test_another_writer_is_never_taken_for_a_resend() -> None:
    """A standby that took over starts its own seq at 1 again: its entries are written even
    though the stream's last entry, the old instance's, has a higher seq."""
    clock, redis = Clock(), FakeRedis()
    old, new = make_core(clock), make_core(clock)
    old.submit([bar("A", i) for i in range(1, 6)])
    drive(old, redis, clock)
    new.submit([bar("A", 1), bar("A", 2)])
    flight = new.next_flight(clock.now)
    assert flight is not None
    new.on_answer(redis.run(flight, replace(SETTINGS, writer=b"w2")), clock.now)
    assert redis.seqs("t:bar:A") == [1, 2, 3, 4, 5, 1, 2]


def test_a_refused_entry_blocks_the_rest_of_its_stream_in_the_same_call() -> None:
    """Out of memory mid-script: the bars after a refused one are not written ahead of it (and
    the watermark never passes an entry that was not written)."""
    clock = Clock()

    class OutOfMemoryOnce(FakeRedis):
        def _xadd(self, flight: Flight, i: int) -> wire.ErrorReply | None:
            if flight.batch[i].seq == 2 and not getattr(self, "failed", False):
                self.failed = True
                return wire.ErrorReply("OOM command not allowed when used memory > 'maxmemory'")
            return super()._xadd(flight, i)

    redis = OutOfMemoryOnce()
    core = make_core(clock)
    core.submit([bar("A", i) for i in range(1, 5)] + [bar("B", 1)])
    drive(core, redis, clock, rounds=1)
    assert redis.seqs("t:bar:A") == [1] and redis.seqs("t:bar:B") == [1]
    clock.advance(1.0)
    drive(core, redis, clock)
    assert redis.seqs("t:bar:A") == [1, 2, 3, 4]


def test_failures_back_off_doubling_to_five_seconds_and_an_answer_resets_it() -> None:
    clock = Clock()
    core = make_core(clock)
    delays = []
    for _ in range(9):
        core.submit([bar("A", 1)])
        core.next_flight(clock.now)
        core.on_lost(Failure(Outage.UNAVAILABLE, "TimeoutError: "), clock.now)
        delays.append(round(core.wake_at(clock.now) - clock.now, 3))
        clock.advance(delays[-1])
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    flight = core.next_flight(clock.now)
    assert flight is not None
    core.on_answer(Answer(), clock.now)
    core.submit([bar("A", 2)])
    core.next_flight(clock.now)
    core.on_lost(Failure(Outage.UNAVAILABLE, "TimeoutError: "), clock.now)
    assert core.wake_at(clock.now) - clock.now == pytest.approx(0.05)


# --- refusals --------------------------------------------------------------------------------


def test_a_key_of_the_wrong_type_holds_its_stream_alone_backing_off_and_said_once() -> None:
    clock, redis = Clock(), FakeRedis(broken={"t:bar:BAD"})
    core = make_core(clock)
    core.submit([bar("BAD", 1), bar("GOOD", 1)])
    drive(core, redis, clock, rounds=1)
    assert core.held_streams == ["t:bar:BAD"] and core.redis_ok
    assert redis.seqs("t:bar:GOOD") == [1]
    tries = [clock.now]
    for _ in range(4):
        wake = core.wake_at(clock.now)
        clock.advance(wake - clock.now)
        flight = core.next_flight(clock.now)
        assert flight is not None and [e.symbol for e in flight.batch] == ["BAD"]
        core.on_answer(redis.run(flight), clock.now)
        tries.append(clock.now)
    gaps = [round(b - a, 3) for a, b in itertools.pairwise(tries)]
    assert gaps == [0.05, 0.1, 0.2, 0.4]
    core.submit([bar("GOOD", 2), bar("BAD", 2)])
    flight = core.next_flight(clock.now)
    assert flight is not None and [e.symbol for e in flight.batch] == ["GOOD"]  # BAD joins its hold
    core.on_answer(redis.run(flight), clock.now)
    said = notices(core)
    assert len([m for m in said if "refused writes to t:bar:BAD" in m]) == 1
    redis.broken.clear()
    drive(core, redis, clock)
    assert redis.seqs("t:bar:BAD") == [1, 2] and core.held_streams == []
    gap = redis.streams["t:status"][-1]
    assert isinstance(gap, StatusEvent) and gap.state == "gap"
    assert gap.info["stream"] == "t:bar:BAD" and gap.info["reason"].startswith("WRONGTYPE")
    assert core.stats.published["bar"] == 4


def test_bars_gathered_while_a_held_stream_is_tried_stay_behind_the_tried_ones() -> None:
    clock, redis = Clock(), FakeRedis(broken={"t:bar:A"})
    core = make_core(clock)
    core.submit([bar("A", 1), bar("A", 2)])
    drive(core, redis, clock, rounds=1)
    clock.advance(1.0)
    retry = core.next_flight(clock.now)
    assert retry is not None and [e.seq for e in retry.batch] == [1, 2]
    core.submit([bar("A", 3)])  # arrives while the try is out
    core.on_answer(redis.run(retry), clock.now)  # refused again
    assert core.depth == 3 and core.in_flight == 0
    redis.broken.clear()
    drive(core, redis, clock)
    assert redis.seqs("t:bar:A") == [1, 2, 3]


def test_a_held_quote_stream_is_conflated_to_its_newest_and_the_others_keep_every_quote() -> None:
    clock, redis = Clock(), FakeRedis(broken={"t:tick:BAD"})
    core = make_core(clock)
    for seq in range(1, 41):
        core.submit([tick("GOOD", seq), tick("BAD", seq)])
        drive(core, redis, clock, rounds=2)
        clock.advance(0.005)
    assert redis.seqs("t:tick:GOOD") == list(range(1, 41))
    redis.broken.clear()
    drive(core, redis, clock)
    bad = redis.seqs("t:tick:BAD")
    assert bad[-1] == 40 and bad == sorted(bad) and len(bad) < 40
    assert core.stats.conflated["tick"] == 40 - len(bad)
    assert redis.latest["t:latest:tick:BAD"].seq == 40


def test_a_refusal_of_every_key_is_a_gap_for_every_stream() -> None:
    clock, redis = Clock(), FakeRedis(denied={b"XADD"})
    core = make_core(clock)
    core.submit([bar("A", 1)])
    drive(core, redis, clock, rounds=1)
    assert not core.redis_ok and core.held_streams == []
    assert notices(core)[0].startswith("redis refused a write, holding events")
    redis.denied.clear()
    clock.advance(1.0)
    drive(core, redis, clock)
    assert redis.seqs("t:bar:A") == [1]
    gaps = [e for e in redis.streams["t:status"] if isinstance(e, StatusEvent)]
    assert len(gaps) == 1 and "stream" not in gaps[0].info
    assert gaps[0].info["reason"] == f"ResponseError: {NOPERM}"


def test_a_refused_latest_key_write_is_tried_again_without_going_back_in_time() -> None:
    clock, redis = Clock(), FakeRedis(denied={b"MSET"})
    core = make_core(clock)
    core.submit([tick("A", 1)])
    drive(core, redis, clock, rounds=1)
    assert not core.redis_ok and not core.idle  # the latest value still owed
    core.submit([tick("A", 2), tick("B", 1)])
    clock.advance(1.0)
    drive(core, redis, clock, rounds=3)
    assert "t:latest:tick:A" not in redis.latest
    redis.denied.clear()
    clock.advance(10.0)
    drive(core, redis, clock)
    assert redis.latest["t:latest:tick:A"].seq == 2 and redis.latest["t:latest:tick:B"].seq == 1
    assert redis.seqs("t:tick:A") == [1, 2] and core.redis_ok and core.idle


def test_a_refused_latest_value_goes_again_only_with_nothing_in_flight() -> None:
    """A flight out may hold a newer value of the same key (answers apply in order), so the
    value owed rides only on a flight sent with nothing in flight."""
    clock = Clock()
    core = make_core(clock)
    core.submit([tick("A", 1)])
    assert core.next_flight(clock.now) is not None
    core.on_answer(
        Answer(latest_written=False, refusal=wire.classify("OOM"), per_stream=False), clock.now
    )
    assert not core.redis_ok  # OOM: a gap for every stream, A: 1 owed
    clock.advance(1.0)
    core.submit([tick("A", 3)])
    first = core.next_flight(clock.now)
    assert first is not None and first.latest == {b"t:latest:tick:A": first.payloads[0]}
    core.submit([tick("B", 1)])
    second = core.next_flight(clock.now)
    assert second is not None and set(second.latest) == {b"t:latest:tick:B"}
    core.on_answer(Answer(), clock.now)
    core.on_answer(Answer(), clock.now)
    assert core.redis_ok
    last = core.next_flight(clock.now)  # the gap's status event; nothing more owed
    assert last is not None and last.latest == {}
    assert [e.state for e in last.batch] == ["gap"]  # type: ignore[union-attr]


# --- pressure, heartbeat, close --------------------------------------------------------------


def test_a_full_queue_conflates_quotes_keeps_bars_and_says_so_once() -> None:
    clock, redis = Clock(), FakeRedis()
    core = make_core(clock, queue_size=10)
    core.submit([tick("A", i) for i in range(1, 11)])
    core.submit([tick("A", i) for i in range(11, 31)] + [bar("A", i) for i in range(1, 6)])
    assert core.stats.conflated["tick"] == 19 and core.depth == 16
    assert notices(core) == [
        "publish queue full (10 events): redis is slower than the stream, conflating quotes "
        "and books until it catches up"
    ]
    drive(core, redis, clock)
    assert redis.seqs("t:tick:A") == [*range(1, 11), 30] and redis.seqs("t:bar:A") == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert notices(core) == [
        "publish queue drained: 19 events conflated, 0 dropped while it was full"
    ]


def test_bars_past_the_hard_cap_are_dropped_and_counted() -> None:
    clock = Clock()
    core = make_core(clock, queue_size=2)
    core.on_lost(Failure(Outage.UNAVAILABLE, "ConnectionError: down"), clock.now)
    core.submit([bar("A", i) for i in range(1, 31)])
    assert core.depth == 20 and core.stats.dropped["bar"] == 10


def test_the_heartbeat_rides_along_and_goes_alone_when_quiet() -> None:
    clock, redis = Clock(), FakeRedis()
    core = make_core(clock, heartbeat_every=5.0)
    core.submit([tick("A", 1)])
    flight = core.next_flight(clock.now)
    assert flight is not None and flight.heartbeat_ms == clock.ns // 1_000_000
    core.on_answer(redis.run(flight), clock.now)
    clock.advance(1.0)
    core.submit([tick("A", 2)])
    flight = core.next_flight(clock.now)
    assert flight is not None and flight.heartbeat_ms is None  # not due yet
    core.on_answer(redis.run(flight), clock.now)
    assert core.next_flight(clock.now) is None
    assert core.wake_at(clock.now) == pytest.approx(clock.now + 4.0)
    clock.advance(4.0)
    alone = core.next_flight(clock.now)
    assert alone is not None and alone.batch == [] and alone.heartbeat_ms is not None
    core.on_answer(redis.run(alone), clock.now)
    assert core.stats.batches == 2 and redis.heartbeats == 2


def test_a_quiet_bridge_ends_its_gap_when_the_heartbeat_is_answered() -> None:
    """With no events to carry it, the heartbeat is what finds Redis back: /healthz and the
    `gap` event do not wait for the next quote."""
    clock, redis = Clock(), FakeRedis()
    core = make_core(clock, heartbeat_every=5.0)
    core.on_lost(Failure(Outage.UNAVAILABLE, "ConnectionError: down"), clock.now)
    assert not core.redis_ok
    clock.advance(core.wake_at(clock.now) - clock.now)
    probe = core.next_flight(clock.now)
    assert probe is not None and probe.batch == [] and probe.heartbeat_ms is not None
    core.on_answer(redis.run(probe), clock.now)
    assert core.redis_ok
    drive(core, redis, clock)
    assert status_states(redis) == ["gap"]


def test_close_gives_a_held_stream_one_last_try_then_counts_it_as_not_written() -> None:
    clock, redis = Clock(), FakeRedis(broken={"t:bar:A"})
    core = make_core(clock)
    core.submit([bar("A", i) for i in range(1, 4)])
    drive(core, redis, clock, rounds=1)
    core.close(clock.now, timeout=600)
    last = core.next_flight(clock.now)  # at once, not after its backoff
    assert last is not None and len(last.batch) == 3
    core.on_answer(redis.run(last), clock.now)
    assert core.finished(clock.now) and core.unwritten() == 3


def test_close_counts_flights_in_flight_and_stops_at_its_deadline() -> None:
    clock = Clock()
    core = make_core(clock)
    core.submit([bar("A", i) for i in range(1, 4)])
    assert core.next_flight(clock.now) is not None
    core.close(clock.now, timeout=0.3)
    assert not core.finished(clock.now) and core.unwritten() == 3
    core.on_lost(Failure(Outage.UNAVAILABLE, "TimeoutError: "), clock.now)
    clock.advance(0.3)
    assert core.finished(clock.now) and core.unwritten() == 3


def test_refused_tries_record_no_latency_sample() -> None:
    clock, redis = Clock(), FakeRedis(broken={"t:bar:BAD"})
    core = make_core(clock)
    core.submit([bar("BAD", 1, recv_ns=clock.ns)])
    for _ in range(4):
        clock.advance(1.0)
        drive(core, redis, clock, rounds=1)  # a try, refused
    assert core.stats.redis_errors == 4 and not core.stats.latencies_ns
    core.submit([bar("GOOD", 1, recv_ns=clock.ns)])
    flight = core.next_flight(clock.now)
    assert flight is not None
    clock.advance(0.001)
    core.on_answer(redis.run(flight), clock.now)
    assert [oldest for oldest, _ in core.stats.latencies_ns] == [1_000_000]


# --- everything at once, at random -----------------------------------------------------------


@pytest.mark.parametrize("losses", [False, True])
@pytest.mark.parametrize("seed", range(20))
def test_keys_broken_and_fixed_at_random_lose_nothing_and_never_go_back(
    seed: int, losses: bool
) -> None:
    """Quotes, bars and status events on several streams, keys made the wrong type and fixed at
    random, answers delayed, and with `losses` the connection lost now and then (a lost flight
    may have been run by Redis, and is sent again). Every bar and status event arrives once, in
    order; quotes in order, each at most once, ending with the newest, as does the latest key;
    every event is counted once, as written or conflated."""
    rnd = random.Random(seed)
    clock, redis = Clock(), FakeRedis()
    core = PublisherCore(StreamKeys("t"), queue_size=50, clock_ns=clock.wall, rng=rnd.random)
    symbols = ["A", "B", "C"]
    keys = [f"t:{kind}:{s}" for kind in ("tick", "bar") for s in symbols] + ["t:status"]
    ticks = dict.fromkeys(symbols, 0)
    bars = dict.fromkeys(symbols, 0)
    statuses = 0
    out: list[tuple[Flight, Answer]] = []  # run by Redis, answer not read yet
    for _ in range(400):
        events: list[Event] = []
        for _ in range(rnd.randint(0, 5)):
            s = rnd.choice(symbols)
            if rnd.random() < 0.7:
                ticks[s] += 1
                events.append(tick(s, ticks[s]))
            else:
                bars[s] += 1
                events.append(bar(s, bars[s]))
        core.submit(events)
        if rnd.random() < 0.02:
            core.status("note", "fuzz")
            statuses += 1
        if rnd.random() < 0.05:
            redis.broken ^= {rnd.choice(keys)}
        flight = core.next_flight(clock.now)
        if flight is not None:
            out.append((flight, redis.run(flight)))
        if out and rnd.random() < 0.6:
            core.on_answer(out.pop(0)[1], clock.now)
        if losses and rnd.random() < 0.02:
            out.clear()
            core.on_lost(Failure(Outage.UNAVAILABLE, "ConnectionError: killed"), clock.now)
        clock.advance(rnd.choice([0.0, 0.001, 0.01, 0.1]))
    redis.broken.clear()
    for _, answer in out:
        core.on_answer(answer, clock.now)
    drive(core, redis, clock, rounds=500)
    assert core.idle and core.redis_ok and core.held_streams == []
    written = 0
    for s in symbols:
        assert redis.seqs(f"t:bar:{s}") == list(range(1, bars[s] + 1))
        quotes = redis.seqs(f"t:tick:{s}")
        assert quotes == sorted(set(quotes)) and (not ticks[s] or quotes[-1] == ticks[s])
        if ticks[s]:
            assert redis.latest[f"t:latest:tick:{s}"].seq == ticks[s]
        written += len(quotes)
    # Every quote is counted once, as written or as conflated; a quote whose flight Redis ran
    # but whose answer was lost, then overtaken by a newer one, counts as conflated.
    assert core.stats.published["tick"] + core.stats.conflated["tick"] == sum(ticks.values())
    assert core.stats.published["tick"] <= written
    if not losses:
        assert core.stats.published["tick"] == written
    assert core.stats.published["bar"] == sum(bars.values())
    status = redis.streams.get("t:status", [])
    assert core.stats.published["status"] == len(status)
    assert [e.seq for e in status] == sorted({e.seq for e in status})
    assert len([e for e in status if e.state == "note"]) == statuses  # type: ignore[union-attr]


def test_notices_are_log_lines_with_levels() -> None:
    clock = Clock()
    core = make_core(clock)
    core.on_lost(Failure(Outage.UNAVAILABLE, "ConnectionError: down"), clock.now)
    assert [n.level for n in core.notices] == [logging.ERROR]


def test_status_info_is_added_to_every_status_event_under_what_the_caller_gave() -> None:
    clock, redis = Clock(), FakeRedis()
    core = make_core(clock)
    core.status_info["instance"] = "host:1:abc"
    core.status("connected", "hello")
    core.status("active", "mine", instance="given")
    core.on_lost(Failure(Outage.UNAVAILABLE, "ConnectionError: down"), clock.now)
    clock.advance(1.0)
    drive(core, redis, clock)
    events = [e for e in redis.streams["t:status"] if isinstance(e, StatusEvent)]
    assert [(e.state, e.info.get("instance")) for e in events] == [
        ("connected", "host:1:abc"),
        ("active", "given"),
        ("gap", "host:1:abc"),
    ]


# --- cluster mode (#18) --------------------------------------------------------------------------


CLUSTER = wire.WriteSettings(
    b"1000", b"{t}:heartbeat", b"15000", b"{t}:written", b"w1", True, b"t:written:"
)


def cluster_core(clock: Clock) -> PublisherCore:
    return PublisherCore(StreamKeys("t", cluster=True), clock_ns=clock.wall, rng=lambda: 0.0)


def test_cluster_mode_sends_one_script_per_hash_tag_and_maps_refusals_back() -> None:
    """Every command touches one slot: a symbol's streams, its marks hash and its latest keys
    share `{SYMBOL}`, so one EVALSHA per tag sets them all (no MSET of its own); a refusal in
    one tag's script refuses that stream's entries only, found by their places."""
    clock, redis = Clock(), FakeRedis(broken={"t:bar:{B}"}, settings=CLUSTER)
    core = cluster_core(clock)
    core.submit([tick("A", 1), bar("B", 1), tick("B", 1), bar("A", 1), tick("A", 2)])
    core.status("hello")
    flight = core.next_flight(clock.now)
    assert flight is not None
    commands, _ = wire.build(flight, CLUSTER)
    scripts = [args for args in commands if args[0] == b"EVALSHA"]
    assert [args[0] for args in commands] == [b"EVALSHA"] * 3 + [b"SET"]  # A, B, {t}; heartbeat
    for args in scripts:
        assert args[1] == wire.XADD_ONCE_SHA
        keys = args[3 : 3 + int(args[2])]  # streams, the marks hash, latest keys
        assert len({hash_tag(k) for k in keys}) == 1, keys
    assert b"t:latest:tick:{A}" in scripts[0] and b"t:latest:tick:{B}" in scripts[1]
    core.on_answer(redis.run(flight), clock.now)
    drive(core, redis, clock, rounds=1)
    assert redis.seqs("t:tick:{A}") == [1, 2] and redis.seqs("t:tick:{B}") == [1]
    assert redis.seqs("t:bar:{A}") == [1] and redis.streams.get("t:bar:{B}") is None
    assert core.held_streams == ["t:bar:{B}"]
    assert redis.latest["t:latest:tick:{A}"].seq == 2 and redis.latest["t:latest:tick:{B}"].seq == 1
    assert [e.state for e in redis.streams["{t}:status"]] == ["hello"]  # type: ignore[union-attr]


def test_cluster_mode_a_refused_latest_value_in_a_tags_script_is_tried_again() -> None:
    """The script reports its MSET's refusal as entry 0: the entries are written, the latest
    values are owed (a gap for all, as for a refused MSET) and go again, alone of their tag's
    entries, once Redis takes them."""
    clock, redis = Clock(), FakeRedis(denied={b"MSET"}, settings=CLUSTER)
    core = cluster_core(clock)
    core.submit([tick("A", 1), tick("B", 1)])
    drive(core, redis, clock, rounds=1)
    assert not core.redis_ok and not core.idle
    assert redis.seqs("t:tick:{A}") == [1] and redis.seqs("t:tick:{B}") == [1]
    core.submit([tick("A", 2)])
    redis.denied.clear()
    clock.advance(10.0)
    drive(core, redis, clock)
    assert redis.latest["t:latest:tick:{A}"].seq == 2 and redis.latest["t:latest:tick:{B}"].seq == 1
    assert redis.seqs("t:tick:{A}") == [1, 2] and core.redis_ok and core.idle


def test_cluster_mode_chunks_a_tags_entries_and_sets_a_latest_value_with_its_entry() -> None:
    clock = Clock()
    core = cluster_core(clock)
    core.submit([tick("A", seq) for seq in range(wire.XADD_CHUNK + 2)])
    flight = core.next_flight(clock.now)
    assert flight is not None
    commands, plan = wire.build(flight, CLUSTER)
    assert [kind for kind, *_ in plan] == [wire.SCRIPT, wire.SCRIPT_LATEST, wire.OTHER]
    assert [int(args[2]) for args in commands[:2]] == [wire.XADD_CHUNK + 1, 2 + 1 + 1]
    # the newest value is the latest, named by its entry's number: its payload goes once
    assert commands[1][-2:] == [b"1", b"2"] and commands[1].count(flight.payloads[-1]) == 1
    assert b"t:latest:tick:{A}" not in commands[0]


def test_a_latest_value_goes_once_by_its_entry_and_a_value_of_no_entry_as_it_is() -> None:
    """Standalone: the latest value of a key whose newest event is in the flight is that
    entry's payload, named by number in the call that holds the entry; a refused value tried
    again has no entry and goes as it is, with the last call, then in calls of their own,
    `XADD_CHUNK` a call. FakeRedis reads the values back the way the script does."""
    n = wire.XADD_CHUNK + 2
    batch: list[Event] = [tick("S0", 2)] + [tick("S1", seq) for seq in range(2, n + 1)]
    payloads = [encode_event(event) for event in batch]
    owed = {f"t:latest:tick:R{i}".encode(): encode_event(tick(f"R{i}", 1)) for i in range(n)}
    latest = {**owed, b"t:latest:tick:S0": payloads[0], b"t:latest:tick:S1": payloads[-1]}
    entry = {b"t:latest:tick:S0": 0, b"t:latest:tick:S1": n - 1}
    streams = [b"t:tick:S0"] + [b"t:tick:S1"] * (n - 1)
    flight = Flight(batch, streams, payloads, latest, entry, [], None, 1, 1, False)
    commands, plan = wire.build(flight, SETTINGS)
    assert [(kind, first, count) for kind, first, count, _ in plan] == [
        (wire.SCRIPT_LATEST, 0, wire.XADD_CHUNK),
        (wire.SCRIPT_LATEST, wire.XADD_CHUNK, 2),
        (wire.SCRIPT_LATEST, 0, 0),
    ]
    # keys: entries + marks + latest: S0 by number; S1 by number and 500 owed values; 2 more
    assert [int(args[2]) for args in commands] == [
        wire.XADD_CHUNK + 1 + 1,
        2 + 1 + 1 + wire.XADD_CHUNK,
        1 + n - wire.XADD_CHUNK,
    ]
    assert sum(args.count(payloads[0]) for args in commands) == 1
    assert sum(args.count(payloads[-1]) for args in commands) == 1
    redis = FakeRedis()
    assert redis.run(flight) == Answer()
    assert redis.latest["t:latest:tick:S0"].seq == 2
    assert redis.latest["t:latest:tick:S1"].seq == n
    assert {key: redis.latest[key.decode()].symbol for key in owed} == {
        key: f"R{i}" for i, key in enumerate(owed)
    }
    assert redis.seqs("t:tick:S1") == list(range(2, n + 1))


def test_only_a_flight_holding_events_of_a_lost_answer_checks_the_watermarks() -> None:
    """A first try cannot have been written before: its script call skips the watermark read
    (ARGV[4] = 0). The flight that sends again what a lost answer left unsure checks (1), and
    once it is answered the next first try does not."""
    clock = Clock()
    core = make_core(clock)

    def check_flags(flight: Flight) -> list[bytes]:
        commands, _ = wire.build(flight, SETTINGS)
        return [args[3 + int(args[2]) + 3] for args in commands if args[0] == b"EVALSHA"]

    core.submit([bar("A", 1)])
    first = core.next_flight(clock.now)
    assert first is not None and not first.check and check_flags(first) == [b"0"]
    core.on_lost(Failure(Outage.UNAVAILABLE, "TimeoutError: "), clock.now)
    core.submit([bar("A", 2)])
    clock.advance(10.0)
    again = core.next_flight(clock.now)
    assert again is not None and [e.seq for e in again.batch] == [1, 2]
    assert again.check and check_flags(again) == [b"1"]
    core.on_answer(Answer(), clock.now)
    core.submit([bar("A", 3)])
    later = core.next_flight(clock.now)
    assert later is not None and not later.check and check_flags(later) == [b"0"]


def test_the_unsure_events_of_many_failures_are_only_those_still_waiting() -> None:
    """A long outage: every try fails, and the quotes waiting are conflated to the newest each
    time. What the core remembers as unsure is what still waits, not every quote ever lost."""
    clock = Clock()
    core = make_core(clock, queue_size=10)
    for n in range(1, 200):
        core.submit([tick(f"S{i}", n) for i in range(20)])
        if core.next_flight(clock.now) is not None:
            core.on_lost(Failure(Outage.UNAVAILABLE, "ConnectionError: down"), clock.now)
        clock.advance(10.0)
    assert 0 < len(core._unsure) <= core.depth == 20
    flight = core.next_flight(clock.now)
    assert flight is not None and flight.check
