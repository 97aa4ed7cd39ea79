"""The `/metrics`, `/healthz` and `/livez` HTTP endpoints, served on the bridge's own event loop.

The handlers only read in-memory state, so they cannot stall the streamer; the access log is off
because a scrape every few seconds for weeks would drown the log. `/healthz` is for alerting (is
the bridge delivering?), `/livez` for a supervisor that restarts: it answers while the process
and its event loop do, since restarting on a Redis or Schwab outage would only lose what the
publisher holds.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client.exposition import choose_encoder

from schwab_stream.errors import ConfigError
from schwab_stream.telemetry.health import Health
from schwab_stream.telemetry.metrics import Metrics

__all__ = ["DEFAULT_HOST", "MetricsServer", "start_metrics_server"]

#: aiohttp's server logger for these endpoints: what a client sends that is not HTTP it serves
#: (a header or URL past its limits, a broken chunk) is logged by aiohttp as an ERROR with a
#: traceback, each time. `_BadRequests` makes that one line, once per kind.
_http_log = logging.getLogger("schwab_stream.telemetry.http")


class _BadRequests(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._said: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        kind = type(exc).__name__
        if kind in self._said:
            return False
        self._said.add(kind)
        reason = " ".join(str(exc.message).split())[:120]
        record.msg = "metrics server: refused a bad HTTP request (%s: %s); said once per kind"
        record.args = (kind, reason)
        record.levelno = min(record.levelno, logging.WARNING)  # not HTTP at all: aiohttp's DEBUG
        record.levelname = logging.getLevelName(record.levelno)
        record.exc_info = record.exc_text = None
        return True


_http_log.addFilter(_BadRequests())

#: Loopback: metrics and health are for this machine's Prometheus and supervisor, not the network.
DEFAULT_HOST = "127.0.0.1"


@dataclass
class MetricsServer:
    """A running metrics server; `port` is the bound port (useful when 0 was asked for)."""

    host: str
    port: int
    _runner: web.AppRunner

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


async def start_metrics_server(
    host: str, port: int, metrics: Metrics, health: Health, max_silence: float
) -> MetricsServer:
    """Serve `GET /metrics` (Prometheus text of `metrics.registry`), `GET /healthz` and
    `GET /livez`.

    A port that cannot be bound (in use, or privileged) is a ConfigError naming
    `SCHWAB_METRICS_PORT`: exit 2 before streaming starts, which a systemd unit with
    `RestartPreventExitStatus=2` does not restart in a loop."""

    async def metrics_handler(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(metrics.registry), headers={"Content-Type": content_type})

    async def healthz_handler(request: web.Request) -> web.Response:
        body = health.report(time.monotonic(), max_silence)
        return web.Response(
            text=json.dumps(body),
            status=503 if body["status"] == "unhealthy" else 200,
            content_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def livez_handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"}, headers={"Cache-Control": "no-store"})

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz_handler)
    app.router.add_get("/livez", livez_handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=_http_log)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise ConfigError(
            f"SCHWAB_METRICS_PORT={port}: cannot serve metrics on {host}:{port} "
            f"({exc.strerror or exc}): stop what uses that port, pick another, or set 0 for no "
            "metrics"
        ) from None
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0][1] if port == 0 else port
    return MetricsServer(host=host, port=bound, _runner=runner)
