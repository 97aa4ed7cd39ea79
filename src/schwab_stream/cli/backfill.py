"""`schwab-stream backfill`: fill bar streams from Schwab's price history by hand (#17).

The same rules as the bridge's own back-fill (docs/backfill.md): a Redis stream only appends, so
only the minutes after a stream's last bar can be added; candles are checked and converted by
`backfill.candles.to_bars`, ordered and de-duplicated by the `BarSequencer`, and written exactly
once by the project's publisher, with a `backfill` status event saying what was written. While it
writes it holds the bridge's lease (`PREFIX:lease`), so a `run` started meanwhile waits as a
standby instead of interleaving live bars; one already running makes it refuse.

Exit codes: 0 done (or nothing missing), 1 failed (REST after retries, Redis, the token file),
2 a bad option (symbol, range, settings), 3 a login is needed, 4 a bridge is running on this Redis
and prefix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import click

from schwab_stream.cli.common import exits_on_error, redis_url_option
from schwab_stream.errors import ExitCode, SchwabStreamError

if TYPE_CHECKING:
    from schwab_stream.config import Settings
    from schwab_stream.events import BarEvent
    from schwab_stream.publish.redis import TradingEventPublisher

COMMAND = "backfill"
SERVICES = ("CHART_EQUITY", "CHART_FUTURES")
MINUTE_MS = 60_000
_FORMATS = ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%d")


class Refused(Exception):
    """Said in one line, with its exit code; nothing was written."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- the range ---------------------------------------------------------------------------------


def parse_when(text: str, option: str) -> tuple[datetime, bool]:
    """(naive New York time, whether only a date was given) of YYYY-MM-DD[THH:MM]."""
    for fmt in _FORMATS:
        try:
            return datetime.strptime(text.strip(), fmt), fmt == "%Y-%m-%d"
        except ValueError:
            continue
    raise Refused(
        f"{option} {text!r}: expected YYYY-MM-DD or YYYY-MM-DDTHH:MM (New York time)",
        ExitCode.BAD_SETTINGS,
    )


def ny_ms(local: datetime) -> int:
    from schwab_stream.backfill.candles import NEW_YORK

    return int(local.replace(tzinfo=NEW_YORK).timestamp() * 1000)


def resolve_range(
    service: str,
    start: str | None,
    end: str | None,
    now_ms: int,
    session: tuple[int, int],
) -> tuple[int, int]:
    """[from, to) in epoch ms: the defaults and date-only forms documented in `--help`, the end
    never past the current minute (only finished minutes have candles)."""
    from schwab_stream.backfill.candles import NEW_YORK, local_time_ms, minute_floor

    hour, minute = session
    if start is None:
        from_ms = local_time_ms(now_ms, hour, minute)
        if service == "CHART_FUTURES" and from_ms > now_ms:
            from_ms = local_time_ms(now_ms, hour, minute, days_back=1)
    else:
        when, date_only = parse_when(start, "--from")
        if date_only:
            day = when.date() - timedelta(days=1 if service == "CHART_FUTURES" else 0)
            when = datetime(day.year, day.month, day.day, hour, minute)
        from_ms = ny_ms(when)
    if end is None:
        to_ms = now_ms
    else:
        when, date_only = parse_when(end, "--to")
        if date_only:
            when = datetime.combine(when.date() + timedelta(days=1), datetime.min.time())
        to_ms = ny_ms(when)
    to_ms = min(minute_floor(to_ms), minute_floor(now_ms))
    from_ms = from_ms - from_ms % MINUTE_MS
    if from_ms >= to_ms:
        raise Refused(
            f"nothing to fill: the range {hhmm(from_ms)} to {hhmm(to_ms)} is empty "
            f"(--from must be before --to and before now, {hhmm(minute_floor(now_ms))}; "
            f"{NEW_YORK.key} time)",
            ExitCode.BAD_SETTINGS,
        )
    return from_ms, to_ms


def hhmm(ms: int) -> str:
    from schwab_stream.backfill.candles import NEW_YORK

    return datetime.fromtimestamp(ms / 1000, NEW_YORK).strftime("%Y-%m-%d %H:%M")


def day_chunks(start_ms: int, end_ms: int) -> list[tuple[int, int]]:
    """[start, end) cut at New York midnights: one price-history request per day."""
    from schwab_stream.backfill.candles import NEW_YORK

    chunks: list[tuple[int, int]] = []
    cursor = start_ms
    while cursor < end_ms:
        day: date = datetime.fromtimestamp(cursor / 1000, NEW_YORK).date() + timedelta(days=1)
        midnight = ny_ms(datetime(day.year, day.month, day.day))
        chunks.append((cursor, min(midnight, end_ms)))
        cursor = min(midnight, end_ms)
    return chunks


# --- what each key needs -----------------------------------------------------------------------


@dataclass
class Key:
    symbol: str
    stream: str
    #: Start of the stream's last bar (None: empty)
    last: int | None = None
    #: The minutes to fetch, [start, end); empty when nothing can be added
    start: int = 0
    end: int = 0
    chunks: list[tuple[int, int]] = field(default_factory=list)
    candles: int = 0
    #: Per request: (start, end, candles, first candle's start, last candle's start)
    answers: list[tuple[int, int, int, int | None, int | None]] = field(default_factory=list)
    written: int = 0
    dropped: int = 0

    @property
    def minutes(self) -> int:
        return max(0, (self.end - self.start) // MINUTE_MS)


async def _last_starts(redis: Any, streams: list[str]) -> list[int | None]:
    """`start` of the newest bar of each stream, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in streams:
            pipe.xrevrange(stream, count=1)
        replies: list[Any] = await pipe.execute()
    return [_start_of(entries[0][1]) if entries else None for entries in replies]


async def _has_bar_between(redis: Any, stream: str, start_ms: int, end_ms: int) -> bool:
    """Whether the stream holds a bar starting in [start_ms, end_ms): read backwards, a page at a
    time, until a bar before `start_ms`."""
    top = "+"
    while True:
        page: list[Any] = await redis.xrevrange(stream, max=top, count=500)
        for _entry_id, fields in page:
            start = _start_of(fields)
            if start is None:
                continue
            if start < start_ms:
                return False
            if start < end_ms:
                return True
        if len(page) < 500:
            return False
        last_id = page[-1][0].decode()
        top = f"({last_id}"


def _start_of(fields: dict[bytes, bytes]) -> int | None:
    import msgspec

    class _Start(msgspec.Struct):
        start: int | None = None

    try:
        return msgspec.json.decode(fields[b"data"], type=_Start).start
    except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
        return None


async def plan(
    redis: Any, prefix: str, symbols: list[str], start: int, end: int, cluster: bool = False
) -> list[Key]:
    """Each key's window: from `start`, or the minute after its stream's last bar, to `end`.
    A key whose stream already ends at or after `end` with no bar in the range is refused.
    On a cluster the streams are the bridge's tagged ones (`PREFIX:bar:{SYMBOL}`), the keys the
    publisher writes."""
    from schwab_stream.publish.keys import StreamKeys

    streams = StreamKeys(prefix, cluster=cluster)
    keys = [Key(symbol, streams.symbol_stream("bar", symbol)) for symbol in symbols]
    for key, last in zip(keys, await _last_starts(redis, [k.stream for k in keys]), strict=True):
        key.last = last
        key.start = start if last is None else max(start, last + MINUTE_MS)
        key.end = end
        key.chunks = day_chunks(key.start, key.end)
    refused = [
        k
        for k in keys
        if not k.chunks
        and k.last is not None
        and not await _has_bar_between(redis, k.stream, start, end)
    ]
    if refused:
        names = ", ".join(f"{k.symbol} ({hhmm(k.last or 0)})" for k in refused)
        raise Refused(
            f"the range {hhmm(start)} to {hhmm(end)} ET is before the last bar of "
            f"{names}: a Redis stream only appends, so only minutes after its last bar can be "
            "added; back-fill into another --prefix (or delete the stream first)",
            ExitCode.BAD_SETTINGS,
        )
    return keys


# --- progress ----------------------------------------------------------------------------------


class Progress:
    """A rich progress bar on a terminal (stderr), plain lines otherwise (stdout)."""

    def __init__(self, total: int, enabled: bool, label: str) -> None:
        self._bar: Any = None
        self._task: Any = None
        self._label = label
        self._total = total
        self._done = 0
        if enabled and total:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("requests"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._bar.add_task(label, total=total)
            self._bar.start()

    def advance(self, what: str) -> None:
        self._done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, description=f"{self._label} {what}")
        else:
            click.echo(f"{self._label}: {self._done}/{self._total} requests ({what})", err=True)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Outcome:
    keys: list[Key]
    dry_run: bool
    error: SchwabStreamError | None = None
    problems: Counter[str] = field(default_factory=Counter)

    @property
    def written(self) -> int:
        return sum(k.written for k in self.keys)


async def _fill(
    settings: Settings,
    redis_url: str,
    prefix: str,
    service: str,
    symbols: list[str],
    start: int,
    end: int,
    dry_run: bool,
    progress: Callable[[int], Progress],
) -> Outcome:
    from schwab_stream.redis_client import async_redis, is_cluster
    from schwab_stream.standby import Lease, new_instance_id

    redis = async_redis(redis_url, socket_connect_timeout=2.0, socket_timeout=10.0)
    lease = Lease(redis_url, f"{prefix}:lease", settings.lease_ttl, f"backfill@{new_instance_id()}")
    holding: asyncio.Task[None] | None = None
    try:
        holder = await lease.holder()
        if holder is None and not dry_run and not await lease.try_acquire():
            holder = await lease.holder() or "another instance"
        if holder is not None:
            raise Refused(
                f"a bridge is running on this Redis and prefix ({prefix}:lease is held by "
                f"{holder}): it back-fills its own bar streams; stop it first, or use another "
                "--prefix",
                ExitCode.LEASE_LOST,
            )
        if not dry_run:
            holding = asyncio.create_task(lease.hold())
        keys = await plan(redis, prefix, symbols, start, end, cluster=is_cluster(redis_url))
        return await _fetch_all(
            settings, redis_url, prefix, service, keys, lease, dry_run, progress
        )
    finally:
        if holding is not None:
            holding.cancel()
            with contextlib.suppress(BaseException):
                await holding
            await lease.release()
        await lease.aclose()
        await redis.aclose()


async def _fetch_all(
    settings: Settings,
    redis_url: str,
    prefix: str,
    service: str,
    keys: list[Key],
    lease: Any,
    dry_run: bool,
    progress: Callable[[int], Progress],
) -> Outcome:
    from schwab_stream.auth.client import SchwabAuthClient
    from schwab_stream.backfill.candles import to_bars
    from schwab_stream.backfill.sequencer import BarSequencer
    from schwab_stream.publish.redis import TradingEventPublisher
    from schwab_stream.rest.client import MarketDataClient

    outcome = Outcome(keys, dry_run)
    auth = SchwabAuthClient(settings)
    rest = MarketDataClient(
        auth,
        requests_per_minute=settings.rest_requests_per_minute,
        timeout=settings.rest_timeout,
        max_attempts=settings.rest_max_attempts,
    )
    publisher: TradingEventPublisher | None = None
    writing: asyncio.Task[None] | None = None
    if not dry_run:
        publisher = TradingEventPublisher(
            redis_url,
            prefix=prefix,
            maxlen=settings.stream_maxlen,
            queue_size=settings.queue_size,
            pubsub_mirror=settings.pubsub_mirror,
            heartbeat_ttl=3.0,
        )
        # Not a bridge: one heartbeat with the first write (3 s), none after, so a consumer
        # watching PREFIX:heartbeat does not take a back-fill for live data.
        publisher.core.heartbeat_every = float("inf")
        publisher.core.status_info["instance"] = lease.instance_id
        writing = asyncio.create_task(publisher.run())
    sequencer = BarSequencer()
    bar = progress(sum(len(k.chunks) for k in keys))
    gate = asyncio.Semaphore(settings.backfill_concurrency)

    async def one(key: Key) -> None:
        sequencer.known(key.symbol, key.last)
        async with gate:
            for chunk_start, chunk_end in key.chunks:
                answer = await rest.price_history(key.symbol, chunk_start, chunk_end)
                bars: list[BarEvent] = to_bars(
                    service,
                    key.symbol,
                    answer,
                    chunk_start,
                    chunk_end,
                    time.time_ns(),
                    outcome.problems,
                )
                key.candles += len(bars)
                key.answers.append(
                    (
                        chunk_start,
                        chunk_end,
                        len(bars),
                        bars[0].start if bars else None,
                        bars[-1].start if bars else None,
                    )
                )
                if publisher is not None:
                    published = sequencer.filled(key.symbol, bars)
                    key.dropped += len(bars) - len(published)
                    key.written += len(published)
                    if published:
                        publisher.submit([*published])
                bar.advance(key.symbol)

    tasks = [asyncio.create_task(one(key)) for key in keys]
    try:
        if tasks:
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in tasks:
                if task.done() and not task.cancelled() and task.exception() is not None:
                    exc = task.exception()
                    if not isinstance(exc, SchwabStreamError):
                        raise exc  # type: ignore[misc]  # a bug: its traceback
                    outcome.error = exc
                    break
    finally:
        bar.stop()
        for task in tasks:
            task.cancel()
        await rest.aclose()
        await auth.aclose()
        if publisher is not None and writing is not None:
            if outcome.written:
                publisher.status(
                    COMMAND, _summary(outcome, service), None, **_info(outcome, service)
                )
            await publisher.close(timeout=10.0)
            lost = publisher.core.unwritten()
            writing.cancel()
            with contextlib.suppress(BaseException):
                await writing
            if lost and outcome.error is None:
                outcome.error = SchwabStreamError(
                    f"{lost} events not written: Redis at {_safe(redis_url)} stopped answering "
                    "(run the same command again: what was written is not written twice)"
                )
    return outcome


def _key_line(key: Key, dry_run: bool) -> str:
    if not key.chunks:
        last = f"last bar {hhmm(key.last)} ET" if key.last is not None else "nothing asked"
        return f"{key.symbol:<10} nothing missing after its last bar ({last})"
    span = f"{hhmm(key.start)} to {hhmm(key.end)} ET ({key.minutes} minutes)"
    if dry_run:
        lines = [f"{key.symbol:<10} missing {span}: Schwab has {key.candles} candles"]
        if len(key.answers) > 1:
            for start, end, candles, first, final in key.answers:
                minutes = (end - start) // MINUTE_MS
                have = f"{candles} candles" + (
                    f", {hhmm(first)[11:]}-{hhmm(final)[11:]}" if first and final else ""
                )
                lines.append(f"{'':<10}   {hhmm(start)} to {hhmm(end)} ({minutes} min): {have}")
        return "\n".join(lines)
    dup = f", {key.dropped} already there" if key.dropped else ""
    return f"{key.symbol:<10} {key.written} bars written, {span}{dup}"


def _summary(outcome: Outcome, service: str) -> str:
    filled = [k for k in outcome.keys if k.written]
    return f"back-filled {outcome.written} {service} bars into {len(filled)} streams by hand"


def _info(outcome: Outcome, service: str) -> dict[str, object]:
    filled = [k for k in outcome.keys if k.chunks]
    return {
        "service": service,
        "bars": outcome.written,
        "symbols": {k.symbol: k.written for k in outcome.keys},
        "start_ms": min((k.start for k in filled), default=None),
        "end_ms": max((k.end for k in filled), default=None),
        "complete": outcome.error is None,
    }


def _safe(url: str) -> str:
    from schwab_stream.redact import safe_url

    return safe_url(url)


# --- the command -------------------------------------------------------------------------------


@click.command(context_settings={"max_content_width": 100})
@click.argument("symbols", nargs=-1, required=True, metavar="SYMBOL...")
@click.option(
    "--from",
    "start",
    metavar="YYYY-MM-DD[THH:MM]",
    help="First minute, New York time. A date alone: that day's session start "
    "(SCHWAB_BACKFILL_EQUITY_FROM, 07:00; futures SCHWAB_BACKFILL_FUTURES_FROM, 18:00 the "
    "evening before). Default: today's session start.",
)
@click.option(
    "--to",
    "end",
    metavar="YYYY-MM-DD[THH:MM]",
    help="End, New York time, not included (bars before it). A date alone: the whole day. "
    "Default, and at most: the current minute.",
)
@click.option(
    "--service",
    type=click.Choice(SERVICES),
    default="CHART_EQUITY",
    show_default=True,
    help="Which bar streams.",
)
@click.option(
    "--dry-run", is_flag=True, help="Print what is missing and what Schwab has; write nothing."
)
@click.option(
    "--redis-url",
    metavar="URL",
    callback=redis_url_option,
    help="Redis to write to (default: REDIS_URL setting).",
)
@click.option("--prefix", help="Key prefix (default: SCHWAB_REDIS_PREFIX).")
@exits_on_error(COMMAND)
def backfill(
    symbols: tuple[str, ...],
    start: str | None,
    end: str | None,
    service: str,
    dry_run: bool,
    redis_url: str | None,
    prefix: str | None,
) -> None:
    """Fill bar streams (PREFIX:bar:SYMBOL) from Schwab's price history for a range of minutes.

    Only minutes after a stream's last bar can be added (a Redis stream only appends); a bar
    already there is never written twice, so running it again writes nothing. Refused while a
    bridge runs on the same Redis and prefix (it back-fills by itself). Settings and the token
    file as for `run` (.env and the environment).

    \b
    Examples:
      schwab-stream backfill AAPL MSFT                      # today from 07:00 to now
      schwab-stream backfill --from 2025-06-10 --to 2025-06-10 AAPL   # that whole day
      schwab-stream backfill --from 2025-06-10T09:30 --to 2025-06-10T16:00 --dry-run SPY
      schwab-stream backfill --service CHART_FUTURES /ES
      schwab-stream backfill --prefix replay AAPL           # into replay:bar:AAPL

    \b
    Exit codes: 0 done (or nothing missing), 1 failed (a REST call after its retries, Redis,
    the token file), 2 a bad symbol, range or setting, or a range before a stream's last bar,
    3 a login is needed, 4 a bridge is running on this Redis and prefix.
    """
    from schwab_stream.backfill.runner import SessionStart
    from schwab_stream.config import key_problems, load_settings

    try:
        settings = load_settings()
        _quiet_logging(settings)
        wanted = list(dict.fromkeys(symbols))
        problems = key_problems({service: wanted})
        if problems:
            raise Refused("; ".join(problems), ExitCode.BAD_SETTINGS)
        sessions = SessionStart.from_settings(
            settings.backfill_equity_from, settings.backfill_futures_from
        )
        session = sessions.futures if service == "CHART_FUTURES" else sessions.equity
        from_ms, to_ms = resolve_range(service, start, end, time.time_ns() // 1_000_000, session)
        url = redis_url or settings.redis_url
        key_prefix = prefix or settings.redis_prefix
        outcome = _run(settings, url, key_prefix, service, wanted, from_ms, to_ms, dry_run)
    except Refused as refused:
        click.echo(f"schwab-stream {COMMAND}: {refused}", err=True)
        raise click.exceptions.Exit(refused.code) from None
    _report(outcome, key_prefix)


def _run(
    settings: Settings,
    url: str,
    prefix: str,
    service: str,
    symbols: list[str],
    start: int,
    end: int,
    dry_run: bool,
) -> Outcome:
    from redis.exceptions import RedisError

    bar_wanted = sys.stderr.isatty()

    def progress(total: int) -> Progress:
        return Progress(total, bar_wanted, "back-fill" if not dry_run else "dry run")

    try:
        return asyncio.run(
            _fill(settings, url, prefix, service, symbols, start, end, dry_run, progress)
        )
    except (RedisError, OSError) as exc:
        raise Refused(
            f"Redis at {_safe(url)}: {type(exc).__name__}: {exc}", ExitCode.FAILED
        ) from None
    except KeyboardInterrupt:
        raise Refused(
            "interrupted: what was written stays, in order; run it again to finish",
            130,  # 128 + SIGINT, as `login` does
        ) from None


def _report(outcome: Outcome, prefix: str) -> None:
    for key in outcome.keys:
        click.echo(_key_line(key, outcome.dry_run))
    left = {k: v for k, v in outcome.problems.items() if k != "outside" and v}
    if left:
        click.echo(f"candles left out (never written): {left}", err=True)
    if outcome.error is not None:
        raise outcome.error
    if outcome.dry_run:
        would = sum(k.candles for k in outcome.keys)
        missing = sum(k.minutes for k in outcome.keys)
        click.echo(
            f"dry run: {missing} minutes missing in {sum(1 for k in outcome.keys if k.chunks)} "
            f"of {len(outcome.keys)} streams, {would} candles to write; nothing written"
        )
    else:
        filled = sum(1 for k in outcome.keys if k.written)
        click.echo(
            f"{outcome.written} bars written to {filled} of {len(outcome.keys)} streams "
            f"({prefix}:bar:SYMBOL)"
        )


def _quiet_logging(settings: Settings) -> None:
    """Warnings only (the one-shot commands' logging); the publisher's own lines are left out
    unless SCHWAB_LOG_LEVEL=DEBUG: this command says what went wrong in its own line."""
    from schwab_stream.cli.common import setup_one_shot_logging

    setup_one_shot_logging(settings)
    if settings.log_level != "DEBUG":
        logging.getLogger("schwab_stream.publish").setLevel(logging.CRITICAL)
        logging.getLogger("schwab_stream.rest").setLevel(logging.ERROR)
