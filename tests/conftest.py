"""Shared fixtures: a real redis-server started by the suite, and the simulator on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "schwab_frames.json"
LOCAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "schwab_frames.json"


def load_frames() -> list[dict[str, Any]]:
    """The real captured frames (a copy lives in tests/fixtures so a clone is self-contained)."""
    path = LOCAL_FIXTURES if LOCAL_FIXTURES.exists() else FIXTURES
    frames: list[dict[str, Any]] = json.loads(path.read_text())
    return frames


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


@pytest.fixture
def sim_factory() -> Iterator[Callable[..., SimThread]]:
    """Start simulators with given SimConfig fields; all are stopped after the test."""
    started: list[SimThread] = []

    def make(**kwargs: Any) -> SimThread:
        sim = SimThread(SimConfig(**kwargs)).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.stop()


@pytest.fixture
def sim(sim_factory: Callable[..., SimThread]) -> SimThread:
    return sim_factory()
