"""Processes sharing one token file: SIGKILL mid-refresh never leaves a broken file, and processes
that need a refresh at the same moment make exactly one refresh between them."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import httpx

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.auth.sim_login import login_against_simulator
from schwab_stream.auth.token_store import TokenStore
from schwab_stream.config import Settings
from schwab_stream.sim.server import SimThread

WORKER = Path(__file__).with_name("token_worker.py")


def spawn(mode: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("SCHWAB_")}
    return subprocess.Popen(
        [sys.executable, str(WORKER), mode],
        env={**base, **env},
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"worker did not start: {line!r} {proc.communicate()[1]}")


def refreshes(sim: SimThread) -> int:
    count: int = httpx.get(f"{sim.base_url}/sim/stats").json()["token_refreshes"]
    return count


async def test_sigkill_during_refresh_loops_never_breaks_the_file(
    oauth_sim: Callable[..., SimThread],
    auth_settings: Callable[..., Settings],
    sim_env: Callable[[SimThread, Path], dict[str, str]],
    tmp_path: Path,
) -> None:
    sim = oauth_sim()
    path = tmp_path / "tokens" / "token.json"
    settings = auth_settings(sim, path)
    first = await login_against_simulator(settings)
    env = sim_env(sim, path)
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    store = TokenStore(path)
    for round_no in range(4):
        workers = [spawn("loop", env, tmp_path) for _ in range(3)]
        for proc in workers:
            wait_ready(proc)
        for proc in workers:
            time.sleep(rng.uniform(0.0, 0.15))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        record = store.load()  # whole, parseable, complete
        context = f"seed {seed}, round {round_no}"
        assert record.refresh_token == first.refresh_token, context
        assert record.login_at == first.login_at, context
        assert sim.state.tokens.is_access_valid(record.access_token), context
    assert refreshes(sim) > 20  # the kills landed among many refreshes

    client = SchwabAuthClient(settings)  # the lock is free again and orphans are swept
    after = await client.refresh(force=True)
    await client.aclose()
    assert store.load() == after
    assert sorted(p.name for p in path.parent.iterdir()) == ["token.json", "token.json.lock"]


async def test_processes_needing_a_refresh_at_once_make_one_refresh(
    oauth_sim: Callable[..., SimThread],
    auth_settings: Callable[..., Settings],
    sim_env: Callable[[SimThread, Path], dict[str, str]],
    tmp_path: Path,
) -> None:
    sim = oauth_sim()
    path = tmp_path / "token.json"
    record = await login_against_simulator(auth_settings(sim, path))
    store = TokenStore(path)
    store.save(replace(record, access_expires_at=time.time() - 1))  # everyone must refresh
    workers = [spawn("once", sim_env(sim, path), tmp_path) for _ in range(4)]
    for proc in workers:
        wait_ready(proc)
    for proc in workers:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    digests = []
    for proc in workers:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        digests.append(out.strip())

    assert refreshes(sim) == 1
    final = store.load()
    assert final.access_token != record.access_token
    assert digests == [hashlib.sha256(final.access_token.encode()).hexdigest()] * 4
