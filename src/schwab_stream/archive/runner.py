"""`Archiver`: drives the group reader, the rules and the files, and decides nothing itself.

One loop: stay alive in the group, look for new streams, take over the work of archivers found
dead, finish the segments that are due (roll.py), then read; the read runs on a reader thread
while the loop takes the entries of the read before (nothing else runs on it). While a file cannot
be made (a full disk) it reads nothing and acknowledges nothing, so what is not durable stays
pending in Redis; while Redis is away it keeps what it holds and tries again with backoff.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import redis
from redis.exceptions import RedisError

from schwab_stream.archive import files, tables
from schwab_stream.archive.connect import redis_parts
from schwab_stream.archive.errors import ArchiveIncomplete, ArchiveTakenOver
from schwab_stream.archive.gaps import seq_gaps, steady
from schwab_stream.archive.intake import intake
from schwab_stream.archive.metrics import ArchiveMetrics
from schwab_stream.archive.roll import Roller, Segment
from schwab_stream.archive.rows import GAP_KIND, Entry, ny_day
from schwab_stream.archive.source import Delivery
from schwab_stream.backoff import Backoff
from schwab_stream.redis_topology import Kind

log = logging.getLogger("schwab_stream.archive")

#: Seconds between two looks for new streams.
DISCOVER_SECONDS = 3.0
#: Entries read per stream per call.
READ_COUNT = 2000
#: Longest wait for new entries, in ms (also how late a stop or a roll can be).
BLOCK_MS = 500
#: How long a stop may keep trying to finish its files while Redis is away.
STOP_GRACE_SECONDS = 30.0


@dataclass
class ArchiveConfig:
    root: Path
    prefix: str
    group: str
    consumer: str
    roll_seconds: float
    roll_events: int
    dead_seconds: float


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off while a read is parsed and turned into columns:
    its entries, rows and lists hold no cycles and are freed together by their counts, but
    hundreds of thousands of them alive at once made the collector run over and over
    (docs/performance.md, "Archive (#19)")."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Archiver:
    def __init__(
        self,
        client: redis.Redis,
        config: ArchiveConfig,
        metrics: ArchiveMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall_ns: Callable[[], int] = time.time_ns,
        kind: Kind = Kind.STANDALONE,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.wall_ns = wall_ns
        self.source, self.claims = redis_parts(
            client,
            kind,
            config.prefix,
            config.group,
            config.consumer,
            config.root,
            config.dead_seconds,
        )
        self.roller = Roller(config.roll_seconds, config.roll_events)
        #: Files in place whose entries are not acknowledged yet (Redis was away)
        self.unacked: list[tuple[dict[str, list[str]], str]] = []
        self._status = self.source.keys.status
        self._redis_backoff = Backoff(base=0.2, cap=5.0)
        self._redis_down_since: float | None = None
        self._disk_error: str | None = None
        self._next = {"heartbeat": 0.0, "discover": 0.0, "takeover": 0.0}
        #: Read, not taken yet (the next step takes them while it reads again)
        self._delivered: list[Delivery] = []
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="archive-read")

    # --- the loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Archive until `stop` is set, then finish every file and acknowledge it."""
        files.check_folder(self.config.root)
        self.claims.register()
        log.info(
            "archiving %s:* into %s (group %s, consumer %s)",
            self.config.prefix,
            self.config.root,
            self.config.group,
            self.config.consumer,
        )
        try:
            while not stop.is_set():
                try:
                    self.step()
                    self._redis_ok()
                except RedisError as exc:
                    stop.wait(self._redis_failed(exc))
            self._take_read()
            self.close()
        finally:
            self._reader.shutdown()

    def step(self) -> None:
        now = self.clock()
        self._retry_acks()
        if now >= self._next["heartbeat"]:
            if not self.claims.heartbeat():
                raise ArchiveTakenOver(
                    "this archiver was declared dead by its group (silent longer than "
                    "SCHWAB_ARCHIVE_DEAD_SECONDS) and its entries were taken over; restart it"
                )
            self._next["heartbeat"] = now + self.config.dead_seconds / 3
        if now >= self._next["discover"]:
            new = self.source.discover()
            if new:
                log.info("archiving %d new stream(s): %s", len(new), ", ".join(new[:10]))
            self._next["discover"] = now + DISCOVER_SECONDS
        if now >= self._next["takeover"]:
            self._take_over()
            self._next["takeover"] = now + self.config.dead_seconds / 3
        self.finish(self.roller.due(now, self._today()))
        self.metrics.held.set(self.roller.held)
        if self.roller.blocked:
            time.sleep(min(0.5, self.roller.next_due(self.clock()) or 0.5))
            return
        # The next read runs on the reader thread while the last one's entries become columns:
        # Redis takes about as long to hand a read out as the archiver to turn it into columns.
        with collector_paused():
            read = self._reader.submit(self.source.read, READ_COUNT)
            taken = self._take_read()
            self._delivered = read.result()
        if not self._delivered and not taken:
            due = self.roller.next_due(self.clock())
            wait = BLOCK_MS if due is None else min(BLOCK_MS, int(due * 1000) + 1)
            self.source.wait(wait)

    def _take_read(self) -> bool:
        """Take the entries of the last read; False when it had none."""
        deliveries, self._delivered = self._delivered, []
        for delivery in deliveries:
            self.take(delivery.stream, delivery.entries, delivery.prev_seq)
        return bool(deliveries)

    def take(
        self, stream: str, entries: list[Entry], prev_seq: int | None, check: bool = True
    ) -> None:
        """One stream's entries (in stream order) into their segments; with `check`, gaps in
        `seq` too."""
        now = self.clock()
        taken = intake(stream, entries)
        for part in taken.parts:
            self.roller.add(part.kind, part.day, stream, part.entry_ids, part.batch, now)
        for entry_id, row in taken.unmapped:
            self.metrics.unmapped.inc()
            log.warning("entry %s of %s kept raw (type=unmapped): %s", entry_id, stream, row.error)
        if not check or stream == self._status or steady(prev_seq, taken.seqs):
            return
        ids = [entry.entry_id for entry in entries]
        for gap in seq_gaps(stream, prev_seq, zip(ids, taken.seqs, strict=True)):
            self.metrics.gaps.inc()
            self.metrics.missing.inc(gap.missing)
            log.warning(
                "%s: %d entries were trimmed before the archive read them (seq %d to %d); "
                "recorded under type=gap",
                stream,
                gap.missing,
                gap.after_seq + 1,
                gap.seq - 1,
            )
            found = self.wall_ns()
            day = ny_day(found // 1_000_000)
            self.roller.add(
                GAP_KIND, day, stream, [gap.entry_id], tables.gap_batch(gap, found), now, False
            )

    # --- files --------------------------------------------------------------------------

    def finish(self, segments: list[Segment]) -> None:
        """Make each segment's file: aside, fsync, intent, rename, acknowledge. Segments not
        reached when Redis fails go back to the roller."""
        for index, segment in enumerate(segments):
            try:
                self._finish_one(segment)
            except BaseException:
                self.roller.put_back(segments[index + 1 :], self.clock())
                raise

    def _finish_one(self, segment: Segment) -> None:
        name = segment.file_name(self.config.consumer)
        relative = f"{segment.partition()}/{name}"
        temp = files.temp_dir(self.config.root, self.config.consumer) / name
        try:
            size = files.write_aside(tables.table(segment.kind, segment.parts), temp)
        except OSError as exc:
            self._write_failed(segment, exc)
            return
        try:
            intended = self.claims.intend(relative)
        except RedisError:
            temp.unlink(missing_ok=True)
            self.roller.put_back([segment], self.clock())
            raise
        if not intended:
            raise ArchiveTakenOver(
                "this archiver was declared dead by its group before its file was in place "
                "(silent longer than SCHWAB_ARCHIVE_DEAD_SECONDS); its entries were taken "
                "over; restart it"
            )
        files.publish(temp, self.config.root / relative)
        self.roller.written()
        self._written(segment, size)
        self.unacked.append((segment.ids, relative))
        self._retry_acks()

    def _retry_acks(self) -> None:
        while self.unacked:
            ids, relative = self.unacked[0]
            self.claims.done(ids, relative)
            self.unacked.pop(0)

    def _written(self, segment: Segment, size: int) -> None:
        self.metrics.files.labels(segment.kind).inc()
        self.metrics.bytes.labels(segment.kind).inc(size)
        self.metrics.events.labels(segment.kind).inc(segment.count)
        # Over when no file is left waiting: a small file (a gap record) that fits while a big
        # one still does not is not the end of the outage, and would make it said twice.
        if self._disk_error is not None and not self.roller.blocked:
            log.info("files can be written again (%s is over); resuming", self._disk_error)
            self._disk_error = None
            self.metrics.blocked.set(0)
        log.debug("wrote %s/%s", segment.partition(), segment.count)

    def _write_failed(self, segment: Segment, exc: OSError) -> None:
        reason = files.reason(exc)
        self.metrics.write_errors.labels(reason).inc()
        delay = self.roller.failed(segment, self.clock())
        if self._disk_error is None:
            self._disk_error = reason
            self.metrics.blocked.set(1)
            log.warning(
                "cannot write a file under %s (%s: %s): nothing is acknowledged, the entries "
                "stay pending in Redis; trying again every few seconds",
                self.config.root,
                reason,
                exc.strerror or exc,
            )
        else:
            log.debug("write failed again (%s); next try in %.1f s", reason, delay)

    # --- the group ------------------------------------------------------------------------

    def _take_over(self) -> None:
        for consumer in self.claims.dead():
            in_place = self.claims.settle_intents(consumer)
            claimed = 0
            while True:
                entries = self.claims.claim(consumer, self.source.streams, READ_COUNT)
                if not entries:
                    break
                claimed += len(entries)
                by_stream: dict[str, list[Entry]] = {}
                for entry in entries:
                    by_stream.setdefault(entry.stream, []).append(entry)
                for stream, own in by_stream.items():
                    self.take(stream, own, None, check=False)
            self.metrics.claimed.inc(claimed)
            if self.claims.forget_if_empty(consumer, self.source.streams) or claimed or in_place:
                log.info(
                    "took over archiver %s (silent for %.0f s or more): %d file(s) it had "
                    "finished acknowledged, %d pending entries claimed",
                    consumer,
                    self.config.dead_seconds,
                    in_place,
                    claimed,
                )

    def close(self) -> None:
        """At stop: finish every file (Redis may be away for a while), then leave the group."""
        deadline = self.clock() + STOP_GRACE_SECONDS
        segments = self.roller.drain()
        while (segments or self.unacked) and self.clock() < deadline:
            try:
                self._retry_acks()
                self.finish(segments)
            except RedisError as exc:
                time.sleep(self._redis_failed(exc))
            segments = self.roller.drain()
            if segments and self._disk_error is not None:
                break
        left = self.roller.held + sum(s.count for s in segments)
        if left or self.unacked:
            raise ArchiveIncomplete(
                f"stopped with {left} entries not in a durable file"
                + (f" ({self._disk_error})" if self._disk_error else "")
                + "; they stay pending in Redis and the next run archives them"
            )
        # Nothing is pending: if Redis is away, another archiver forgets this one later.
        with contextlib.suppress(RedisError):
            self.claims.forget_if_empty(self.config.consumer, self.source.streams)
        log.info("archive stopped: every entry read is in a durable file and acknowledged")

    # --- Redis health -----------------------------------------------------------------------

    def _redis_failed(self, exc: RedisError) -> float:
        self.metrics.redis_up.set(0)
        if self._redis_down_since is None:
            self._redis_down_since = self.clock()
            log.warning(
                "Redis is unavailable (%s): keeping %d entries, trying again",
                exc,
                self.roller.held,
            )
        return self._redis_backoff.next()

    def _redis_ok(self) -> None:
        self.metrics.redis_up.set(1)
        if self._redis_down_since is not None:
            log.info("Redis is back after %.1f s", self.clock() - self._redis_down_since)
            self._redis_down_since = None
            self._redis_backoff.reset()

    def _today(self) -> date:
        return ny_day(self.wall_ns() // 1_000_000)
