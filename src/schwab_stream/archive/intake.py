"""One stream's delivered entries as column batches per (kind, New York day).

The whole delivery in one pass when it can be (rows.run_of, then tables.batch); when any entry
needs a look of its own (it does not decode, is of another kind or day, holds a fractional
size, a value its column cannot hold), entry by entry with `rows.to_row`, so a bad entry becomes
an `unmapped` row with its reason and every other entry is the row it is anyway.
"""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple

import pyarrow as pa

from schwab_stream.archive import tables
from schwab_stream.archive.rows import (
    UNMAPPED_KIND,
    Entry,
    Unmapped,
    as_row,
    id_order,
    kept_raw,
    run_of,
    to_row,
)


class Part(NamedTuple):
    """The rows of `entry_ids` (one stream's, in stream order) as one batch of `kind`."""

    kind: str
    day: date
    entry_ids: list[str]
    batch: pa.RecordBatch


class Intake(NamedTuple):
    parts: list[Part]
    #: The entries kept raw, (entry id, row), in stream order (their part is among `parts`)
    unmapped: list[tuple[str, Unmapped]]
    #: `seq` of each entry in stream order, None for one kept raw (gaps.py)
    seqs: list[int | None]


def intake(stream: str, entries: list[Entry]) -> Intake:
    """`entries` (one stream's, in stream order) as parts to put in segments."""
    run = run_of(entries)
    if run is not None:
        try:
            batch = tables.batch(run.kind, stream, run.entry_ids, run.rows)
        except tables.Unstorable:
            pass
        else:
            seqs: list[int | None] = [row.seq for row in run.rows]
            return Intake([Part(run.kind, run.day, run.entry_ids, batch)], [], seqs)
    return _one_by_one(stream, entries)


def _one_by_one(stream: str, entries: list[Entry]) -> Intake:
    runs: dict[tuple[str, date], list[tuple[Entry, Any]]] = {}
    unmapped: list[tuple[Entry, Unmapped]] = []
    seqs: list[int | None] = []
    for entry in entries:
        row = to_row(entry)
        if isinstance(row, Unmapped):
            unmapped.append((entry, row))
            seqs.append(None)
        else:
            runs.setdefault((row.kind, row.day), []).append((entry, as_row(entry.data)))
            seqs.append(row.event.seq)
    parts: list[Part] = []
    for (kind, day), pairs in runs.items():
        try:
            parts.append(_part(kind, day, stream, pairs))
        except tables.Unstorable:
            # a value its column cannot hold (an int past int64): found row by row
            for pair in pairs:
                try:
                    parts.append(_part(kind, day, stream, [pair]))
                except tables.Unstorable as exc:
                    unmapped.append((pair[0], kept_raw(pair[0], str(exc))))
    unmapped.sort(key=lambda pair: id_order(pair[0].entry_id))
    by_day: dict[date, list[tuple[Entry, Unmapped]]] = {}
    for entry, row in unmapped:
        by_day.setdefault(row.day, []).append((entry, row))
    for day, kept in by_day.items():
        ids = [entry.entry_id for entry, _ in kept]
        batch = tables.unmapped_batch(stream, ids, [row for _, row in kept])
        parts.append(Part(UNMAPPED_KIND, day, ids, batch))
    return Intake(parts, [(entry.entry_id, row) for entry, row in unmapped], seqs)


def _part(kind: str, day: date, stream: str, pairs: list[tuple[Entry, Any]]) -> Part:
    ids = [entry.entry_id for entry, _ in pairs]
    return Part(kind, day, ids, tables.batch(kind, stream, ids, [row for _, row in pairs]))
