"""The archive's rules without Redis or files: which segment a row joins, when a file rolls (on a
fake clock), what a file is named, which `seq` jumps are gaps, which entries are kept raw, the
typed columns; and that the bridge never loads pyarrow."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pyarrow as pa

from schwab_stream.archive.gaps import Gap, seq_gaps
from schwab_stream.archive.intake import intake
from schwab_stream.archive.roll import Roller
from schwab_stream.archive.rows import Entry, Mapped, Unmapped, to_row
from schwab_stream.archive.tables import table
from schwab_stream.events import (
    Event,
    Level,
    Level2Event,
    Maker,
    ScreenerEvent,
    ScreenerItem,
    StatusEvent,
    TickEvent,
    encode_event,
)

NY = ZoneInfo("America/New_York")
DAY = date(2025, 6, 10)


def roller(seconds: float = 60.0, events: int = 1000) -> Roller:
    return Roller(seconds, events)


def test_a_segment_rolls_at_its_event_count() -> None:
    r = roller(events=3)
    for i in range(3):
        r.add("tick", DAY, "s:tick:A", [f"{i + 1}-0"], i, now=0.0, acked=True)
    [segment] = r.due(0.0, DAY)
    assert segment.parts == [0, 1, 2] and segment.count == 3
    assert segment.ids == {"s:tick:A": ["1-0", "2-0", "3-0"]}
    assert r.due(0.0, DAY) == [] and r.held == 0


def test_a_segment_rolls_after_its_seconds_on_the_fake_clock() -> None:
    r = roller(seconds=10)
    r.add("tick", DAY, "s", ["1-0"], 0, now=100.0, acked=True)
    r.add("tick", DAY, "s", ["2-0"], 1, now=105.0, acked=True)
    assert r.due(109.9, DAY) == []
    assert r.next_due(109.0) == 1.0
    assert len(r.due(110.0, DAY)) == 1


def test_a_segment_of_yesterday_rolls_when_new_york_s_day_changes() -> None:
    r = roller(seconds=3600)
    r.add("tick", DAY, "s", ["1-0"], 0, now=0.0, acked=True)
    r.add("bar", DAY, "b", ["1-0"], 0, now=0.0, acked=True)
    assert r.due(1.0, DAY) == []
    assert {s.kind for s in r.due(2.0, date(2025, 6, 11))} == {"tick", "bar"}


def test_kinds_and_days_never_share_a_file() -> None:
    r = roller(events=10)
    r.add("tick", DAY, "s", ["1-0"], 0, now=0.0, acked=True)
    r.add("tick", date(2025, 6, 11), "s", ["2-0"], 0, now=0.0, acked=True)
    r.add("level2", DAY, "l", ["3-0"], 0, now=0.0, acked=True)
    parts = sorted(s.partition() for s in r.drain())
    assert parts == [
        "type=level2/date=2025-06-10",
        "type=tick/date=2025-06-10",
        "type=tick/date=2025-06-11",
    ]


def test_a_file_is_named_by_the_entry_id_range_it_holds_and_its_archiver() -> None:
    r = roller(events=3)
    r.add("tick", DAY, "s:tick:B", ["1718000000500-0"], 0, now=0.0, acked=True)
    r.add("tick", DAY, "s:tick:A", ["1718000000100-7"], 0, now=0.0, acked=True)
    r.add("tick", DAY, "s:tick:A", ["1718000000900-2"], 0, now=0.0, acked=True)
    [segment] = r.due(0.0, DAY)
    assert segment.file_name("host:1/x") == "1718000000100-7_1718000000900-2_host-1-x.parquet"


def test_a_failed_file_blocks_reading_and_is_tried_again_after_a_backoff() -> None:
    r = roller(events=1)
    r.add("tick", DAY, "s", ["1-0"], 0, now=0.0, acked=True)
    [segment] = r.due(0.0, DAY)
    wait = r.failed(segment, now=10.0)
    assert 0 < wait <= 0.5
    assert r.blocked and r.held == 1
    assert r.due(10.0, DAY) == []
    assert r.due(10.0 + wait, DAY) == [segment]
    assert not r.blocked
    # a second failure waits longer; a success starts again from the shortest wait
    second = r.failed(segment, now=20.0)
    r.due(20.0 + second, DAY)
    assert r.failed(segment, now=30.0) > 0
    r.written()
    assert r._backoff.attempts == 0


def test_own_rows_are_archived_but_not_acknowledged() -> None:
    r = roller(events=2)
    r.add("gap", DAY, "s", ["5-0"], "record", now=0.0, acked=False)
    r.add("gap", DAY, "s", ["6-0"], "record", now=0.0, acked=False)
    [segment] = r.due(0.0, DAY)
    assert segment.ids == {} and segment.count == 2


def test_a_jump_in_seq_is_a_gap_a_restart_or_another_writer_is_not() -> None:
    entries = [("10-0", 11), ("11-0", 12), ("12-0", 20), ("13-0", 1), ("14-0", 2), ("15-0", None)]
    assert seq_gaps("s", 10, entries) == [Gap("s", 12, 20, 7, "12-0")]
    assert seq_gaps("s", 5, [("1-0", 9)]) == [Gap("s", 5, 9, 3, "1-0")]  # across reads
    assert seq_gaps("s", None, [("1-0", 4000)]) == []  # nothing known before
    assert seq_gaps("s", 50, [("1-0", 3), ("2-0", 4)]) == []  # a standby: another writer
    assert seq_gaps("s", 4, [("1-0", None), ("2-0", 5)]) == []  # unmapped entries passed over


def test_an_event_becomes_a_row_of_its_new_york_day() -> None:
    late = datetime(2025, 6, 10, 23, 30, tzinfo=NY)  # already the 11th in UTC
    tick = TickEvent(symbol="A", seq=1, recv_ns=int(late.timestamp() * 1e9), bid_size=100.0)
    row = to_row(Entry("s:tick:A", "1-0", encode_event(tick)))
    assert isinstance(row, Mapped) and row.kind == "tick" and row.day == DAY


def test_what_no_schema_takes_is_kept_raw_with_the_reason() -> None:
    noon_ms = int(datetime(2025, 6, 10, 12, tzinfo=NY).timestamp() * 1000)
    cases = {
        b"not json": "JSON",
        b'{"type": "quote", "seq": 1}': "type",
        b'{"type": "tick", "bid": "cheap"}': "bid",
        encode_event(TickEvent(symbol="A", volume=1.5)): "volume",
        b"": "",
    }
    for data, word in cases.items():
        row = to_row(Entry("s:tick:A", f"{noon_ms}-0", data))
        assert isinstance(row, Unmapped), data
        assert row.data == data and word in row.error and row.day == DAY


def test_columns_are_typed() -> None:
    tick = TickEvent(
        service="LEVELONE_EQUITIES",
        symbol="AAPL",
        seq=3,
        schwab_ts=1_718_000_000_123,
        recv_ns=1_718_000_000_123_456_789,
        bid=1.25,
        bid_size=300.0,
        volume=69_783_235.0,
        changed=["bid", "delta"],
        fields={"delta": 0.5, "description": "x"},
    )
    t = _table("tick", tick)
    types = dict(zip(t.schema.names, t.schema.types, strict=True))
    assert types["bid"] == pa.float64() and types["bid_size"] == pa.int64()
    assert types["volume"] == pa.int64() and types["changed"] == pa.list_(pa.string())
    assert types["schwab_ts"] == pa.timestamp("ms", tz="UTC")
    assert types["recv_ns"] == pa.timestamp("ns", tz="UTC")
    row = t.cast(_ints(t.schema)).to_pylist()[0]
    assert row["schwab_ts"] == 1_718_000_000_123 and row["recv_ns"] == 1_718_000_000_123_456_789
    assert row["volume"] == 69_783_235 and row["fields"] == '{"delta":0.5,"description":"x"}'
    book = Level2Event(
        symbol="MSFT",
        venue="NASDAQ",
        bids=[Level(181.77, 100, 1, [Maker("edgx", 100, 63150257)])],
    )
    screener = ScreenerEvent(symbol="NYSE_VOLUME_5", items=[ScreenerItem(symbol="XLF", volume=5.0)])
    status = StatusEvent(state="gap", info={"seconds": 2.5})
    maker = {"id": "edgx", "size": 100, "time_ms": 63150257}
    assert _table("level2", book).to_pylist()[0]["bids"] == [
        {"price": 181.77, "size": 100, "count": 1, "makers": [maker]}
    ]
    assert _table("screener", screener).to_pylist()[0]["items"][0]["volume"] == 5
    assert _table("status", status).to_pylist()[0]["info"] == '{"seconds":2.5}'


def _table(kind: str, event: Event) -> pa.Table:
    """`event`'s row, as the archive makes it from its stream entry."""
    [part] = intake("k", [Entry("k", "1-0", encode_event(event))]).parts
    assert part.kind == kind
    return table(kind, [part.batch])


def _ints(schema: pa.Schema) -> pa.Schema:
    return pa.schema(
        [(f.name, pa.int64() if pa.types.is_timestamp(f.type) else f.type) for f in schema]
    )


def test_the_bridge_never_loads_pyarrow() -> None:
    code = (
        "import sys, schwab_stream.pipeline, schwab_stream.cli.run, schwab_stream.cli.archive\n"
        "print(any(m == 'pyarrow' or m.startswith('pyarrow.') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_rules_import_no_io_library() -> None:
    code = (
        "import sys, schwab_stream.archive.roll, schwab_stream.archive.gaps,"
        " schwab_stream.archive.rows\n"
        "print(sorted(m for m in ('pyarrow', 'redis', 'asyncio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_every_archive_metric_is_documented() -> None:
    from pathlib import Path

    from schwab_stream.archive.metrics import ArchiveMetrics

    operations = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    names = {
        m.name + ("_total" if m.type == "counter" else "")
        for m in ArchiveMetrics().registry.collect()
    }
    assert names and all(f"`{name}`" in operations for name in names), names
