"""Which entries go into which file, when a file is finished, and what its name is (sans-I/O).

Entries collect in one open segment per (kind, New York day). A segment is due when it holds
`roll_events` entries, when it has been open `roll_seconds`, or when New York's day has moved
past its own. A due segment is handed out once; a segment whose file could not be made (a full
disk) is handed back with `failed` and is due again after a backoff, and while any is waiting
the runner reads nothing new (`blocked`): what is not durable stays pending in Redis. Clocks come
in: `now` is monotonic seconds, `today` New York's date.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from schwab_stream.archive.rows import id_order
from schwab_stream.backoff import Backoff

#: Most seconds between two tries to write a segment that failed (a full disk).
RETRY_MAX_SECONDS = 10.0


@dataclass
class Segment:
    """The entries of one future file: their parts (column batches, opaque here) in arrival
    order, how many rows they hold, the entry ids to acknowledge, and the id range."""

    kind: str
    day: date
    opened: float
    #: One part per run of one stream's entries, in the order they came
    parts: list[Any] = field(default_factory=list)
    count: int = 0
    #: Entries to acknowledge once the file is durable, per stream
    ids: dict[str, list[str]] = field(default_factory=dict)
    #: The lowest and highest entry id held, as (ms, n)
    first: tuple[int, int] | None = None
    last: tuple[int, int] | None = None
    #: Failed tries to make its file (0: never failed)
    failures: int = 0
    retry_at: float = 0.0

    def add(self, stream: str, entry_ids: list[str], part: Any, acked: bool = True) -> None:
        """`part` holds the rows of `entry_ids`, one stream's, in stream order (ids ascending):
        its first and last id bound the part."""
        self.parts.append(part)
        self.count += len(entry_ids)
        if acked:
            self.ids.setdefault(stream, []).extend(entry_ids)
        low, high = id_order(entry_ids[0]), id_order(entry_ids[-1])
        self.first = low if self.first is None else min(self.first, low)
        self.last = high if self.last is None else max(self.last, high)

    def partition(self) -> str:
        """The folder under the archive's root: `type=KIND/date=YYYY-MM-DD`."""
        return f"type={self.kind}/date={self.day.isoformat()}"

    def file_name(self, consumer: str) -> str:
        """Named by the entry-id range it holds and the archiver that wrote it (two archivers of a
        group hold different entries of the same range): unique, and sorted in time order."""
        first, last = self.first or (0, 0), self.last or (0, 0)
        return f"{first[0]}-{first[1]}_{last[0]}-{last[1]}_{_safe(consumer)}.parquet"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-." else "-" for c in text)


class Roller:
    """The open segments and the rules that finish them."""

    def __init__(self, roll_seconds: float, roll_events: int) -> None:
        self.roll_seconds = roll_seconds
        self.roll_events = roll_events
        self.open: dict[tuple[str, date], Segment] = {}
        #: Handed out, failed, waiting for their next try
        self.retrying: list[Segment] = []
        self._backoff = Backoff(base=0.5, cap=RETRY_MAX_SECONDS)

    def add(
        self,
        kind: str,
        day: date,
        stream: str,
        entry_ids: list[str],
        part: Any,
        now: float,
        acked: bool = True,
    ) -> None:
        """Put a part (the rows of `entry_ids`, see Segment.add) in its segment; `acked` False
        for the archive's own rows (a gap record)."""
        segment = self.open.get((kind, day))
        if segment is None:
            segment = self.open[(kind, day)] = Segment(kind, day, now)
        segment.add(stream, entry_ids, part, acked)

    def due(self, now: float, today: date) -> list[Segment]:
        """Segments to make files of now; each is handed out once (until `failed`)."""
        out = [s for s in self.retrying if s.retry_at <= now]
        self.retrying = [s for s in self.retrying if s.retry_at > now]
        for key, segment in list(self.open.items()):
            if (
                segment.count >= self.roll_events
                or now - segment.opened >= self.roll_seconds
                or segment.day < today
            ):
                out.append(self.open.pop(key))
        return out

    def drain(self) -> list[Segment]:
        """Every segment, open or waiting: at stop."""
        out = [*self.retrying, *self.open.values()]
        self.retrying = []
        self.open = {}
        return out

    def put_back(self, segments: list[Segment], now: float) -> None:
        """Segments handed out but not tried (Redis failed first): due again at once."""
        for segment in segments:
            segment.retry_at = now
            self.retrying.append(segment)

    def failed(self, segment: Segment, now: float) -> float:
        """Its file could not be made: try again later. Returns the wait."""
        delay = self._backoff.next()
        segment.failures += 1
        segment.retry_at = now + delay
        self.retrying.append(segment)
        return delay

    def written(self) -> None:
        """A file was made: the next failure waits the shortest time again."""
        self._backoff.reset()

    @property
    def blocked(self) -> bool:
        """A file could not be made: read nothing more until it is."""
        return bool(self.retrying)

    @property
    def held(self) -> int:
        """Rows waiting in segments, not yet in a durable file."""
        return sum(s.count for s in (*self.open.values(), *self.retrying))

    def next_due(self, now: float) -> float | None:
        """Seconds until a segment is due by time (None: nothing open)."""
        times = [s.opened + self.roll_seconds for s in self.open.values()]
        times += [s.retry_at for s in self.retrying]
        return max(0.0, min(times) - now) if times else None
