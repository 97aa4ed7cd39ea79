"""The Parquet schema of each kind and a segment's rows as an Arrow table.

Typed columns: prices float64, sizes and volumes int64, Schwab's times and `recv_ns` as UTC
timestamps, `changed` a list of strings, books and screener items as nested lists of structs;
what has no fixed shape (a tick's `fields`, a status event's `info`, an account event's `data`)
is kept as its JSON text. Every row also has `stream` and `entry_id`, the Redis entry it came from.
"""

from __future__ import annotations

import array
import operator
from collections.abc import Callable, Sequence
from itertools import accumulate
from typing import Any

import msgspec
import pyarrow as pa
import pyarrow.compute as pc

from schwab_stream.archive.gaps import Gap
from schwab_stream.archive.rows import GAP_KIND, INT64_LIMIT, UNMAPPED_KIND, Unmapped

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

# How a column's values come out of the rows: an attribute as it is, the entry's JSON text of it
# (rows.py keeps it as msgspec.Raw), or plain lists and dicts (nested columns).
# A whole column holds int64s that come as floats (sizes, volumes): whole numbers in range, or
# the batch is Unstorable (pa.array alone would truncate 1.5 to 1).
PLAIN, JSON, NESTED, WHOLE = "plain", "json", "nested", "whole"
#: The JSON columns that must hold an object (the contract's dict fields)
OBJECTS = frozenset({"fields", "info"})

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
        *((name, I64, WHOLE) for name in ("bid_size", "ask_size", "last_size", "volume")),
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
        ("volume", I64, WHOLE),
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


class Unstorable(Exception):
    """A value its column cannot hold: an int past int64, text that is not UTF-8, a `fields` or
    `info` that is not a JSON object."""


def batch(kind: str, stream: str, entry_ids: list[str], rows: Sequence[Any]) -> pa.RecordBatch:
    """One stream's rows of `kind` (rows.py's row types) as a batch of `kind`'s schema; raises
    Unstorable when any value does not fit its column."""
    spec = COLUMNS[kind]
    get = _GETTERS[kind]
    # One C call per row for all its attributes, then the columns by transposition.
    columns = zip(*map(get, rows), strict=True) if rows else [() for _ in spec]
    try:
        arrays = [pa.repeat(pa.scalar(stream, STR), len(rows)), pa.array(entry_ids, STR)]
        for (name, type_, how), values in zip(spec, columns, strict=True):
            arrays.append(_CONVERT[how](values, type_, name))
        return pa.RecordBatch.from_arrays(arrays, schema=schema(kind))
    except (pa.ArrowException, OverflowError, TypeError, ValueError) as exc:
        raise Unstorable(str(exc)) from None


def unmapped_batch(stream: str, entry_ids: list[str], rows: Sequence[Unmapped]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [
            pa.repeat(pa.scalar(stream, STR), len(rows)),
            pa.array(entry_ids, STR),
            pa.array([u.data for u in rows], pa.binary()),
            pa.array([u.error for u in rows], STR),
        ],
        schema=schema(UNMAPPED_KIND),
    )


def gap_batch(gap: Gap, found_ns: int) -> pa.RecordBatch:
    """The record of one gap, found at `found_ns` (epoch ns)."""
    values = [[gap.stream], [gap.entry_id], [gap.after_seq], [gap.seq], [gap.missing], [found_ns]]
    target = schema(GAP_KIND)
    arrays = [pa.array(v, f.type) for v, f in zip(values, target, strict=True)]
    return pa.RecordBatch.from_arrays(arrays, schema=target)


def table(kind: str, parts: Sequence[pa.RecordBatch]) -> pa.Table:
    """A segment's batches as one table of `kind`'s schema (one chunk per column)."""
    return pa.Table.from_batches(parts, schema=schema(kind)).combine_chunks()


def _plain(values: Sequence[Any], type_: pa.DataType, _: str) -> pa.Array:
    return pa.array(values, type_)


def _json(values: Sequence[Any], type_: pa.DataType, name: str) -> pa.Array:
    """Raw JSON texts as a string column, without a Python object per value: the texts joined,
    their offsets from their lengths; checked to be UTF-8 (and objects, for `fields`/`info`)."""
    ends = accumulate(map(len, values), initial=0)
    offsets = pa.py_buffer(array.array("i", ends))
    column = pa.StringArray.from_buffers(len(values), offsets, pa.py_buffer(b"".join(values)))
    column.validate(full=True)
    if name in OBJECTS and len(column) and not pc.all(pc.starts_with(column, "{")).as_py():
        raise Unstorable(f"`{name}` is not a JSON object")
    return column


def _whole(values: Sequence[Any], type_: pa.DataType, name: str) -> pa.Array:
    """Floats as int64: the cast is safe (a fraction or a value past int64 raises); int64's
    lowest value is refused too, as rows.py's rule does."""
    floats = pa.array(values, F64)
    low = pc.min(floats).as_py()
    if low is not None and low <= -INT64_LIMIT:
        raise Unstorable(f"{name} {low!r} is not a whole number an int64 column holds")
    return floats.cast(type_, safe=True)


def _nested(values: Sequence[Any], type_: pa.DataType, _: str) -> pa.Array:
    return pa.array(msgspec.to_builtins(list(values)), type_)


_CONVERT: dict[str, Callable[[Sequence[Any], pa.DataType, str], pa.Array]] = {
    PLAIN: _plain,
    JSON: _json,
    NESTED: _nested,
    WHOLE: _whole,
}
_GETTERS = {
    kind: operator.attrgetter(*(name for name, _, _ in spec)) for kind, spec in COLUMNS.items()
}
