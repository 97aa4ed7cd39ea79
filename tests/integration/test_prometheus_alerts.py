"""A real Prometheus scrapes a running bridge (simulator, real Redis, loopback only) and evaluates
deploy/prometheus/alerts.yml: the expected alert fires when the simulator revokes the token or goes
silent, and clears when it recovers; every rule evaluates without error on real data; every metric
named in the rules and the Grafana dashboard is in a real scrape.

The rules are the file's own, with two changes so the test takes seconds, not minutes: each rule
under test gets `for: 1s`, and SchwabStreamSilent's 120 s becomes 2 s (the thresholds themselves
are covered by `promtool test rules`, tests/unit/test_prometheus_rules.py). Scrapes and
evaluations run every second. The Prometheus binary is Debian's, unpacked into .venv/bin by
`./dev setup`; without it these tests skip and say so."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from schwab_stream.embedded_redis import free_port
from schwab_stream.sim.server import SimThread

from .fault_helpers import Bridge, Bridges
from .pipeline_helpers import sim_post, wait_for, write_tokens, xlen_at_least

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "schwab-stream.json"
METRIC = re.compile(r"\bschwab_stream_[a-z0-9_]+\b")
JOB = "schwab-stream"

#: (alert, the text in its rule, what it becomes here)
FAST: list[tuple[str, str, str]] = [
    ("SchwabLoginNeeded", "for: 30s", "for: 1s"),
    ("SchwabStreamSilent", "for: 1m", "for: 1s"),
    ("SchwabStreamSilent", ") > 120\n", ") > 2\n"),
]


def prometheus_binary() -> str:
    beside = Path(sys.executable).parent / "prometheus"
    found = str(beside) if beside.is_file() else shutil.which("prometheus")
    if found is None:
        pytest.skip(
            "prometheus not found in .venv/bin or on PATH: `./dev setup` unpacks it from "
            "Debian's prometheus package, which needs apt-get (not available here, or it failed)"
        )
    return found


def fast_rules() -> str:
    """alerts.yml with the changes in FAST, each made exactly once inside its own rule."""
    text = RULES.read_text()
    for alert, old, new in FAST:
        start = text.index(f"      - alert: {alert}\n")
        end = text.find("      - alert: ", start + 1)
        end = len(text) if end < 0 else end
        block = text[start:end]
        assert block.count(old) == 1, f"{alert}: {old!r} not found once in its rule"
        text = text[:start] + block.replace(old, new) + text[end:]
    return text


class Prometheus:
    """A Prometheus server on loopback scraping one bridge every second."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    async def get(self, path: str, **params: str) -> Any:
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            response = await http.get(path, params=params)
            response.raise_for_status()
            return response.json()["data"]

    async def alerts(self, state: str = "firing") -> dict[str, dict[str, Any]]:
        data = await self.get("/api/v1/alerts")
        return {a["labels"]["alertname"]: a for a in data["alerts"] if a["state"] == state}

    async def wait_firing(self, names: set[str], timeout: float = 25.0) -> dict[str, Any]:
        async def exactly() -> list[dict[str, Any]]:
            firing = await self.alerts()
            return [firing] if set(firing) == names else []

        try:
            (found,) = await wait_for(exactly, timeout=timeout, interval=0.25)
        except AssertionError:
            raise AssertionError(
                f"firing {sorted(await self.alerts())} (pending "
                f"{sorted(await self.alerts('pending'))}), expected {sorted(names)}"
            ) from None
        return found


@pytest.fixture
async def prometheus(tmp_path: Path) -> AsyncIterator[Callable[[int], Any]]:
    """`await prometheus(metrics_port)`: a Prometheus scraping that bridge, with the rules."""
    binary = prometheus_binary()
    started: list[Prometheus] = []

    async def start(metrics_port: int) -> Prometheus:
        folder = tmp_path / "prometheus"
        folder.mkdir()
        (folder / "alerts.yml").write_text(fast_rules())
        config = {
            "global": {
                "scrape_interval": "1s",
                "evaluation_interval": "1s",
                "scrape_timeout": "1s",
            },
            "rule_files": ["alerts.yml"],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}
            ],
        }
        (folder / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        port = free_port()
        log = folder / "prometheus.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={folder / 'prometheus.yml'}",
                    f"--storage.tsdb.path={folder / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )
        server = Prometheus(proc, f"http://127.0.0.1:{port}", log)
        started.append(server)

        async def ready() -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(server.url + "/-/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, timeout=30, interval=0.2)
        return server

    yield start
    for server in started:
        server.proc.terminate()
        try:
            server.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.proc.kill()
            server.proc.wait(timeout=5)


async def streaming_bridge(
    sim: SimThread, bridges: Bridges, **overrides: Any
) -> tuple[Bridge, int]:
    port = free_port()
    bridge = await bridges.start(
        sim, {"LEVELONE_EQUITIES": ["AAPL", "MSFT"]}, metrics_port=port, **overrides
    )
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", 3), timeout=15)
    return bridge, port


async def scraped(server: Prometheus) -> None:
    """Prometheus has scraped the bridge successfully, several times."""

    async def up() -> bool:
        result = await server.get("/api/v1/query", query=f'sum_over_time(up{{job="{JOB}"}}[10s])')
        return bool(result["result"]) and float(result["result"][0]["value"][1]) >= 3

    await wait_for(up, timeout=20, interval=0.25)


async def test_login_needed_fires_on_a_revoked_token_and_clears_after_the_login(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    prometheus: Callable[[int], Any],
    tmp_path: Path,
) -> None:
    sim = sim_factory(rate=40, heartbeat_interval=0.5)
    bridge, port = await streaming_bridge(sim, bridges)
    server: Prometheus = await prometheus(port)
    await scraped(server)
    assert await server.wait_firing(set()) == {}  # a healthy bridge: nothing fires
    pending = await server.alerts("pending")
    # (publish latency is the host's too: a loaded test machine may see a slow p99 pending)
    pending.pop("SchwabStreamPublishSlow", None)
    assert pending == {}

    # Every rule evaluates on real data without an error (a bad match would show here).
    groups = (await server.get("/api/v1/rules"))["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == RULES.read_text().count("      - alert: ")
    for rule in rules:
        assert rule["health"] == "ok", (rule["name"], rule.get("lastError"))
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["name"]
        assert rule["annotations"]["runbook_url"].startswith("docs/runbook.md#"), rule["name"]

    # Every metric named in the rules and the dashboard is in a real scrape of the bridge.
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    families = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, flags=re.M))
    exposed = set()
    for name, kind in families:
        if kind == "histogram":
            exposed |= {name + "_bucket", name + "_sum", name + "_count"}
        else:
            exposed |= {name, name.removesuffix("_total") + "_created"}
    named = set(METRIC.findall(RULES.read_text())) | set(METRIC.findall(DASHBOARD.read_text()))
    assert named - exposed == set()

    await sim_post(sim, "/sim/tokens/revoke")  # a newer login elsewhere
    await sim_post(sim, "/sim/tokens/expire-access")
    await sim_post(sim, "/sim/fault/drop")
    await wait_for(lambda: bridge.has_state("login_needed"), timeout=15)
    firing = await server.wait_firing({"SchwabLoginNeeded"})
    alert = firing["SchwabLoginNeeded"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["instance"] == f"127.0.0.1:{port}"
    assert "schwab-stream login" in alert["annotations"]["summary"]
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#a-login-is-needed"

    write_tokens(sim, tmp_path / "token.json")  # what `schwab-stream login` does
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=15)
    assert await server.wait_firing(set()) == {}
    assert await bridge.stop() == 0


async def test_silent_fires_while_schwab_sends_nothing_and_clears_when_it_sends_again(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    prometheus: Callable[[int], Any],
) -> None:
    sim = sim_factory(rate=40, heartbeat_interval=0.5)
    # The watchdog waits longer than the silence, as the real one (45 s) waits longer than a
    # short stall: the alert is about the metrics, not about a reconnect curing it.
    bridge, port = await streaming_bridge(sim, bridges, watchdog_seconds=60.0)
    server: Prometheus = await prometheus(port)
    await scraped(server)
    assert await server.wait_firing(set()) == {}

    started = time.monotonic()
    await sim_post(sim, "/sim/fault/silence?seconds=12")
    firing = await server.wait_firing({"SchwabStreamSilent"}, timeout=11)
    assert time.monotonic() - started < 12  # while it was silent
    alert = firing["SchwabStreamSilent"]
    assert alert["labels"]["severity"] == "critical"
    assert alert["annotations"]["runbook_url"] == "docs/runbook.md#stale-data"

    assert await server.wait_firing(set(), timeout=20) == {}  # data again: it clears
    assert time.monotonic() - started >= 12
    assert bridge.metric("reconnects_total", reason="silence") == 0
    n = await bridge.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))
    assert await bridge.stop() == 0
