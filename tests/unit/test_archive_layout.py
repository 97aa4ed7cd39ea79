"""The archive's keys on each topology and what a re-read of its own pending entries skips,
without Redis: on a cluster every command the archive sends names keys of one slot; a replica
that does not confirm is said once."""

from __future__ import annotations

import logging
from typing import Any

from redis.exceptions import ResponseError

from schwab_stream.archive.keys import KEYS_PER_CALL, ArchiveKeys
from schwab_stream.archive.pipes import Confirmation
from schwab_stream.archive.source import Handed
from schwab_stream.publish.keys import hash_tag


def slot_tag(key: str) -> str:
    """What Redis Cluster hashes: inside the hash tag's braces, or the whole key without one."""
    tag = hash_tag(key.encode()).decode()
    return tag[1:-1] if tag else key


def test_a_single_redis_keeps_the_names_and_reads_many_streams_at_once() -> None:
    keys = ArchiveKeys("schwab", "archive")
    assert keys.seq("schwab:tick:AAPL") == keys.seq("schwab:tick:MSFT")
    assert keys.seq("schwab:tick:AAPL") == "schwab:archive:archive:seq"
    assert keys.consumers == "schwab:archive:archive:consumers"
    assert keys.intents("c1") == "schwab:archive:archive:intents:c1"
    assert keys.singles == ["schwab:account", "schwab:status"]
    assert keys.status == "schwab:status"
    streams = [f"schwab:tick:S{i}" for i in range(KEYS_PER_CALL + 5)]
    assert [len(b) for b in keys.batches(streams)] == [KEYS_PER_CALL, 5]


def test_on_a_cluster_each_read_names_one_slot_with_the_seq_record_beside_its_streams() -> None:
    keys = ArchiveKeys("schwab", "archive", cluster=True)
    streams = [
        "schwab:tick:{AAPL}",
        "schwab:bar:{AAPL}",
        "schwab:level2:{AAPL}",
        "schwab:tick:{MSFT}",
        "{schwab}:status",
        "{schwab}:account",
        "other:tick:UNTAGGED",
    ]
    batches = keys.batches(streams)
    assert sorted(map(sorted, batches)) == sorted(
        [
            ["schwab:bar:{AAPL}", "schwab:level2:{AAPL}", "schwab:tick:{AAPL}"],
            ["schwab:tick:{MSFT}"],
            ["{schwab}:account", "{schwab}:status"],
            ["other:tick:UNTAGGED"],
        ]
    )
    for batch in batches:
        assert {slot_tag(k) for k in [*batch, keys.seq(batch[0])]} == {slot_tag(batch[0])}
    assert keys.seq("schwab:tick:{AAPL}") == "schwab:archive:archive:seq:{AAPL}"
    assert keys.singles == ["{schwab}:account", "{schwab}:status"] and keys.status == streams[4]
    # the group's bookkeeping under one tag: each heartbeat / intent / declare script is one slot
    consumer = "host-1-abc"
    own = [keys.consumers, keys.alive(consumer), keys.dead(consumer), keys.intents(consumer)]
    assert {slot_tag(k) for k in own} == {"schwab"}
    assert keys.symbol_patterns()[0] == "schwab:tick:*"


def test_glob_characters_of_the_prefix_are_escaped_in_the_scan_pattern() -> None:
    assert ArchiveKeys("a*b", "g").symbol_patterns()[0] == "a\\*b:tick:*"


def test_a_reread_skips_entries_claimed_past_the_last_read_and_forgets_them_once_past() -> None:
    handed = Handed()
    assert handed.after("s") == "0-0"
    handed.read("s", "10-0")
    handed.claim("s", ["5-0", "12-0", "20-1"])  # 5-0 is behind the last read: never re-read
    assert handed.known("s", "12-0") and handed.known("s", "20-1")
    assert not handed.known("s", "5-0") and not handed.known("s", "11-0")
    handed.read("s", "8-0")  # never moves back
    assert handed.after("s") == "10-0"
    handed.read("s", "15-0")
    assert not handed.known("s", "12-0") and handed.known("s", "20-1")
    handed.read("s", "21-0")
    assert handed.claimed == {} and handed.after("s") == "21-0"


def test_replicas_that_do_not_confirm_are_said_once_and_their_return_once(caplog: Any) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream.archive")
    confirmation = Confirmation()
    for replicas in (1, 0, 0, ResponseError("NOPERM"), 1, 1):
        confirmation.seen(1, replicas)
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2
    assert said[0].startswith("no replica confirmed the archive's writes within 250 ms")
    assert said[1] == "a replica confirms the archive's writes again"
