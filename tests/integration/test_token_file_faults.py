"""A token file that cannot be used for a while (the lock held by a stuck process, a full disk)
during a reconnect that needs a refresh: the tokens are fine, so the bridge must not wait for a new
login. It says what is wrong once and streams again within seconds of the cause going away."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from schwab_stream.auth import token_store
from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.sim.server import SimThread

from .fault_helpers import Bridges
from .pipeline_helpers import sim_post, sim_stats, wait_for, xlen_at_least

AAPL = {"LEVELONE_EQUITIES": ["AAPL"]}

_HOLD_LOCK = """
import sys, time, filelock
lock = filelock.FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


def _warnings(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if needle in r.getMessage() and r.levelno >= logging.WARNING
    ]


async def _expire_and_drop(sim: SimThread) -> None:
    """Schwab stops honouring the access token and the connection drops: the reconnect's
    userPreference answers 401, so it must refresh, which needs the token file."""
    await sim_post(sim, "/sim/tokens/expire-access")
    await sim_post(sim, "/sim/fault/drop")


async def test_a_token_lock_held_by_another_process_is_retried_not_a_login(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    monkeypatch.setattr(token_store, "LOCK_TIMEOUT", 0.5)  # 60 s in production
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, AAPL)
    await wait_for(lambda: bridge.has_state("subscribed"))
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(bridge.pipeline.auth.store.lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "held\n"
        await _expire_and_drop(sim)
        await asyncio.sleep(3.0)  # the reconnect, several retries, each waiting out the lock
        assert "login_needed" not in await bridge.states()
        assert await bridge.has_state("token_file_unavailable")
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(5)
    freed = asyncio.get_running_loop().time()
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=5)
    assert asyncio.get_running_loop().time() - freed < 3.0  # one retry (<= 5 s cap, jittered)
    n = await bridge.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))
    states = await bridge.states()
    assert "login_needed" not in states
    assert states.count("token_file_unavailable") == 1
    said = _warnings(caplog, "token_file_unavailable")
    assert len(said) == 1 and "lock_busy" in said[0] and "token lock" in said[0]
    assert await bridge.stop() == 0


async def test_a_full_disk_during_a_refresh_is_retried_not_a_login(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, AAPL)
    await wait_for(lambda: bridge.has_state("subscribed"))
    full = True
    write = TokenStore._write

    def write_unless_full(self: TokenStore, record: TokenRecord) -> None:
        if full:
            raise OSError(errno.ENOSPC, "No space left on device")
        write(self, record)

    monkeypatch.setattr(TokenStore, "_write", write_unless_full)
    await _expire_and_drop(sim)
    await asyncio.sleep(2.0)  # the reconnect, its refresh, a few retries
    assert "login_needed" not in await bridge.states()
    assert await bridge.has_state("token_file_unavailable")
    full = False
    freed = asyncio.get_running_loop().time()
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=8)
    assert asyncio.get_running_loop().time() - freed < 6.0  # the next retry: at most 5 s
    n = await bridge.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))
    states = await bridge.states()
    assert "login_needed" not in states
    assert states.count("token_file_unavailable") == 1
    said = _warnings(caplog, "token_file_unavailable")
    assert len(said) == 1 and "write_failed" in said[0] and "No space left" in said[0]
    assert (await sim_stats(sim))["token_refreshes"] >= 2  # Schwab answered; only saving failed
    access_left = bridge.pipeline.auth.token_seconds_left()[0]
    assert access_left is not None and access_left > 1700  # the new token, saved this time
    assert await bridge.stop() == 0


async def test_a_busy_token_lock_near_expiry_streams_on_the_token_it_has(
    sim_factory: Callable[..., SimThread],
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The access token is due for its refresh (inside the margin) but still valid when a
    reconnect finds the token lock busy: the reconnect uses the token it has, as after a failed
    refresh at Schwab, instead of retrying or waiting for a login."""
    caplog.set_level(logging.INFO, logger="schwab_stream")
    monkeypatch.setattr(token_store, "LOCK_TIMEOUT", 0.3)
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, AAPL)
    await wait_for(lambda: bridge.has_state("subscribed"))
    auth = bridge.pipeline.auth
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(auth.store.lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.to_thread(holder.stdout.readline) == "held\n"
        record = auth._record
        assert record is not None  # due in 200 s: inside the 300 s margin, valid at Schwab
        auth._record = dataclasses.replace(record, access_expires_at=time.time() + 200)
        await sim_post(sim, "/sim/fault/drop")
        await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=5)
        n = await bridge.redis.xlen("schwab:tick:AAPL")
        await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(5)
    states = await bridge.states()
    assert "login_needed" not in states and "token_file_unavailable" not in states
    assert any("the current access token has" in m for m in _warnings(caplog, "token lock"))
    assert await bridge.stop() == 0
