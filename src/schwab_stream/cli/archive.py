"""`schwab-stream archive`: the streams into Parquet files, exactly once (docs/archive.md).

A process apart from the bridge (it never slows it): reads every event stream of the prefix
through a Redis consumer group and writes typed, zstd-compressed Parquet files under
`DIR/type=TYPE/date=YYYY-MM-DD/`. `--stats DIR` says what a folder holds.

Exit codes: 0 stopped (SIGTERM/SIGINT) with every entry read in a durable file and acknowledged;
1 failed (Redis unreachable at start, entries left pending at stop); 2 a bad option or setting, an
unwritable folder, pyarrow missing, a single-server URL on a cluster node; 4 declared dead by its
group (silent too long; restart it). Any topology: standalone, Sentinel or Cluster.
"""

from __future__ import annotations

import importlib.util
import signal
import threading
from pathlib import Path
from typing import Any

import click

from schwab_stream.cli.common import exits_on_error, redis_url_option
from schwab_stream.errors import ConfigError, SchwabStreamError

COMMAND = "archive"


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    metavar="DIR",
    help="Archive into this folder (made if missing).",
)
@click.option(
    "--stats",
    "stats_dir",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    metavar="DIR",
    help="Say what an archive folder holds (rows, symbols, time range, size per day and type).",
)
@click.option(
    "--redis-url",
    metavar="URL",
    callback=redis_url_option,
    help="Redis to read (default: REDIS_URL setting).",
)
@click.option("--prefix", help="Redis key prefix (default: SCHWAB_REDIS_PREFIX setting).")
@click.option("--group", help="Consumer group (default: SCHWAB_ARCHIVE_GROUP, `archive`).")
@exits_on_error(COMMAND)
def archive(
    out: Path | None,
    stats_dir: Path | None,
    redis_url: str | None,
    prefix: str | None,
    group: str | None,
) -> None:
    """Archive every event stream into Parquet files, exactly once, until stopped.

    \b
    Examples:
      schwab-stream archive --out ~/ticks           archive until SIGTERM / Ctrl-C
      schwab-stream archive --stats ~/ticks         what the folder holds
    """
    if (out is None) == (stats_dir is None):
        raise click.UsageError("give either --out DIR (archive) or --stats DIR (what it holds)")
    if importlib.util.find_spec("pyarrow") is None:
        raise ConfigError(
            "schwab-stream archive needs pyarrow: pip install 'schwab-stream[archive]'"
        )
    if stats_dir is not None:
        from schwab_stream.archive.stats import archive_stats, format_stats

        click.echo(format_stats(archive_stats(stats_dir)))
        return
    assert out is not None
    _archive(out, redis_url, prefix, group)


def _archive(out: Path, redis_url: str | None, prefix: str | None, group: str | None) -> None:
    from redis.backoff import NoBackoff
    from redis.exceptions import RedisError
    from redis.retry import Retry

    from schwab_stream.archive.claims import consumer_name
    from schwab_stream.archive.metrics import ArchiveMetrics
    from schwab_stream.archive.runner import BLOCK_MS, ArchiveConfig, Archiver
    from schwab_stream.config import load_settings
    from schwab_stream.redact import safe_url
    from schwab_stream.redis_client import sync_redis, topology
    from schwab_stream.redis_topology import Kind
    from schwab_stream.telemetry.logging import setup_logging

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    settings = load_settings()
    setup_logging(settings.log_format, settings.log_level)
    url = redis_url or settings.redis_url
    config = ArchiveConfig(
        root=out.expanduser().resolve(),
        prefix=prefix or settings.redis_prefix,
        group=group or settings.archive_group,
        consumer=consumer_name(),
        roll_seconds=settings.archive_roll_seconds,
        roll_events=settings.archive_roll_events,
        dead_seconds=settings.archive_dead_seconds,
    )
    # No command is sent again by redis-py: a read sent twice would leave the first one's
    # entries pending unseen; the archiver says what failed and tries again itself.
    client = sync_redis(
        url,
        socket_connect_timeout=3.0,
        socket_timeout=BLOCK_MS / 1000 + 10.0,
        retry=Retry(NoBackoff(), 0),
    )
    metrics = ArchiveMetrics()
    kind = topology(url).kind
    archiver = Archiver(client, config, metrics, kind=kind)
    try:
        client.ping()
        if kind is not Kind.CLUSTER and _cluster_node(client):
            raise ConfigError(
                f"{safe_url(url)} is a Redis Cluster node: use a redis+cluster:// URL"
            )
    except (RedisError, OSError) as exc:
        raise SchwabStreamError(f"cannot reach Redis at {safe_url(url)}: {exc}") from None
    if settings.archive_metrics_port:
        metrics.serve(settings.archive_metrics_port)
    try:
        archiver.run(stop)
    except RedisError as exc:  # (at start: the loop itself rides Redis errors out)
        raise SchwabStreamError(f"Redis at {safe_url(url)} failed at start: {exc}") from None
    finally:
        client.close()


def _cluster_node(client: Any) -> bool:
    """Whether a server reached by a single-server URL is a cluster node (its slots are spread:
    the archive's commands would be refused)."""
    from redis.exceptions import ResponseError

    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    except ResponseError:  # (INFO not allowed to this user: cannot tell)
        return False
