"""The archive's read (`MULTI; XREADGROUP; EVAL READ; EXEC`, source.py) against a real Redis:
each read learns the `seq` the group was handed before it, whichever archiver read that; an
entry without a `seq` leaves the record as it was; a record written before the read was a
MULTI still counts; a MULTI refused while queueing runs nothing, and on a cluster one refused
with MOVED goes again to the slot's node."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import ResponseError

from schwab_stream.archive.pipes import Multi, OnePipe
from schwab_stream.archive.rows import id_order
from schwab_stream.archive.source import GroupSource
from tests.topologies import Cluster

from .test_archive import GROUP, PREFIX, make, publish, tick
from .test_archive_topologies import archiver

AAPL = f"{PREFIX}:tick:AAPL"


def source(redis_url: str, tmp_path: Path, consumer: str) -> GroupSource:
    archiver, _ = make(redis_url, tmp_path / "archive", consumer)
    archiver.source.discover()
    return archiver.source


def read(src: GroupSource, count: int) -> tuple[list[str], int | None]:
    """The AAPL entries one read hands out, and the `seq` it was told came before them."""
    [delivery] = [d for d in src.read(count) if d.stream == AAPL]
    return [e.entry_id for e in delivery.entries], delivery.prev_seq


def test_each_read_learns_the_seq_before_it_whichever_archiver_read_that(
    redis_url: str, tmp_path: Path
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 31)])
    a, b = source(redis_url, tmp_path, "a"), source(redis_url, tmp_path, "b")
    first, prev = read(a, 10)
    assert (len(first), prev) == (10, None)
    second, prev = read(b, 10)
    assert prev == 10 and id_order(second[0]) > id_order(first[-1])
    assert read(a, 10)[1] == 20
    assert b.read(10) == []


def test_an_entry_without_a_seq_leaves_the_seq_of_the_last_one_with_it(
    redis_url: str, tmp_path: Path
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 6)])
    client = redis.Redis.from_url(redis_url)
    for junk in (b"not json", b'{"type": "tick"}'):
        client.xadd(AAPL, {"data": junk})
    a, b = source(redis_url, tmp_path, "a"), source(redis_url, tmp_path, "b")
    assert len(read(a, 100)[0]) == 7
    publish(redis_url, [tick("AAPL", 6)])
    assert read(b, 100)[1] == 5


def test_a_seq_noted_by_the_read_script_of_before_is_the_seq_before(
    redis_url: str, tmp_path: Path
) -> None:
    publish(redis_url, [tick("AAPL", i) for i in range(1, 11)])
    a = source(redis_url, tmp_path, "a")
    client = redis.Redis.from_url(redis_url)
    client.xreadgroup(GROUP, "old", {AAPL: ">"}, count=4)
    client.hset(a.keys.seq(AAPL), AAPL, "4")  # the record as the script of before left it
    assert read(a, 100)[1] == 4
    publish(redis_url, [tick("AAPL", 11)])
    assert read(a, 100)[1] == 10


def test_a_multi_refused_while_queueing_runs_nothing(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    refused = Multi((("XADD", "k", "*", "f", "v"), ("NO-SUCH-COMMAND",)))
    ran = Multi((("XADD", "k", "*", "f", "v"), ("XLEN", "k")))
    first, second = OnePipe(client).send([("k", refused), ("k", ran)])
    assert isinstance(first, ResponseError)
    assert second[1] == 1 and client.xlen("k") == 1


def test_a_read_sent_where_its_slot_no_longer_is_goes_again_to_its_node_once(
    tmp_path: Path,
) -> None:
    made = Cluster()
    try:
        src = archiver(made.url, tmp_path / "archive", "a").source
        client: Any = src.client
        stream = f"{PREFIX}:tick:{{AAPL}}"
        for seq in range(1, 11):
            client.xadd(stream, {"data": json.dumps({"seq": seq})})
        src.discover()
        # the slot table says another node: its MULTI is refused there (MOVED), nothing runs
        right = client.get_node_from_key(stream)
        wrong = next(n for n in client.get_primaries() if n.name != right.name)
        client.nodes_manager.slots_cache[client.keyslot(stream)] = [wrong]
        [delivery] = src.read(100)
        assert (len(delivery.entries), delivery.prev_seq) == (10, None)
        assert client.xpending(stream, GROUP)["pending"] == 10
        client.xadd(stream, {"data": json.dumps({"seq": 11})})
        [delivery] = src.read(100)
        assert (len(delivery.entries), delivery.prev_seq) == (1, 10)
    finally:
        made.stop()
