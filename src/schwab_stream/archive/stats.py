"""`archive --stats`: what an archive folder holds per day and type, from the files' footers and
their `symbol` (or `stream`) column; nothing else is read."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq


@dataclass
class DayStats:
    day: str
    kind: str
    files: int = 0
    rows: int = 0
    bytes: int = 0
    symbols: set[str] = field(default_factory=set)
    #: recv_ns (or detected_ns) range, epoch ns
    first_ns: int | None = None
    last_ns: int | None = None


def archive_stats(root: Path) -> list[DayStats]:
    """One `DayStats` per (day, type) folder, in date then type order."""
    out: list[DayStats] = []
    for folder in sorted(root.glob("type=*/date=*")):
        kind = folder.parent.name.removeprefix("type=")
        stats = DayStats(folder.name.removeprefix("date="), kind)
        for path in sorted(folder.glob("*.parquet")):
            meta = pq.read_metadata(path)
            stats.files += 1
            stats.rows += meta.num_rows
            stats.bytes += path.stat().st_size
            names = set(meta.schema.names)
            who = "symbol" if "symbol" in names else "stream"
            when = next((n for n in ("recv_ns", "detected_ns") if n in names), None)
            table = pq.read_table(path, columns=[who, *([when] if when else [])])
            stats.symbols.update(str(s) for s in pc.unique(table[who]).to_pylist())
            if when and table.num_rows:
                low, high = pc.min_max(table[when].cast("int64")).values()
                stats.first_ns = _min(stats.first_ns, low.as_py())
                stats.last_ns = _max(stats.last_ns, high.as_py())
        out.append(stats)
    out.sort(key=lambda s: (s.day, s.kind))
    return out


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def format_stats(rows: list[DayStats]) -> str:
    """A plain table, one line per day and type, then the totals."""
    head = ("date", "type", "files", "rows", "symbols", "from (UTC)", "to (UTC)", "size")
    lines = [head]
    for s in rows:
        lines.append(
            (
                s.day,
                s.kind,
                str(s.files),
                f"{s.rows:,}",
                str(len(s.symbols)),
                _time(s.first_ns),
                _time(s.last_ns),
                _size(s.bytes),
            )
        )
    total_rows = sum(s.rows for s in rows)
    total_bytes = sum(s.bytes for s in rows)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    text = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    text.append(
        f"total: {sum(s.files for s in rows)} files, {total_rows:,} rows, {_size(total_bytes)}"
    )
    return "\n".join(text)


def _time(ns: int | None) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M:%S")


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    size = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"
