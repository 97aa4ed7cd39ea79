"""Helpers for the fault and standby suites: pipelines on the simulator, and what a user would see
of them (status events, metrics, the events in Redis)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from schwab_stream.events import TickEvent
from schwab_stream.pipeline import Pipeline
from schwab_stream.sim.server import SimThread
from tests.env import clean_env

from .pipeline_helpers import make_settings, statuses, stream, write_tokens


class Bridge:
    """One pipeline task and a Redis client to look at what it wrote."""

    def __init__(self, pipeline: Pipeline, task: asyncio.Task[int], redis: aioredis.Redis) -> None:
        self.pipeline = pipeline
        self.task = task
        self.redis = redis

    async def states(self) -> list[str]:
        return [s.state for s in await statuses(self.redis)]

    async def has_state(self, state: str, n: int = 1) -> bool:
        return (await self.states()).count(state) >= n

    async def ticks(self, symbol: str) -> list[TickEvent]:
        events = await stream(self.redis, f"schwab:tick:{symbol}")
        return [e for e in events if isinstance(e, TickEvent)]

    def metric(self, name: str, **labels: str) -> float:
        """A sample of the pipeline's own Prometheus registry, after copying the counters in."""
        self.pipeline.telemetry.sync()
        value = self.pipeline.metrics.registry.get_sample_value(f"schwab_stream_{name}", labels)
        return 0.0 if value is None else float(value)

    async def stop(self) -> int:
        self.pipeline.stop()
        return await asyncio.wait_for(self.task, 15)


class Bridges:
    """Starts bridges on one Redis and token folder; `aclose` stops whatever is still running."""

    def __init__(self, redis_url: str, tmp_path: Path) -> None:
        self.redis_url = redis_url
        self.tmp_path = tmp_path
        self.running: list[Bridge] = []

    async def start(self, sim: SimThread, subs: dict[str, list[str]], **overrides: Any) -> Bridge:
        token_path = overrides.pop("token_path", None)
        if token_path is None:  # logged in; pass token_path to start without a login
            token_path = self.tmp_path / "token.json"
            if not token_path.exists():
                write_tokens(sim, token_path)
        redis_url = overrides.pop("redis_url", self.redis_url)
        settings = make_settings(sim, redis_url, token_path, **overrides)
        pipeline = Pipeline.from_settings(settings, subs)
        task = asyncio.create_task(pipeline.run())
        bridge = Bridge(pipeline, task, aioredis.Redis.from_url(self.redis_url))
        self.running.append(bridge)
        return bridge

    async def aclose(self) -> None:
        for bridge in self.running:
            if not bridge.task.done():
                await bridge.stop()
            await bridge.redis.aclose()


def assert_contiguous(seqs: list[int]) -> None:
    """Every event between the first and the last reached Redis: nothing lost on our side."""
    assert seqs, "no events"
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def run_env(sim: SimThread, redis_url: str, token_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a `schwab-stream` subprocess: the test's settings, none of the shell's."""
    env = clean_env()
    env.update(
        {
            "SCHWAB_APP_KEY": sim.config.app_key,
            "SCHWAB_APP_SECRET": sim.config.app_secret,
            "SCHWAB_API_BASE_URL": sim.base_url,
            "SCHWAB_TOKEN_PATH": str(token_path),
            "REDIS_URL": redis_url,
            "SCHWAB_LOG_FORMAT": "json",
            **extra,
        }
    )
    return env


def spawn_run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "run", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, str]:
    """Signal a process (unless it has ended) and collect its exit code and stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    return proc.returncode, err
