"""The files under deploy/: every metric named in the alerting rules and the Grafana dashboard is
one the bridge exports (names from `Metrics().registry`, as test_telemetry_metrics.py does), the
dashboard is well formed and shows what docs/operations.md says it shows, and the systemd units
pass `systemd-analyze verify` (skipped where it is not installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import generate_latest

from schwab_stream.telemetry.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "schwab-stream.json"
RULES = DEPLOY / "prometheus" / "alerts.yml"
UNITS = DEPLOY / "systemd"
METRIC = re.compile(r"\bschwab_stream_[a-z0-9_]+\b")


def exported_series_names() -> set[str]:
    """Every series name a scrape of the bridge can hold, from its registry's exposition:
    counters' `_total` and `_created`, histograms' `_bucket`, `_sum` and `_count`, gauges as is."""
    text = generate_latest(Metrics().registry).decode()
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        name, kind = line.split()[2:4]
        if kind == "histogram":
            names |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            names.add(name)
    return names


def unknown_metrics(exprs: list[str]) -> set[str]:
    return {m for e in exprs for m in METRIC.findall(e)} - exported_series_names()


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for var in board["templating"]["list"]:
        query = var.get("query")
        if isinstance(query, dict):
            exprs.append(query["query"])
        elif var["type"] == "query":
            exprs.append(query)
    return exprs


def test_the_exported_names_are_read_from_the_registry() -> None:
    names = exported_series_names()
    assert {
        "schwab_stream_events_published_total",
        "schwab_stream_events_published_created",
        "schwab_stream_publish_latency_seconds_bucket",
        "schwab_stream_queue_depth",
        "schwab_stream_build_info",
    } <= names
    assert "schwab_stream_publish_latency_seconds" not in names  # only its _bucket/_sum/_count
    assert unknown_metrics(["rate(schwab_stream_events_publish_total[1m])"]) == {
        "schwab_stream_events_publish_total"
    }


def test_every_metric_in_the_alerting_rules_is_exported() -> None:
    text = RULES.read_text()
    assert METRIC.search(text)
    assert unknown_metrics([text]) == set()


def test_every_metric_in_the_dashboard_is_exported() -> None:
    exprs = dashboard_exprs(dashboard())
    assert len(exprs) > 20
    assert unknown_metrics(exprs) == set()


def test_the_dashboard_shows_what_operations_md_lists() -> None:
    board = dashboard()
    used = {m for e in dashboard_exprs(board) for m in METRIC.findall(e)}
    for needed in (
        "schwab_stream_events_published_total",  # rates
        "schwab_stream_frames_received_total",
        "schwab_stream_publish_latency_seconds_bucket",  # latency
        "schwab_stream_queue_depth",  # queue
        "schwab_stream_refresh_token_seconds_left",  # token time left
        "schwab_stream_access_token_seconds_left",
        "schwab_stream_reconnects_total",  # reconnects
        "schwab_stream_subscription_keys",  # subscriptions
        "schwab_stream_backfill_bars_total",  # back-fill
        "schwab_stream_backfill_minutes_missing_total",
        "schwab_stream_rest_requests_total",
        "schwab_stream_connection_state",
        "schwab_stream_redis_up",
    ):
        assert needed in used, needed
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels(board):
        if panel["type"] == "row":
            continue
        assert panel["targets"] and panel["title"], panel
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            # every query follows the dashboard's job and instance pickers
            assert 'job=~"$job", instance=~"$instance"' in target["expr"], target["expr"]
    operations = (ROOT / "docs" / "operations.md").read_text()
    assert "deploy/grafana/schwab-stream.json" in operations
    for panel in panels(board):
        if panel["type"] != "row":
            assert f"**{panel['title']}**" in operations, f"{panel['title']!r} not documented"


def units() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def test_both_units_are_there_and_run_the_bridge() -> None:
    assert [p.name for p in units()] == ["schwab-stream.service", "schwab-stream@.service"]
    for unit in units():
        text = unit.read_text()
        assert re.search(r"^ExecStart=\S+/schwab-stream run$", text, flags=re.M), unit
        assert re.search(r"^RestartPreventExitStatus=2 3$", text, flags=re.M), unit
        assert re.search(r"^Restart=always$", text, flags=re.M), unit
    template = (UNITS / "schwab-stream@.service").read_text()
    assert "EnvironmentFile=/etc/schwab-stream/%i.env" in template  # one env file per account
    assert "SCHWAB_TOKEN_PATH=/var/lib/schwab-stream/%i/token.json" in template


def verify(unit_text: str, name: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian: the systemd package)")
    # ExecStart must name an executable that exists: the bridge of this checkout's venv.
    schwab_stream = Path(sys.executable).parent / "schwab-stream"
    unit_text = unit_text.replace("/opt/schwab-stream/bin/schwab-stream", str(schwab_stream))
    path = tmp_path / name
    path.write_text(unit_text)
    return subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("unit", "as_name"),
    [
        ("schwab-stream.service", "schwab-stream.service"),
        ("schwab-stream@.service", "schwab-stream@alice.service"),  # an instance of the template
    ],
)
def test_systemd_analyze_verify_passes(unit: str, as_name: str, tmp_path: Path) -> None:
    done = verify((UNITS / unit).read_text(), as_name, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # warnings (an unknown value...) count too


def test_systemd_analyze_verify_catches_a_bad_unit(tmp_path: Path) -> None:
    """The check above would see a mistake: a wrong value is reported (as a warning)."""
    text = (UNITS / "schwab-stream.service").read_text()
    done = verify(text.replace("Restart=always", "Restart=sometimes"), "bad.service", tmp_path)
    assert "sometimes" in done.stderr
