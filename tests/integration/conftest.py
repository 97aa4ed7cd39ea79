"""Fixtures of the end-to-end tests: bridges (real pipelines against the simulator and Redis), a
simulator whose callback URL is a free local port, and settings aimed at it that ignore the
developer's own `.env` and shell variables."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from schwab_stream.config import Settings
from schwab_stream.embedded_redis import free_port
from schwab_stream.sim.server import SimThread
from tests.topologies import Cluster

from .fault_helpers import Bridges
from .pipeline_helpers import sim_settings, sim_values


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """A Redis Cluster of three primaries (asked for before `bridges`, so the bridges stop
    before the nodes)."""
    made = Cluster()
    try:
        yield made
    finally:
        made.stop()


@pytest.fixture
async def bridges(redis_url: str, tmp_path: Path) -> AsyncIterator[Bridges]:
    """Start real pipelines with `await bridges.start(sim, subscriptions, **settings)`; all
    are stopped after the test."""
    made = Bridges(redis_url, tmp_path)
    yield made
    await made.aclose()


@pytest.fixture
def oauth_sim(sim_factory: Callable[..., SimThread]) -> Callable[..., SimThread]:
    """Start a simulator (SimConfig fields as keywords) with a callback on a free local port."""

    def make(**config: Any) -> SimThread:
        config.setdefault("callback_url", f"https://127.0.0.1:{free_port()}")
        return sim_factory(**config)

    return make


@pytest.fixture
def auth_settings() -> Callable[..., Settings]:
    """Settings(sim, token_path, **overrides) pointing at the simulator."""
    return sim_settings


@pytest.fixture
def sim_env() -> Callable[[SimThread, Path], dict[str, str]]:
    """The same settings as environment variables, for subprocesses."""

    def make(sim: SimThread, token_path: Path) -> dict[str, str]:
        return {f"SCHWAB_{k.upper()}": str(v) for k, v in sim_values(sim, token_path).items()}

    return make
