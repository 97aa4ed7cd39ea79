"""The metrics server over real HTTP on loopback: /metrics text and the /healthz verdict."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from schwab_stream.errors import ConfigError, ExitCode
from schwab_stream.redis_topology import Cause, parse, problem
from schwab_stream.telemetry.health import Health
from schwab_stream.telemetry.metrics import Metrics
from schwab_stream.telemetry.server import DEFAULT_HOST, MetricsServer, start_metrics_server
from tests.env import clean_env

MAX_SILENCE = 0.3
REFUSED = "redis://127.0.0.1:9/0"


@pytest.fixture
async def served() -> AsyncIterator[tuple[MetricsServer, Metrics, Health]]:
    metrics, health = Metrics(), Health()
    server = await start_metrics_server(DEFAULT_HOST, 0, metrics, health, MAX_SILENCE)
    yield server, metrics, health
    await server.stop()


async def get(url: str, **headers: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as resp:
        return resp.status, resp.headers["Content-Type"], await resp.text()


async def healthz(server: MetricsServer) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        return resp.status, await resp.json()


async def test_metrics_endpoint_shows_updated_series(
    served: tuple[MetricsServer, Metrics, Health],
) -> None:
    server, metrics, _ = served
    assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
    metrics.inc_frame("data", 10)
    metrics.inc_published("tick", 3)
    metrics.inc_dropped("bar", "queue_full", 2)
    metrics.inc_reconnect("silence")
    metrics.mark_message("LEVELONE_FUTURES")
    metrics.observe_publish_latency(0.002)
    metrics.set_connection_state("subscribed")
    metrics.set_token_callbacks(lambda: 1500.0, lambda: 500_000.0)
    status, content_type, text = await get(server.url + "/metrics")
    assert status == 200
    assert content_type.startswith("text/plain")
    for line in (
        'schwab_stream_frames_received_total{kind="data"} 10.0',
        'schwab_stream_events_published_total{type="tick"} 3.0',
        'schwab_stream_events_dropped_total{reason="queue_full",type="bar"} 2.0',
        'schwab_stream_reconnects_total{reason="silence"} 1.0',
        'schwab_stream_connection_state{state="subscribed"} 1.0',
        'schwab_stream_publish_latency_seconds_bucket{le="0.0025"} 1.0',
        "schwab_stream_access_token_seconds_left 1500.0",
        "schwab_stream_refresh_token_seconds_left 500000.0",
    ):
        assert line in text.splitlines(), line
    assert 'schwab_stream_last_message_age_seconds{service="LEVELONE_FUTURES"}' in text
    assert "schwab_stream_build_info{" in text


async def test_metrics_endpoint_speaks_openmetrics_when_asked(
    served: tuple[MetricsServer, Metrics, Health],
) -> None:
    server, metrics, _ = served
    metrics.inc_published("account")
    status, content_type, text = await get(
        server.url + "/metrics", Accept="application/openmetrics-text; version=1.0.0"
    )
    assert status == 200
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    assert 'schwab_stream_events_published_total{type="account"} 1.0' in text


async def test_healthz_follows_login_subscription_and_silence(
    served: tuple[MetricsServer, Metrics, Health],
) -> None:
    server, _, health = served
    status, body = await healthz(server)
    assert (status, body["status"]) == (503, "unhealthy")
    assert body["reason"] == "not logged in to the Schwab streamer"

    health.logged_in = True
    status, body = await healthz(server)
    assert (status, body["reason"]) == (503, "logged in but not subscribed")

    health.set_subscribed(True)
    health.mark_alive()
    status, body = await healthz(server)
    assert (status, body["status"], body["reason"]) == (200, "ok", "ok")
    assert body["redis_ok"] is False  # not reached yet: nothing counts until Redis is seen away

    await asyncio.sleep(MAX_SILENCE + 0.2)
    status, body = await healthz(server)
    assert status == 503
    assert body["reason"].startswith("no data or heartbeat for")
    assert body["silence_seconds"] > MAX_SILENCE

    health.mark_alive()
    status, body = await healthz(server)
    assert status == 200

    health.login_needed = "refresh token expired"
    status, body = await healthz(server)
    assert status == 503
    assert "refresh token expired" in body["reason"] and "schwab-stream login" in body["reason"]


async def test_healthz_silence_clock_starts_at_subscribe(
    served: tuple[MetricsServer, Metrics, Health],
) -> None:
    server, _, health = served
    health.logged_in = True
    health.mark_alive(now=time.monotonic() - 60)  # old data from a previous connection
    health.set_disconnected()
    health.logged_in = True
    health.set_subscribed(True)
    status, body = await healthz(server)
    assert status == 200
    assert body["silence_seconds"] < MAX_SILENCE
    health.standby = True
    health.redis.observe(True, time.monotonic())
    health.set_disconnected()
    status, body = await healthz(server)
    assert (status, body["reason"].split(":")[0]) == (200, "standby")
    health.redis.observe(False, time.monotonic())  # nobody can hold the lease: nothing streams
    status, body = await healthz(server)
    assert status == 503 and "redis is unreachable" in body["reason"]


async def test_healthz_is_unhealthy_past_the_redis_grace_and_livez_stays_alive() -> None:
    """A bridge that cannot deliver to Redis for longer than the grace answers 503 with the
    cause; `/livez`, what a supervisor that restarts probes, stays 200 (a restart would lose
    the publisher's buffer and not bring Redis back)."""
    health = Health(redis_unhealthy_after=0.2)
    server = await start_metrics_server(DEFAULT_HOST, 0, Metrics(), health, 60.0)
    try:
        health.logged_in = True
        health.set_subscribed(True)
        health.redis.observe(True, time.monotonic())
        assert (await healthz(server))[0] == 200
        health.redis.observe(False, time.monotonic())
        assert (await healthz(server))[0] == 200  # inside the grace: the publisher buffers
        await asyncio.sleep(0.3)
        health.redis.probed(problem(Cause.REFUSED, parse(REFUSED), "127.0.0.1:9"), 0.0)
        status, body = await healthz(server)
        assert status == 503 and body["redis_cause"] == "refused"
        assert body["reason"].endswith("s: connection refused at 127.0.0.1:9"), body
        status, _, text = await get(server.url + "/livez")
        assert (status, json.loads(text)) == (200, {"status": "alive"})
        health.redis.observe(True, time.monotonic())
        assert (await healthz(server))[0] == 200
    finally:
        await server.stop()


async def test_stop_releases_the_port() -> None:
    server = await start_metrics_server(DEFAULT_HOST, 0, Metrics(), Health(), 10.0)
    status, _, _ = await get(server.url + "/healthz")
    assert status == 503
    await server.stop()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(server.url + "/healthz")
    again = await start_metrics_server(DEFAULT_HOST, server.port, Metrics(), Health(), 10.0)
    assert again.port == server.port
    await again.stop()


async def test_busy_port_is_a_config_error_naming_the_setting(
    served: tuple[MetricsServer, Metrics, Health],
) -> None:
    server, _, _ = served
    with pytest.raises(ConfigError, match=rf"^SCHWAB_METRICS_PORT={server.port}: ") as info:
        await start_metrics_server(DEFAULT_HOST, server.port, Metrics(), Health(), 10.0)
    assert info.value.exit_code == ExitCode.BAD_SETTINGS
    assert info.value.__cause__ is None and "\n" not in str(info.value)
    status, _ = await healthz(server)  # the server already there is untouched
    assert status == 503


def test_run_with_a_busy_metrics_port_exits_2_in_one_line(tmp_path: Path) -> None:
    """Issue #14 item 6: once 43 lines of traceback and exit 1, a restart loop under
    `Restart=always`; now one line naming the setting and exit 2 (RestartPreventExitStatus=2),
    before anything streams."""
    with socket.socket() as busy:
        busy.bind((DEFAULT_HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = clean_env(
            SCHWAB_APP_KEY="key",
            SCHWAB_APP_SECRET="secret",
            SCHWAB_TOKEN_PATH=str(tmp_path / "token.json"),
            SCHWAB_METRICS_PORT=str(port),
            REDIS_URL="redis://127.0.0.1:9/0",  # never reached: the port is checked first
            SCHWAB_LEVELONE_EQUITIES="AAPL",
            SCHWAB_LOG_FORMAT="json",
        )
        done = subprocess.run(
            [sys.executable, "-m", "schwab_stream", "run"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == ExitCode.BAD_SETTINGS, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(f"schwab-stream run: SCHWAB_METRICS_PORT={port}: "), lines
    # every other line is a JSON log line (the start-up ones), none an error of its own
    for line in lines[:-1]:
        assert json.loads(line)["level"] not in ("ERROR", "CRITICAL"), line
