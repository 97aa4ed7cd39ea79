"""Cluster mode's routing (#18): a flight's commands split by the node serving each one's slot,
each node's part in the flight's order, and the replies gathered back in the commands' order
whichever node answers first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from redis.asyncio.connection import AbstractConnection
from redis.crc import key_slot

from schwab_stream.events import BarEvent, TickEvent
from schwab_stream.publish import wire
from schwab_stream.publish.cluster import Address, Gather, NodeLink, SlotMap, command_key
from schwab_stream.publish.core import PublisherCore
from schwab_stream.publish.keys import StreamKeys

SETTINGS = wire.WriteSettings(
    b"1000", b"{t}:heartbeat", b"15000", b"{t}:written", b"w1", True, b"t:written:"
)
A: Address = ("127.0.0.1", 7000)
B: Address = ("127.0.0.1", 7001)


def halves() -> SlotMap:
    """A below slot 8192, B from there."""
    return SlotMap([A if slot < 8192 else B for slot in range(16384)])


def flight_commands(symbols: Sequence[str]) -> list[list[bytes]]:
    core = PublisherCore(StreamKeys("t", cluster=True))
    events = [TickEvent(service="LEVELONE_EQUITIES", symbol=s, seq=1, last=1.0) for s in symbols]
    events += [BarEvent(service="CHART_EQUITY", symbol=s, seq=1) for s in symbols]
    core.submit(list(events))
    core.status("hello")
    flight = core.next_flight(0.0)
    assert flight is not None
    commands, _ = wire.build(flight, SETTINGS)
    return commands


def test_a_command_is_routed_by_its_first_key() -> None:
    evalsha = [b"EVALSHA", wire.XADD_ONCE_SHA, b"2", b"t:tick:{A}", b"t:written:{A}", b"1000"]
    assert command_key(evalsha) == b"t:tick:{A}"
    assert command_key([b"SET", b"{t}:heartbeat", b"1", b"PX", b"15000"]) == b"{t}:heartbeat"
    assert command_key([b"PUBLISH", b"t:pub:tick:A", b"{}"]) == b"t:pub:tick:A"


def test_a_flight_is_split_by_node_each_part_in_the_flights_order() -> None:
    symbols = ["AAPL", "MSFT", "NVDA", "SPY", "AMD", "TSLA", "QQQ", "IBM"]
    commands = flight_commands(symbols)
    parts = halves().split(commands)
    assert set(parts) == {A, B}  # these symbols' slots fall on both sides
    assert sorted(i for places in parts.values() for i in places) == list(range(len(commands)))
    for address, places in parts.items():
        assert places == sorted(places)
        for i in places:
            slot = key_slot(command_key(commands[i]))
            assert (A if slot < 8192 else B) == address
            if commands[i][0] == b"EVALSHA":  # every key of the script on that node's slot
                keys = commands[i][3 : 3 + int(commands[i][2])]
                assert {key_slot(k) for k in keys} == {slot}


def test_a_slot_no_node_serves_is_said_not_guessed() -> None:
    commands = flight_commands(["AAPL"])
    served = {slot: A for slot in range(16384) if slot != key_slot(b"{AAPL}")}
    parts = SlotMap.of(served).split(commands)
    assert None in parts and A in parts


def test_replies_gather_in_command_order_whichever_node_answers_first() -> None:
    done: list[Gather] = []
    conn = cast(AbstractConnection, object())
    first, second = NodeLink(conn, lambda: done.append(gather)), NodeLink(conn, lambda: None)
    gather = Gather(5, 2)
    first.parts.append((gather, [0, 2, 4]))
    second.parts.append((gather, [1, 3]))
    later = Gather(1, 1)
    second.parts.append((later, [0]))
    for reply in (b"b1", b"b3"):
        second.deliver(reply)
    assert gather.left == 1 and not done
    second.deliver(b"later")  # the next flight's part on that node: not mixed into this one
    assert later.left == 0 and later.replies == [b"later"]
    for reply in (b"a0", b"a2", b"a4"):
        first.deliver(reply)
    assert done == [gather] and gather.replies == [b"a0", b"b1", b"a2", b"b3", b"a4"]
