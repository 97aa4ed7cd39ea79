"""Entries trimmed by MAXLEN before the archive read them, found from `seq` (sans-I/O).

`seq` grows by one per event of a stream within one bridge process. The group's reader hands,
per stream, the `seq` of the last entry delivered to any archiver of the group before this read
(`prev`), so the check holds across several archivers: a jump above `prev + 1` is that many
entries gone. A `seq` of 1, or one not above `prev`, is a new writer (a restarted bridge, a
standby that took over): not a gap. The status stream has several writers at once and is not
checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple


class Gap(NamedTuple):
    """`missing` entries of `stream` between `after_seq` and the entry `entry_id` (its `seq`)."""

    stream: str
    after_seq: int
    seq: int
    missing: int
    entry_id: str


def seq_gaps(stream: str, prev: int | None, entries: Iterable[tuple[str, int | None]]) -> list[Gap]:
    """The gaps among one stream's newly delivered entries, (entry id, seq) in stream order; an
    entry without a `seq` (unmapped) is passed over."""
    gaps: list[Gap] = []
    last = prev
    for entry_id, seq in entries:
        if seq is None:
            continue
        if last is not None and seq > last + 1:
            gaps.append(Gap(stream, last, seq, seq - last - 1, entry_id))
        last = seq
    return gaps


def steady(prev: int | None, seqs: list[int | None]) -> bool:
    """True when `seqs` can hold no gap: each one above the one before, the first not past
    `prev + 1` (the usual delivery, checked with one list comparison instead of a loop)."""
    if not seqs or seqs[0] is None:
        return not seqs
    first = seqs[0]
    return (prev is None or first <= prev + 1) and seqs == list(range(first, first + len(seqs)))
