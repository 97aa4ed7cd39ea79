"""The Parquet schema of each kind and a segment's rows as an Arrow table.

Typed columns: prices float64, sizes and volumes int64, Schwab's times and `recv_ns` as UTC
timestamps, `changed` a list of strings, books and screener items as nested lists of structs;
what has no fixed shape (a tick's `fields`, a status event's `info`, an account event's `data`)
is kept as its JSON text. Every row also has `stream` and `entry_id`, the Redis entry it came from.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
import pyarrow as pa

from schwab_stream.archive.gaps import Gap
from schwab_stream.archive.rows import GAP_KIND, UNMAPPED_KIND, Unmapped

_json = msgspec.json.Encoder()

F64 = pa.float64()
I64 = pa.int64()
STR = pa.string()
MS = pa.timestamp("ms", tz="UTC")
NS = pa.timestamp("ns", tz="UTC")

MAKER = pa.struct([("id", STR), ("size", I64), ("time_ms", I64)])
LEVEL = pa.struct([("price", F64), ("size", I64), ("count", I64), ("makers", pa.list_(MAKER))])
ITEM = pa.struct(
    [
        ("symbol", STR),
        ("description", STR),
        ("last_price", F64),
        ("net_change", F64),
        ("net_percent_change", F64),
        ("market_share", F64),
        ("total_volume", I64),
        ("volume", I64),
        ("trades", I64),
    ]
)

# How a column's values come out of the events: an attribute as it is, as JSON text, or as
# plain lists and dicts (nested columns).
PLAIN, JSON, NESTED = "plain", "json", "nested"

_COMMON = [
    ("v", pa.int16(), PLAIN),
    ("service", STR, PLAIN),
    ("symbol", STR, PLAIN),
    ("seq", I64, PLAIN),
    ("schwab_ts", MS, PLAIN),
    ("recv_ns", NS, PLAIN),
]

#: kind -> (column, Arrow type, how) after `stream`, `entry_id` and the common columns
COLUMNS: dict[str, list[tuple[str, pa.DataType, str]]] = {
    "tick": [
        *_COMMON,
        *((name, F64, PLAIN) for name in ("bid", "ask", "last")),
        *((name, I64, PLAIN) for name in ("bid_size", "ask_size", "last_size", "volume")),
        *((name, F64, PLAIN) for name in ("open", "high", "low", "close", "mark", "net_change")),
        ("quote_time", MS, PLAIN),
        ("trade_time", MS, PLAIN),
        ("delayed", pa.bool_(), PLAIN),
        ("snapshot", pa.bool_(), PLAIN),
        ("changed", pa.list_(STR), PLAIN),
        ("fields", STR, JSON),
    ],
    "level2": [
        *_COMMON,
        ("venue", STR, PLAIN),
        ("book_time", MS, PLAIN),
        ("bids", pa.list_(LEVEL), NESTED),
        ("asks", pa.list_(LEVEL), NESTED),
    ],
    "bar": [
        *_COMMON,
        ("start", MS, PLAIN),
        *((name, F64, PLAIN) for name in ("open", "high", "low", "close")),
        ("volume", I64, PLAIN),
        ("sequence", I64, PLAIN),
        ("backfilled", pa.bool_(), PLAIN),
    ],
    "screener": [
        *_COMMON,
        ("screener_ts", MS, PLAIN),
        ("sort_field", STR, PLAIN),
        ("frequency", I64, PLAIN),
        ("items", pa.list_(ITEM), NESTED),
    ],
    "account": [
        *_COMMON,
        ("account", STR, PLAIN),
        ("message_type", STR, PLAIN),
        ("data", STR, JSON),
        ("item_seq", I64, PLAIN),
    ],
    "status": [
        *_COMMON,
        ("state", STR, PLAIN),
        ("detail", STR, PLAIN),
        ("code", I64, PLAIN),
        ("info", STR, JSON),
    ],
}

#: The archive's own records: entries trimmed before it read them, and entries kept raw.
GAP_COLUMNS = [
    ("after_seq", I64),
    ("seq", I64),
    ("missing", I64),
    ("detected_ns", NS),
]
UNMAPPED_COLUMNS = [("data", pa.binary()), ("error", STR)]


def schema(kind: str) -> pa.Schema:
    head = [("stream", STR), ("entry_id", STR)]
    if kind == GAP_KIND:
        return pa.schema([*head, *GAP_COLUMNS])
    if kind == UNMAPPED_KIND:
        return pa.schema([*head, *UNMAPPED_COLUMNS])
    return pa.schema([*head, *((name, kind_) for name, kind_, _ in COLUMNS[kind])])


def table(kind: str, rows: Sequence[tuple[str, str, Any]]) -> pa.Table:
    """A segment's rows (stream, entry id, row) as a table of `kind`'s schema; a gap's row is
    (Gap, when it was found in epoch ns)."""
    target = schema(kind)
    arrays: list[pa.Array] = [
        pa.array([r[0] for r in rows], STR),
        pa.array([r[1] for r in rows], STR),
    ]
    items = [r[2] for r in rows]
    if kind == GAP_KIND:
        gaps: list[tuple[Gap, int]] = items
        arrays += [
            pa.array([g.after_seq for g, _ in gaps], I64),
            pa.array([g.seq for g, _ in gaps], I64),
            pa.array([g.missing for g, _ in gaps], I64),
            pa.array([ns for _, ns in gaps], NS),
        ]
    elif kind == UNMAPPED_KIND:
        unmapped: list[Unmapped] = items
        arrays += [
            pa.array([u.data for u in unmapped], pa.binary()),
            pa.array([u.error for u in unmapped], STR),
        ]
    else:
        spec = COLUMNS[kind]
        # One C call per event for all its attributes, then the columns by transposition.
        get = operator.attrgetter(*(name for name, _, _ in spec))
        columns = zip(*map(get, items), strict=True) if items else [[] for _ in spec]
        for (_, type_, how), values in zip(spec, columns, strict=True):
            arrays.append(pa.array(_CONVERT[how](list(values)), type_))
    return pa.Table.from_arrays(arrays, schema=target)


def _as_json(values: list[Any]) -> list[str]:
    return [_json.encode(v).decode() for v in values]


_CONVERT: dict[str, Callable[[list[Any]], list[Any]]] = {
    PLAIN: lambda values: values,
    JSON: _as_json,
    NESTED: msgspec.to_builtins,
}
