"""Telemetry of the bridge: redacted logging, Prometheus metrics, and the health verdict.

The pipeline calls `setup_logging` once, registers every secret it loads with `register_secret`,
updates one `Metrics` and one `Health`, and serves both with `start_metrics_server`.
"""

from schwab_stream.telemetry.health import Health
from schwab_stream.telemetry.logging import (
    log_once,
    rearm_log_once,
    redact_text,
    register_secret,
    setup_logging,
)
from schwab_stream.telemetry.metrics import Metrics
from schwab_stream.telemetry.server import MetricsServer, start_metrics_server

__all__ = [
    "Health",
    "Metrics",
    "MetricsServer",
    "log_once",
    "rearm_log_once",
    "redact_text",
    "register_secret",
    "setup_logging",
    "start_metrics_server",
]
