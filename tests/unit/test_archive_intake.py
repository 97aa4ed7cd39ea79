"""A delivery's entries as column batches (archive/intake.py): the one-pass path gives every
entry's values as its JSON has them, a bad entry among good ones is kept raw with its reason while
the others stay what they are, and nothing an entry holds stops the archiver."""

from __future__ import annotations

import json
import random
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pyarrow as pa

from schwab_stream.archive.gaps import seq_gaps, steady
from schwab_stream.archive.intake import Intake, intake
from schwab_stream.archive.rows import Entry, Unmapped, to_row
from schwab_stream.archive.tables import COLUMNS, JSON, table
from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    StatusEvent,
    TickEvent,
    decode_event,
    encode_event,
)

NY = ZoneInfo("America/New_York")
NOON_NS = int(datetime(2025, 6, 10, 12, tzinfo=NY).timestamp() * 1e9)
NOON_MS = NOON_NS // 1_000_000


def ticks(n: int, seed: int = 3) -> list[TickEvent]:
    """Ticks with the shapes live ones have: fields missing (None), sizes of every size, a
    `fields` of any JSON, `changed` lists, some snapshots."""
    rng = random.Random(seed)

    def maybe(value: Any) -> Any:
        return value if rng.random() < 0.8 else None

    return [
        TickEvent(
            service="LEVELONE_EQUITIES",
            symbol="AAPL",
            seq=i + 1,
            schwab_ts=maybe(NOON_MS + i),
            recv_ns=NOON_NS + i * 1_000_001,
            bid=maybe(round(rng.uniform(1, 500), 2)),
            last=maybe(rng.uniform(1, 500)),
            bid_size=maybe(float(rng.randrange(0, 10**6))),
            volume=maybe(float(rng.randrange(0, 2**53))),
            quote_time=maybe(NOON_MS),
            delayed=maybe(rng.random() < 0.5),
            snapshot=i == 0,
            changed=rng.sample(["bid", "ask", "last", "volume", "delta"], rng.randrange(0, 4)),
            fields=rng.choice(
                [{}, {"delta": -0.25, "description": "Apple Inc – é"}, {"a": [1, {"b": None}]}]
            ),
        )
        for i in range(n)
    ]


def entries(events: list[Any], stream: str = "s:tick:AAPL") -> list[Entry]:
    return [Entry(stream, f"{NOON_MS + i}-{i % 3}", encode_event(e)) for i, e in enumerate(events)]


def rows_of(taken: Intake, kind: str) -> list[dict[str, Any]]:
    """Rows of the parts of `kind`, timestamps as integers, JSON text decoded."""
    out: list[dict[str, Any]] = []
    for part in taken.parts:
        if part.kind != kind:
            continue
        t = table(kind, [part.batch])
        ints = pa.schema(
            [(f.name, pa.int64() if pa.types.is_timestamp(f.type) else f.type) for f in t.schema]
        )
        out.extend(t.cast(ints).to_pylist())
    for row in out:
        for name, _, how in COLUMNS.get(kind, []):
            if how == JSON:
                row[name] = json.loads(row[name])
    return out


def as_json(entry: Entry) -> dict[str, Any]:
    """What the entry's row must hold: its event's values, defaults included."""
    values: dict[str, Any] = msgspec.to_builtins(decode_event(entry.data))
    values.pop("type")
    return {"stream": entry.stream, "entry_id": entry.entry_id, **values}


def test_a_delivery_in_one_pass_holds_every_value_of_its_json() -> None:
    delivered = entries(ticks(500))
    taken = intake("s:tick:AAPL", delivered)
    assert len(taken.parts) == 1 and taken.unmapped == []
    assert rows_of(taken, "tick") == [as_json(e) for e in delivered]
    assert taken.seqs == list(range(1, 501))
    delivered = entries([BarEvent(symbol="A", seq=1, recv_ns=NOON_NS, volume=5.0)], "s:bar:A")
    assert rows_of(intake("s:bar:A", delivered), "bar") == [as_json(delivered[0])]
    for event, kind in (
        (AccountEvent(seq=1, recv_ns=NOON_NS, data=[1, "x"]), "account"),
        (StatusEvent(seq=1, recv_ns=NOON_NS, info={"k": [None]}), "status"),
    ):
        delivered = entries([event], f"s:{kind}")
        assert rows_of(intake(f"s:{kind}", delivered), kind) == [as_json(delivered[0])]


def test_the_free_form_parts_are_the_entry_s_own_json_text() -> None:
    data = b'{"type":"tick","seq":1,"recv_ns":%d,"fields":{"b": 1.50, "a": "\\u00e9"}}' % NOON_NS
    [part] = intake("s", [Entry("s", "1-0", data)]).parts
    assert part.batch.column("fields").to_pylist() == ['{"b": 1.50, "a": "\\u00e9"}']


BAD = {
    "not json": b"{",
    "not UTF-8": b'{"type":"tick","symbol":"\xff"}',
    "fields not UTF-8": b'{"type":"tick","fields":{"a":"\xff"}}',
    "fields not an object": b'{"type":"tick","fields":[1]}',
    "info null": b'{"type":"status","info":null}',
    "fractional size": b'{"type":"tick","bid_size":1.5}',
    "size of 2**63": b'{"type":"tick","volume":9223372036854775808.0}',
    "size of -2**63": b'{"type":"tick","volume":-9223372036854775808.0}',
    "bar volume": b'{"type":"bar","volume":0.5}',
    "seq past int64": b'{"type":"tick","seq":%d}' % 2**70,
    "recv_ns past any date": b'{"type":"tick","recv_ns":%d}' % 2**80,
}


def test_a_bad_entry_among_good_ones_is_kept_raw_and_the_others_are_unchanged() -> None:
    good = entries(ticks(20))
    expected = rows_of(intake("s:tick:AAPL", good), "tick")
    for case, data in BAD.items():
        bad = Entry("s:tick:AAPL", f"{NOON_MS + 10}-1", data)
        delivered = [*good[:10], bad, *good[10:]]
        taken = intake("s:tick:AAPL", delivered)
        assert rows_of(taken, "tick") == expected, case
        [(entry_id, row)] = taken.unmapped
        assert entry_id == bad.entry_id and row.data == data, case
        old = to_row(bad)
        if isinstance(old, Unmapped):  # the rule entry by entry gives the same reason
            assert row.error == old.error, case
        assert [r["data"] for r in rows_of(taken, "unmapped")] == [data], case
        assert taken.seqs[10] is None or case == "seq past int64", case
        assert table("unmapped", [p.batch for p in taken.parts if p.kind == "unmapped"])


def test_a_delivery_across_new_york_midnight_makes_a_part_per_day() -> None:
    midnight = int(datetime(2025, 6, 11, tzinfo=NY).timestamp() * 1e9)
    events = [
        TickEvent(symbol="A", seq=i + 1, recv_ns=midnight + (i - 2) * 10**9) for i in range(5)
    ]
    taken = intake("s", entries(events))
    assert [(p.day.isoformat(), len(p.entry_ids)) for p in taken.parts] == [
        ("2025-06-10", 2),
        ("2025-06-11", 3),
    ]
    assert taken.unmapped == []


def test_steady_seqs_skip_the_gap_check_and_only_they_do() -> None:
    cases: list[tuple[int | None, list[int | None]]] = [
        (None, [5, 6, 7]),
        (4, [5, 6, 7]),
        (9, [5, 6, 7]),  # a new writer: no gap
        (3, [5, 6]),
        (None, [5, 7]),
        (4, [5, None, 6]),
        (4, []),
        (None, [None]),
    ]
    for prev, seqs in cases:
        gaps = seq_gaps("s", prev, [(f"{i}-0", s) for i, s in enumerate(seqs)])
        assert not (steady(prev, seqs) and gaps), (prev, seqs)
    assert steady(None, [5, 6, 7]) and steady(4, [5, 6, 7]) and steady(4, [])
    assert not steady(3, [5, 6]) and not steady(None, [5, 7])
