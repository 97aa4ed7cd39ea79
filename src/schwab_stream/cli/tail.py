"""`schwab-stream tail`: follow the event streams in Redis, one readable line per event.

A plain consumer of the external contract (PREFIX:TYPE:SYMBOL streams, a `data` field of JSON),
so it works against any Redis the streamer writes to, and parses events as loose JSON so a newer
schema never stops it. Streams are followed with XREAD BLOCK; without `--symbol` the keys are found
with SCAN (stream keys only) and looked for again every few seconds, so symbols subscribed later
show up too.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from typing import Any

import click
import redis
from redis.exceptions import RedisError

from schwab_stream.cli.common import exits_on_error, redis_options, redis_target
from schwab_stream.cli.formatting import format_line, printable
from schwab_stream.errors import SchwabStreamError
from schwab_stream.publish.keys import StreamKeys, hash_tag
from schwab_stream.redact import safe_url
from schwab_stream.redis_client import is_cluster, sync_redis

#: Event types whose streams are per symbol (PREFIX:TYPE:SYMBOL).
SYMBOL_TYPES = ("tick", "level2", "bar", "screener")
#: Event types with one stream each (PREFIX:TYPE).
SINGLE_TYPES = ("account", "status")
#: Seconds between reads of a cluster's streams when nothing came (XREAD cannot block on
#: streams of several slots at once).
CLUSTER_POLL = 0.1
ALL_TYPES = (*SYMBOL_TYPES, *SINGLE_TYPES)

#: How often (seconds) to look for new stream keys when following by type.
RESCAN_SECONDS = 3.0
#: XREAD BLOCK timeout in milliseconds; also bounds how late a rescan can be.
BLOCK_MS = 1000


# --- which streams ------------------------------------------------------------------------


def fixed_keys(
    prefix: str, symbols: Iterable[str], types: Iterable[str], cluster: bool = False
) -> list[str]:
    """Keys known without asking Redis: PREFIX:TYPE:SYMBOL for each pair, PREFIX:account, ...
    (on a cluster, with their hash tags: PREFIX:TYPE:{SYMBOL}, {PREFIX}:account)."""
    names = StreamKeys(prefix, cluster=cluster)
    keys: list[str] = []
    for kind in types:
        if kind in SINGLE_TYPES:
            keys.append(f"{names.own}:{kind}")
        else:
            keys.extend(names.symbol_stream(kind, symbol) for symbol in symbols)
    return keys


def scan_keys(client: redis.Redis, prefix: str, types: Iterable[str]) -> list[str]:
    """Stream keys of the given per-symbol types that exist now (SCAN, streams only). A key
    that is not UTF-8 is not the bridge's (its symbols are text): left out, not a traceback."""
    found: set[str] = set()
    for kind in types:
        pattern = _escape_glob(f"{prefix}:{kind}:") + "*"
        for key in client.scan_iter(match=pattern, count=1000, _type="stream"):
            try:
                found.add(key.decode() if isinstance(key, bytes) else str(key))
            except UnicodeDecodeError:
                continue
    return sorted(found)


def _any_exists(client: redis.Redis, keys: list[str]) -> bool:
    """Whether any of `keys` is in Redis (True when Redis cannot say: no hint then)."""
    try:
        return bool(keys) and bool(client.exists(*keys))
    except (RedisError, OSError):
        return True


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


class Follower:
    """XREAD over a set of streams, remembering the last id seen in each."""

    def __init__(self, client: redis.Redis, from_start: bool, cluster: bool = False) -> None:
        self.client = client
        self.from_start = from_start
        #: On a cluster one XREAD may only name streams of one slot: each hash tag is read on
        #: its own, without blocking, and an empty round sleeps a little instead
        self.cluster = cluster
        self.ids: dict[str, str] = {}

    def add(self, keys: Iterable[str], existing_from_now: bool) -> None:
        """Start following `keys`; with `existing_from_now`, skip what they already hold."""
        for key in keys:
            if key in self.ids:
                continue
            start = "0-0"
            if existing_from_now and not self.from_start:
                last: Any = self.client.xrevrange(key, count=1)
                if last:
                    entry_id = last[0][0]
                    start = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
            self.ids[key] = start

    def read(self) -> list[tuple[str, str, bytes]]:
        """Block up to BLOCK_MS for new entries: (key, id, data) in arrival order per stream."""
        if not self.ids:
            time.sleep(BLOCK_MS / 1000)
            return []
        reply: Any = []
        if self.cluster:
            groups: dict[bytes, dict[Any, Any]] = {}
            for key, last in self.ids.items():
                groups.setdefault(hash_tag(key.encode()), {})[key] = last
            for group in groups.values():
                reply += self.client.xread(group, count=500) or []
            if not reply:
                time.sleep(CLUSTER_POLL)
        else:
            streams: dict[Any, Any] = dict(self.ids)
            reply = self.client.xread(streams, count=500, block=BLOCK_MS)
        out: list[tuple[str, str, bytes]] = []
        for raw_key, entries in reply or []:
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            for raw_id, fields in entries:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                self.ids[key] = entry_id
                data = fields.get(b"data")
                if data is not None:
                    out.append((key, entry_id, data))
        # Entry ids are the server's arrival times: sorting interleaves the streams in order.
        out.sort(key=lambda item: _id_order(item[1]))
        return out


def newest(client: redis.Redis, keys: Iterable[str], n: int) -> list[tuple[str, str, bytes]]:
    """The newest `n` entries of the streams together, oldest first (entry ids are the server's
    arrival times, so they interleave the streams in order)."""
    out: list[tuple[str, str, bytes]] = []
    for key in keys:
        reply: Any = client.xrevrange(key, count=n)
        for raw_id, fields in reply:
            data = fields.get(b"data")
            if data is not None:
                entry_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
                out.append((key, entry_id, data))
    out.sort(key=lambda item: _id_order(item[1]))
    return out[-n:]


def _id_order(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# --- the command --------------------------------------------------------------------------


@click.command()
@click.option(
    "--symbol",
    "-s",
    "symbols",
    multiple=True,
    metavar="SYMBOL",
    help="Follow this symbol or screener key (repeatable). Default: every symbol in Redis.",
)
@click.option(
    "--type",
    "-t",
    "types",
    multiple=True,
    type=click.Choice(ALL_TYPES),
    help="Follow this event type (repeatable). Default: all types.",
)
@click.option("--json", "as_json", is_flag=True, help="Print each event's raw JSON instead.")
@click.option(
    "--from-start", is_flag=True, help="Print what the streams already hold first, then follow."
)
@click.option(
    "--count",
    "-n",
    type=click.IntRange(min=1),
    help="Stop after this many events (for scripts).",
)
@click.option(
    "--last",
    type=click.IntRange(min=1),
    metavar="N",
    help="Print the newest N events the streams hold, then stop (no following).",
)
@redis_options("Redis to read")
@exits_on_error("tail")
def tail(
    symbols: tuple[str, ...],
    types: tuple[str, ...],
    as_json: bool,
    from_start: bool,
    count: int | None,
    last: int | None,
    redis_url: str | None,
    prefix: str | None,
) -> None:
    """Follow events in Redis, one readable line each (or raw JSON with --json).

    \b
    Examples:
      schwab-stream tail --symbol AAPL                  quotes, books and bars of AAPL
      schwab-stream tail --type status                  the bridge's lifecycle events
      schwab-stream tail -t status --last 20            the bridge's 20 latest lifecycle events
      schwab-stream tail -t tick --from-start -n 10     the first 10 quotes Redis holds
    """
    if last is not None and (from_start or count is not None):
        raise click.UsageError(
            "--last prints and stops: it does not go with --from-start or --count"
        )
    redis_url, prefix = redis_target(redis_url, prefix)
    # A symbol narrows to its own streams unless types say otherwise.
    wanted_types = types or (SYMBOL_TYPES if symbols else ALL_TYPES)
    wanted_symbols = [s.strip().upper() for s in symbols if s.strip()]
    client = sync_redis(redis_url, socket_connect_timeout=3.0)
    cluster = is_cluster(redis_url)
    try:
        client.ping()
    except (RedisError, OSError) as exc:
        raise SchwabStreamError(f"cannot reach Redis at {safe_url(redis_url)}: {exc}") from None
    try:
        keys = fixed_keys(prefix, wanted_symbols, wanted_types, cluster)
        if not wanted_symbols:
            try:
                keys += scan_keys(client, prefix, [t for t in wanted_types if t in SYMBOL_TYPES])
            except (RedisError, OSError) as exc:  # a server that is not a data node answers PING
                raise SchwabStreamError(
                    f"Redis at {safe_url(redis_url)} refused: {type(exc).__name__}: {exc}"
                ) from None
        if not _any_exists(client, keys):
            waits = "" if last is not None else "; waiting for its first event"
            click.echo(
                f"schwab-stream tail: no stream under {prefix}: matches yet in this Redis"
                f"{waits} (is `schwab-stream run` writing here with SCHWAB_REDIS_PREFIX="
                f"{prefix}? the symbol as Schwab spells it?)",
                err=True,
            )
        if last is not None:
            try:
                entries = newest(client, keys, last)
            except (RedisError, OSError) as exc:
                raise SchwabStreamError(f"redis error ({exc})") from None
            _print(entries, as_json, sys.stdout.isatty() and not as_json)
        else:
            _follow(
                client, prefix, wanted_symbols, wanted_types, as_json, from_start, count, cluster
            )
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


def _follow(
    client: redis.Redis,
    prefix: str,
    symbols: list[str],
    types: tuple[str, ...],
    as_json: bool,
    from_start: bool,
    count: int | None,
    cluster: bool = False,
) -> None:
    """Print events until `count` of them were printed, or forever."""
    follower = Follower(client, from_start, cluster)
    # Named streams that do not exist yet are read from 0: whatever arrives is new.
    follower.add(fixed_keys(prefix, symbols, types, cluster), existing_from_now=True)
    scan_types = [t for t in types if t in SYMBOL_TYPES] if not symbols else []
    next_scan = 0.0
    color = sys.stdout.isatty() and not as_json
    printed = 0
    while count is None or printed < count:
        try:
            if scan_types and time.monotonic() >= next_scan:
                first_scan = next_scan == 0.0
                # Keys found on a later scan were created after we started: read them whole.
                follower.add(scan_keys(client, prefix, scan_types), existing_from_now=first_scan)
                next_scan = time.monotonic() + RESCAN_SECONDS
            entries = follower.read()
        except (RedisError, OSError) as exc:
            click.echo(f"schwab-stream tail: redis error ({exc}); retrying", err=True)
            time.sleep(1.0)
            continue
        if count is not None:
            entries = entries[: count - printed]
        _print(entries, as_json, color)
        printed += len(entries)


def _print(entries: list[tuple[str, str, bytes]], as_json: bool, color: bool) -> None:
    for _key, _entry_id, data in entries:
        if as_json:
            click.echo(printable(data.decode("utf-8", errors="replace")))
        else:
            try:
                event = json.loads(data)
            except ValueError:
                event = {"type": "?", "raw": data.decode("utf-8", errors="replace")}
            click.echo(format_line(event if isinstance(event, dict) else {}, color))
