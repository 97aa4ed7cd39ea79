"""Shared fixtures: a real redis-server started by the suite, and the simulator on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis

from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig
from tests.frames import load_frames


@pytest.fixture(scope="session")
def frames() -> list[dict[str, Any]]:
    return load_frames()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """One real redis-server per test worker, on a free loopback port."""
    server = EmbeddedRedis().start()
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
