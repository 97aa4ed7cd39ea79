"""A SIGTERM or Ctrl-C at any point of `run`'s start-up stops it at once, before it connects or logs
in (issue #14, weak: it used to connect, log in and subscribe, and took 5 s). A real `run` process
against the simulator and Redis; the simulator's own counters say whether it saw a connection or a
LOGIN."""

from __future__ import annotations

import contextlib
import dataclasses
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from schwab_stream.auth.token_store import TokenStore
from schwab_stream.sim.server import SimThread

from .fault_helpers import run_env, spawn_run
from .pipeline_helpers import token_lock_held, write_tokens

AAPL = ("--subscribe", "LEVELONE_EQUITIES=AAPL")
#: A stop must end the process within this long of the signal.
PROMPT = 1.0


def sim_stats(sim: SimThread) -> dict[str, int]:
    stats: dict[str, int] = httpx.get(f"{sim.base_url}/sim/stats").json()
    return stats


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 15.0) -> str:
    """Read stderr until a line holding `needle`; what was read so far."""
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0 and proc.poll() is None, f"no {needle!r} within {timeout} s: {seen}"
        ready, _, _ = select.select([proc.stderr], [], [], left)
        if ready:
            seen += proc.stderr.readline()
    return seen


def stop_and_time(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> tuple[int, float, str]:
    """Signal `proc`; its exit code, how long it took to end, and the rest of its stderr."""
    started = time.monotonic()
    proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, time.monotonic() - started, err


def assert_stopped_at_once(sim: SimThread, code: int, took: float, err: str) -> None:
    """Exit 0 (the clean stop) within `PROMPT`, and Schwab never saw it."""
    assert code == 0, err
    assert took < PROMPT, (took, err)
    assert_never_streamed(sim, err)


def assert_never_streamed(sim: SimThread, err: str) -> None:
    stats = sim_stats(sim)
    assert stats["logins"] == 0 and stats["connections"] == 0, stats
    assert "Traceback" not in err, err


@pytest.fixture
def spawn(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> Iterator[Callable[..., tuple[SimThread, subprocess.Popen[str]]]]:
    """Start a `run` process, logged in, on a fresh simulator; `redis_url=` another Redis."""
    procs: list[subprocess.Popen[str]] = []

    def start(
        before: Callable[[], None] | None = None, **extra: str
    ) -> tuple[SimThread, subprocess.Popen[str]]:
        sim = sim_factory(rate=20)
        token_path = tmp_path / "token.json"
        write_tokens(sim, token_path)
        if before is not None:
            before()
        url = extra.pop("redis_url", redis_url)
        proc = spawn_run(run_env(sim, url, token_path, **extra), tmp_path, *AAPL)
        procs.append(proc)
        return sim, proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def catches(pid: int, sig: int) -> bool:
    """The process has a handler of its own for `sig` (SigCgt in /proc): for SIGTERM, which
    Python leaves alone, that means `run`'s first line has run."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    return False


def test_a_sigterm_before_any_line_of_ours_ends_it_at_once(
    spawn: Callable[..., tuple[SimThread, subprocess.Popen[str]]],
) -> None:
    """Before Python has run a line of `run` the signal's own action applies: SIGTERM ends the
    process (a clean stop to systemd), promptly and before it connects."""
    sim, proc = spawn()
    code, took, err = stop_and_time(proc)
    assert code in (0, -signal.SIGTERM), err
    assert took < PROMPT, (took, err)
    assert_never_streamed(sim, err)


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1, 0.2])
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_at_any_point_of_start_up_exits_0_at_once_and_never_connects(
    spawn: Callable[..., tuple[SimThread, subprocess.Popen[str]]], delay: float, sig: int
) -> None:
    """From `run`'s first line on (settings, imports, the parts, the loop starting, the lease):
    exit 0, the clean stop, within a second, and Schwab never sees a connection."""
    sim, proc = spawn()
    deadline = time.monotonic() + 10
    while not catches(proc.pid, signal.SIGTERM):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.002)
    time.sleep(delay)
    assert_stopped_at_once(sim, *stop_and_time(proc, sig))


def test_a_stop_while_waiting_for_the_lease_ends_at_once(
    spawn: Callable[..., tuple[SimThread, subprocess.Popen[str]]], redis_url: str
) -> None:
    held = redis.Redis.from_url(redis_url)
    held.set("schwab:lease", "another-instance", px=60_000)
    sim, proc = spawn()
    wait_for_line(proc, "standby: another instance holds the lease")
    assert_stopped_at_once(sim, *stop_and_time(proc))
    assert held.get("schwab:lease") == b"another-instance"  # not ours to free
    held.close()


def test_a_stop_while_a_stalled_redis_has_the_lease_try_ends_at_once(
    spawn: Callable[..., tuple[SimThread, subprocess.Popen[str]]],
) -> None:
    """A Redis that accepts the connection and never answers: each try of the lease waits its
    timeout (2.5 s at the default TTL). A stop in the middle of one does not wait it out."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the backlog accepts, nobody reads
        port = silent.getsockname()[1]
        sim, proc = spawn(redis_url=f"redis://127.0.0.1:{port}/0")
        wait_for_line(proc, "standby: redis is unreachable")  # the first try timed out
        time.sleep(2.0)  # the next try (after ~1 s) is waiting on the silent socket now
        assert_stopped_at_once(sim, *stop_and_time(proc))


def test_a_stop_while_connecting_does_not_finish_the_connect(
    spawn: Callable[..., tuple[SimThread, subprocess.Popen[str]]], tmp_path: Path
) -> None:
    """Active, and its first connect waits on the token lock (the access token has expired and
    another process holds the lock): a stop ends it at once instead of connecting, logging in and
    subscribing first."""
    token_path = tmp_path / "token.json"
    with contextlib.ExitStack() as held:

        def expire_and_hold_the_lock() -> None:
            store = TokenStore(token_path)
            store.save(dataclasses.replace(store.load(), access_expires_at=time.time() - 10))
            held.enter_context(token_lock_held(store.lock_path))

        sim, proc = spawn(before=expire_and_hold_the_lock)
        wait_for_line(proc, "active: holding the lease")
        time.sleep(0.5)  # connecting: userPreference wants a fresh token, the refresh the lock
        outcome = stop_and_time(proc)
    assert_stopped_at_once(sim, *outcome)
