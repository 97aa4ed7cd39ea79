"""What telemetry makes of the subscription book: /healthz's verdict, message ages and key counts
(#14: a refused SUBS left /healthz ok and no age metric, so the stale-service alert could not
fire; #16: a key acknowledged but never sent data for is named after a while)."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import cast

from schwab_stream.stream.client import ClientStats
from schwab_stream.stream.state import ConnectionState
from schwab_stream.stream.subscriptions import SubscriptionBook
from schwab_stream.telemetry.health import Health
from schwab_stream.telemetry.metrics import Metrics
from schwab_stream.telemetry.sync import PublisherView, TelemetrySync

EQ = "LEVELONE_EQUITIES"


def rig(
    wanted: dict[str, list[str]], silent_after: float = 300.0
) -> tuple[TelemetrySync, SubscriptionBook, ClientStats]:
    book = SubscriptionBook(wanted)
    stats = ClientStats(state=ConnectionState.SUBSCRIBED, logged_in=True, subscribed=True)
    publisher = SimpleNamespace(
        stats=SimpleNamespace(published=Counter(), conflated=Counter(), dropped=Counter()),
        redis_ok=True,
        held_streams=[],
    )
    sync = TelemetrySync(
        Metrics(),
        Health(),
        stats,
        cast(PublisherView, publisher),
        book,
        silent_key_after=silent_after,
    )
    return sync, book, stats


def sample(sync: TelemetrySync, name: str, **labels: str) -> float | None:
    return sync.metrics.registry.get_sample_value(f"schwab_stream_{name}", labels)


def test_a_refused_service_makes_healthz_degraded_and_still_gets_an_age() -> None:
    sync, book, stats = rig({EQ: ["AAPL"], "CHART_EQUITY": ["SPY"]})
    book.connected()
    book.next_command(0.0)
    book.on_answer(19, "Reached symbol limit", 0.0)  # LEVELONE_EQUITIES refused
    book.next_command(0.0)
    book.on_answer(0, "ok", 0.0)
    stats.last_message["CHART_EQUITY"] = 1.0
    sync.sync()
    report = sync.health.report(2.0, 45.0)
    assert report["status"] == "degraded"
    assert "keys refused by Schwab: LEVELONE_EQUITIES=1" in report["reason"]
    assert report["refused_keys"] == {EQ: 1}
    # the refused service has an age (from when it was first wanted), so the alert can fire
    assert sample(sync, "last_message_age_seconds", service=EQ) is not None
    assert sample(sync, "subscription_keys", service=EQ, state="refused") == 1
    assert sample(sync, "subscription_keys", service="CHART_EQUITY", state="active") == 1


def test_a_key_without_data_long_after_its_subscription_is_named() -> None:
    sync, book, stats = rig({EQ: ["AAPL", "ZZZZ"]}, silent_after=0.0)
    book.connected()
    book.next_command(0.0)
    book.on_answer(0, "ok", 0.0)
    book.streaming[EQ]["AAPL"] = 123  # AAPL had data; ZZZZ never
    stats.last_message[EQ] = 1.0
    sync.sync()
    report = sync.health.report(2.0, 45.0)
    assert report["status"] == "degraded"
    assert report["silent_keys"] == [f"{EQ}=ZZZZ"]
    assert sample(sync, "subscription_keys", service=EQ, state="silent") == 1


def test_an_unsubscribed_service_loses_its_age_and_counts() -> None:
    sync, book, stats = rig({EQ: ["AAPL"], "CHART_EQUITY": ["SPY"]})
    stats.last_message.update({EQ: 1.0, "CHART_EQUITY": 1.0, "heartbeat": 1.0})
    sync.sync()
    assert sample(sync, "last_message_age_seconds", service="CHART_EQUITY") is not None
    book.set_wanted({EQ: ["AAPL"]})
    sync.sync()
    assert sample(sync, "last_message_age_seconds", service="CHART_EQUITY") is None
    assert sample(sync, "last_message_age_seconds", service="heartbeat") is not None
    assert sample(sync, "subscription_keys", service="CHART_EQUITY", state="pending") is None


def test_idle_is_healthy_and_says_so() -> None:
    sync, _, stats = rig({})
    stats.state = ConnectionState.IDLE
    stats.logged_in = stats.subscribed = False
    sync.sync()
    report = sync.health.report(2.0, 45.0)
    assert (report["status"], report["idle"]) == ("ok", True)
    assert report["reason"].startswith("idle: nothing to subscribe")
