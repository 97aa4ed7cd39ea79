"""Expiry alerts: the threshold decision (expiry.py), the hook's environment, and a hook that fails
or hangs."""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from schwab_stream.alerts import ExpiryAlert, ExpiryNotifier, run_hook
from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.config import Settings
from schwab_stream.events import Event
from schwab_stream.expiry import (
    ExpiryWarnings,
    crossed_threshold,
    next_warning_in,
    refresh_state,
)

H = 3600.0


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        (72 * H, None),
        (48 * H + 1, None),
        (48 * H, 48 * H),
        (30 * H, 48 * H),
        (24 * H, 24 * H),
        (20 * H, 24 * H),  # started late: the 48 h alert is old news, 24 h is the one to send
        (1 * H, 1 * H),
        (60.0, 1 * H),
        (0.0, None),  # expired: that is a login_needed, not an alert
        (-5.0, None),
    ],
)
def test_the_most_urgent_crossed_threshold_is_chosen(left: float, expected: float | None) -> None:
    assert crossed_threshold(left) == expected


@pytest.mark.parametrize(
    ("left", "state", "next_in"),
    [
        (72 * H, "ok", 24 * H),
        (48 * H + 1, "ok", 1.0),
        (48 * H, "expiring", 24 * H),
        (1 * H + 5, "expiring", 5.0),
        (60.0, "expiring", None),  # the last warning is behind: none ahead
        (0.0, "expired", None),
    ],
)
def test_token_state_and_the_next_warning(left: float, state: str, next_in: float | None) -> None:
    assert refresh_state(left) == state
    assert next_warning_in(left) == next_in


def test_each_threshold_is_said_once_per_login() -> None:
    warnings = ExpiryWarnings()
    login = 1_700_000_000.0
    said = [warnings.due(login, left) for left in (50 * H, 47 * H, 30 * H, 23 * H, 20 * H, 0.5 * H)]
    assert said == [None, 48 * H, None, 24 * H, None, H]
    assert warnings.due(login, 0.4 * H) is None
    assert warnings.due(login + 1, 20 * H) == 24 * H  # a new login starts over


def record(refresh_left: float, now: float | None = None) -> TokenRecord:
    now = time.time() if now is None else now
    return TokenRecord(
        access_token="access-abcdefgh",
        refresh_token="refresh-abcdefgh",
        access_expires_at=now + 1800,
        login_at=now - 7 * 86400 + refresh_left,
        refresh_expires_at=now + refresh_left,
    )


def test_alert_environment_carries_the_details_and_no_secret() -> None:
    now = 1_700_000_000.0
    alert = ExpiryAlert.from_record(record(23.5 * H, now), 24 * H, "log in soon", now=now)
    env = alert.environment({"PATH": "/bin", "SCHWAB_APP_SECRET": "s3cret", "MY_BOT_TOKEN": "x"})
    assert env["SCHWAB_STREAM_THRESHOLD"] == "24h"
    assert env["SCHWAB_STREAM_SECONDS_LEFT"] == str(int(23.5 * H))
    assert env["SCHWAB_STREAM_EXPIRES_AT"] == "2023-11-15T21:43:20Z"
    assert env["SCHWAB_STREAM_MESSAGE"] == "log in soon"
    assert "SCHWAB_APP_SECRET" not in env
    assert env["PATH"] == "/bin" and env["MY_BOT_TOKEN"] == "x"  # the hook's own credentials stay
    assert not any("access-" in v or "refresh-" in v for v in env.values())
    assert ExpiryAlert(5400.0, 100.0, now, "m").threshold_label == "90m"


def _python(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


async def test_hook_gets_its_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "env.json"
    monkeypatch.setenv("SCHWAB_APP_SECRET", "exported-secret")
    hook = _python(f"import json, os; open({str(out)!r}, 'w').write(json.dumps(dict(os.environ)))")
    alert = ExpiryAlert(H, 3000.0, 1_700_000_000.0, "the refresh token expires in 50 min")
    assert await run_hook(hook, alert) == 0
    env = json.loads(out.read_text())
    assert env["SCHWAB_STREAM_THRESHOLD"] == "1h"
    assert env["SCHWAB_STREAM_MESSAGE"] == "the refresh token expires in 50 min"
    assert "SCHWAB_APP_SECRET" not in env


async def test_failing_hook_is_logged_with_its_output(caplog: pytest.LogCaptureFixture) -> None:
    alert = ExpiryAlert(H, 3000.0, time.time() + 3000, "m")
    with caplog.at_level(logging.INFO, logger="schwab_stream.alerts"):
        assert await run_hook("echo no route to the phone >&2; exit 7", alert) == 7
    failed = [r for r in caplog.records if "failed with exit code 7" in r.getMessage()]
    assert failed and failed[0].levelno == logging.WARNING
    assert "no route to the phone" in failed[0].output  # type: ignore[attr-defined]


async def test_slow_hook_is_killed_with_its_children(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    marker = tmp_path / "late"
    alert = ExpiryAlert(H, 3000.0, time.time() + 3000, "m")
    started = time.monotonic()
    # A child in the background that would write the marker after 1 s: the group kill stops it.
    result = await run_hook(f"(sleep 1; touch {marker}) & sleep 30", alert, timeout=0.3)
    assert result is None and time.monotonic() - started < 3
    assert any("killed" in r.getMessage() for r in caplog.records)
    await asyncio.sleep(1.3)
    assert not marker.exists()


class ListSink:
    """An `EventSink` that keeps what it is given."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.statuses: list[tuple[str, str, dict[str, Any]]] = []

    def submit(self, events: list[Event]) -> None:
        self.events.extend(events)

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        self.statuses.append((state, detail, info))


async def test_notifier_publishes_at_once_and_runs_the_hook_in_the_background() -> None:
    sink = ListSink()
    sent = sink.statuses
    notifier = ExpiryNotifier("sleep 30", sink, timeout=10)
    started = time.monotonic()
    notifier(record(3000.0), H, "the refresh token expires in 50 min")
    assert time.monotonic() - started < 0.5  # the hook does not hold up the caller
    state, detail, info = sent[0]
    assert (state, detail) == ("token_expiring", "the refresh token expires in 50 min")
    assert info["threshold"] == "1h" and 2990 <= info["seconds_left"] <= 3000
    assert info["expires_at"].endswith("Z")
    assert not any("access-" in str(v) or "refresh-" in str(v) for v in info.values())
    await notifier.aclose(grace=0.1)  # shutdown kills a hook that is still running
    await asyncio.wait_for(notifier.wait(), 1.0)
    assert time.monotonic() - started < 2


async def test_refresh_forever_announces_each_threshold_once(tmp_path: Path) -> None:
    """The auth client's loop decides when; the callback hears 24 h at start, then 1 h on time."""
    store = TokenStore(tmp_path / "token.json")
    store.save(record(H + 1.5))
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        app_key="key",
        app_secret="secret-value",
        token_path=store.path,
    )
    client = SchwabAuthClient(settings, store=store)
    heard: list[tuple[float, str]] = []
    task = asyncio.create_task(
        client.refresh_forever(on_expiry_warning=lambda r, t, m: heard.append((t, m)))
    )
    try:
        await asyncio.sleep(2.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.aclose()
    assert [t for t, _ in heard] == [24 * H, H]
    assert "run `schwab-stream login`" in heard[1][1]
