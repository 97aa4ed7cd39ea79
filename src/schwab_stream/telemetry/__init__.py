"""Telemetry of the bridge: redacted logging, Prometheus metrics, the health verdict, and the
sync that feeds them from the parts' counters.

Names load on first use, so `schwab_stream.telemetry.logging` (which every command needs) does
not pull in prometheus_client and aiohttp (which only `run` and the demo need).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_WHERE = {
    "Health": "health",
    "Metrics": "metrics",
    "MetricsServer": "server",
    "start_metrics_server": "server",
    "log_once": "logging",
    "rearm_log_once": "logging",
    "redact_text": "logging",
    "register_secret": "logging",
    "setup_logging": "logging",
}

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


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
