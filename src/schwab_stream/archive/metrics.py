"""The archiver's Prometheus metrics (docs/operations.md), on a registry of its own: it is a
process apart from the bridge, served with prometheus_client's own small HTTP server."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from schwab_stream.errors import ConfigError

P = "schwab_stream_archive_"


class ArchiveMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events = Counter(P + "events", "Entries in durable files", ["type"], registry=r)
        self.files = Counter(P + "files", "Parquet files finished", ["type"], registry=r)
        self.bytes = Counter(P + "bytes", "Bytes of finished files", ["type"], registry=r)
        self.gaps = Counter(P + "gaps", "Jumps in seq: entries trimmed before read", registry=r)
        self.missing = Counter(P + "missing_entries", "Entries the gaps account for", registry=r)
        self.unmapped = Counter(P + "unmapped", "Entries kept raw: no schema took them", registry=r)
        self.write_errors = Counter(
            P + "write_errors", "Files that could not be made", ["reason"], registry=r
        )
        self.claimed = Counter(
            P + "claimed", "Entries taken over from an archiver found dead", registry=r
        )
        self.held = Gauge(P + "held_events", "Entries read, not yet in a durable file", registry=r)
        self.redis_up = Gauge(P + "redis_up", "1 when the last Redis call succeeded", registry=r)
        self.blocked = Gauge(
            P + "writing_blocked", "1 while files cannot be made (a full disk)", registry=r
        )

    def serve(self, port: int) -> None:
        """Serve /metrics on 127.0.0.1:`port` (a thread); a port in use is a bad setting."""
        try:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"SCHWAB_ARCHIVE_METRICS_PORT={port}: cannot serve metrics on 127.0.0.1:{port} "
                f"({exc.strerror or exc})"
            ) from None
