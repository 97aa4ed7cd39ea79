"""Metrics: fresh registries, helpers that land on the right series, scrape-time values."""

from __future__ import annotations

import logging
import math
import platform
import time

import pytest
from prometheus_client import generate_latest

from schwab_stream import __version__
from schwab_stream.stream.state import ConnectionState
from schwab_stream.telemetry.logging import rearm_log_once
from schwab_stream.telemetry.metrics import (
    CONNECTION_STATES,
    EVENT_TYPES,
    FRAME_KINDS,
    PUBLISH_LATENCY_BUCKETS,
    Metrics,
)

P = "schwab_stream_"


def value(m: Metrics, name: str, **labels: str) -> float | None:
    result: float | None = m.registry.get_sample_value(P + name, labels)
    return result


def test_each_instance_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.inc_published("tick", 5)
    assert value(a, "events_published_total", type="tick") == 5
    assert value(b, "events_published_total", type="tick") == 0


def test_known_labels_are_exported_at_zero_before_first_use() -> None:
    m = Metrics()
    for kind in FRAME_KINDS:
        assert value(m, "frames_received_total", kind=kind) == 0
    for event_type in EVENT_TYPES:
        assert value(m, "events_published_total", type=event_type) == 0
        assert value(m, "events_conflated_total", type=event_type) == 0


def test_counter_helpers() -> None:
    m = Metrics()
    m.inc_frame("data")
    m.inc_frame("data", 2)
    m.inc_frame("heartbeat")
    m.inc_frame("unexpected_kind")
    m.inc_bad_frame("json")
    m.inc_bad_frame("json")
    m.inc_published("level2", 7)
    m.inc_dropped("tick", "queue_full", 3)
    m.inc_dropped("tick", "queue_full")
    m.inc_dropped("account", "redis_down")
    m.inc_conflated("tick", 40)
    m.inc_reconnect("silence")
    m.inc_reconnect("silence")
    m.inc_reconnect("dropped")
    assert value(m, "frames_received_total", kind="data") == 3
    assert value(m, "frames_received_total", kind="heartbeat") == 1
    assert value(m, "frames_received_total", kind="unexpected_kind") == 1
    assert value(m, "frames_bad_total", reason="json") == 2
    assert value(m, "events_published_total", type="level2") == 7
    assert value(m, "events_dropped_total", type="tick", reason="queue_full") == 4
    assert value(m, "events_dropped_total", type="account", reason="redis_down") == 1
    assert value(m, "events_conflated_total", type="tick") == 40
    assert value(m, "reconnects_total", reason="silence") == 2
    assert value(m, "reconnects_total", reason="dropped") == 1


def test_last_message_age_is_computed_at_scrape() -> None:
    m = Metrics()
    assert value(m, "last_message_age_seconds", service="LEVELONE_EQUITIES") is None
    m.mark_message("LEVELONE_EQUITIES", now=time.monotonic() - 30)
    m.mark_message("NASDAQ_BOOK")
    age = value(m, "last_message_age_seconds", service="LEVELONE_EQUITIES")
    assert age is not None and 30 <= age < 35
    fresh = value(m, "last_message_age_seconds", service="NASDAQ_BOOK")
    assert fresh is not None and 0 <= fresh < 5
    m.mark_message("LEVELONE_EQUITIES")
    age = value(m, "last_message_age_seconds", service="LEVELONE_EQUITIES")
    assert age is not None and age < 5


def test_token_seconds_left_come_from_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    rearm_log_once()
    m = Metrics()
    assert math.isnan(value(m, "access_token_seconds_left") or 0.0)
    left = {"access": 1200.0, "refresh": 86_000.0}
    m.set_token_callbacks(lambda: left["access"], lambda: left["refresh"])
    assert value(m, "access_token_seconds_left") == 1200
    assert value(m, "refresh_token_seconds_left") == 86_000
    left["access"] = 900.0
    assert value(m, "access_token_seconds_left") == 900

    def broken() -> float:
        raise OSError("token file mid-rewrite")

    m.set_token_callbacks(lambda: None, broken)
    with caplog.at_level(logging.WARNING, logger="schwab_stream.telemetry.metrics"):
        assert math.isnan(value(m, "access_token_seconds_left") or 0.0)
        assert math.isnan(value(m, "refresh_token_seconds_left") or 0.0)
        assert math.isnan(value(m, "refresh_token_seconds_left") or 0.0)
    assert [r.getMessage() for r in caplog.records] == ["cannot read token lifetime for metrics"]
    rearm_log_once()


def test_publish_latency_buckets_span_50us_to_1s() -> None:
    m = Metrics()
    assert PUBLISH_LATENCY_BUCKETS[0] == 50e-6 and PUBLISH_LATENCY_BUCKETS[-1] == 1.0
    m.observe_publish_latency(0.00007)
    m.observe_publish_latency(0.3)
    m.observe_publish_latency(2.0)
    assert value(m, "publish_latency_seconds_bucket", le="5e-05") == 0
    assert value(m, "publish_latency_seconds_bucket", le="0.0001") == 1
    assert value(m, "publish_latency_seconds_bucket", le="0.5") == 2
    assert value(m, "publish_latency_seconds_bucket", le="1.0") == 2
    assert value(m, "publish_latency_seconds_bucket", le="+Inf") == 3
    assert value(m, "publish_latency_seconds_count") == 3


def test_connection_state_has_exactly_one_current_state() -> None:
    m = Metrics()
    assert value(m, "connection_state", state="disconnected") == 1
    m.set_connection_state("subscribed")
    states = {s: value(m, "connection_state", state=s) for s in CONNECTION_STATES}
    assert states.pop("subscribed") == 1
    assert set(states.values()) == {0}
    with pytest.raises(ValueError, match="unknown connection state"):
        m.set_connection_state("subscibed")


def test_connection_states_are_the_client_enum_with_the_label_strings_of_before() -> None:
    assert tuple(ConnectionState) == CONNECTION_STATES
    assert CONNECTION_STATES == (  # the documented labels (docs/operations.md), unchanged
        "disconnected",
        "connecting",
        "connected",
        "logged_in",
        "subscribed",
        "reconnecting",
        "standby",
        "login_needed",
        "stopped",
        "idle",  # new: nothing wanted, so not connected (#14)
    )
    m = Metrics()
    m.set_connection_state(ConnectionState.RECONNECTING)
    assert value(m, "connection_state", state="reconnecting") == 1
    assert value(m, "connection_state", state="disconnected") == 0


def test_gauges_queue_redis_and_build_info() -> None:
    m = Metrics()
    queue: list[int] = []
    m.watch_queue(lambda: len(queue), 100_000)
    assert value(m, "queue_depth") == 0
    queue.extend(range(42))
    assert value(m, "queue_depth") == 42
    assert value(m, "queue_capacity") == 100_000
    assert value(m, "redis_up") == 0
    m.set_redis_up(True)
    assert value(m, "redis_up") == 1
    m.set_redis_up(False)
    assert value(m, "redis_up") == 0
    info = {"version": __version__, "python": platform.python_version()}
    assert value(m, "build_info", **info) == 1


def test_exposition_names_every_documented_metric() -> None:
    text = generate_latest(Metrics().registry).decode()
    types = [line.split()[2:] for line in text.splitlines() if line.startswith("# TYPE")]
    names = {name for name, _ in types if not name.endswith("_created")}
    assert names == {
        P + n
        for n in (
            "frames_received_total",
            "frames_bad_total",
            "events_published_total",
            "events_dropped_total",
            "events_conflated_total",
            "reconnects_total",
            "last_message_age_seconds",
            "subscription_keys",
            "rest_requests_total",
            "rest_retries_total",
            "backfill_bars_total",
            "backfill_fetches_total",
            "backfill_minutes_missing_total",
            "backfill_candles_bad_total",
            "bars_dropped_total",
            "access_token_seconds_left",
            "refresh_token_seconds_left",
            "publish_latency_seconds",
            "queue_depth",
            "queue_capacity",
            "connection_state",
            "redis_up",
            "build_info",
        )
    }
    assert {name for name, kind in types if kind == "counter"} == {
        n for n in names if n.endswith("_total")
    }
