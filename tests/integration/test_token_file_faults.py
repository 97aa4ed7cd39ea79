"""A token file that cannot be used for a while (the lock held by a stuck process, a full disk)
during a reconnect that needs a refresh: the tokens are fine, so the bridge must not wait for a new
login. It says what is wrong once and streams again within seconds of the cause going away."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import logging
import time
from collections.abc import Callable

import pytest

from schwab_stream.auth import token_store
from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.sim.server import SimThread

from .fault_helpers import Bridge, Bridges
from .pipeline_helpers import sim_post, sim_stats, token_lock_held, wait_for, xlen_at_least

AAPL = {"LEVELONE_EQUITIES": ["AAPL"]}


@pytest.fixture
async def subscribed(
    sim_factory: Callable[..., SimThread], bridges: Bridges, caplog: pytest.LogCaptureFixture
) -> tuple[SimThread, Bridge]:
    """A bridge streaming AAPL from its simulator, its INFO lines captured."""
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = sim_factory(rate=20)
    bridge = await bridges.start(sim, AAPL)
    await wait_for(lambda: bridge.has_state("subscribed"))
    return sim, bridge


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


async def _streams_again(bridge: Bridge) -> None:
    n = await bridge.redis.xlen("schwab:tick:AAPL")
    await wait_for(lambda: xlen_at_least(bridge.redis, "schwab:tick:AAPL", n + 3))


async def _said_once_never_a_login(
    bridge: Bridge, caplog: pytest.LogCaptureFixture, *words: str
) -> None:
    """One `token_file_unavailable` event and one warning holding `words`; no login_needed."""
    states = await bridge.states()
    assert "login_needed" not in states
    assert states.count("token_file_unavailable") == 1
    said = _warnings(caplog, "token_file_unavailable")
    assert len(said) == 1 and all(word in said[0] for word in words), said


async def test_a_token_lock_held_by_another_process_is_retried_not_a_login(
    subscribed: tuple[SimThread, Bridge],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(token_store, "LOCK_TIMEOUT", 0.5)  # 60 s in production
    sim, bridge = subscribed
    with token_lock_held(bridge.pipeline.auth.store.lock_path):
        await _expire_and_drop(sim)
        await asyncio.sleep(3.0)  # the reconnect, several retries, each waiting out the lock
        assert "login_needed" not in await bridge.states()
        assert await bridge.has_state("token_file_unavailable")
    freed = asyncio.get_running_loop().time()
    await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=5)
    assert asyncio.get_running_loop().time() - freed < 3.0  # one retry (<= 5 s cap, jittered)
    await _streams_again(bridge)
    await _said_once_never_a_login(bridge, caplog, "lock_busy", "token lock")
    assert await bridge.stop() == 0


async def test_a_full_disk_during_a_refresh_is_retried_not_a_login(
    subscribed: tuple[SimThread, Bridge],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sim, bridge = subscribed
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
    await _streams_again(bridge)
    await _said_once_never_a_login(bridge, caplog, "write_failed", "No space left")
    assert (await sim_stats(sim))["token_refreshes"] >= 2  # Schwab answered; only saving failed
    access_left = bridge.pipeline.auth.token_seconds_left()[0]
    assert access_left is not None and access_left > 1700  # the new token, saved this time
    assert await bridge.stop() == 0


async def test_a_busy_token_lock_near_expiry_streams_on_the_token_it_has(
    subscribed: tuple[SimThread, Bridge],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The access token is due for its refresh (inside the margin) but still valid when a
    reconnect finds the token lock busy: the reconnect uses the token it has, as after a failed
    refresh at Schwab, instead of retrying or waiting for a login."""
    monkeypatch.setattr(token_store, "LOCK_TIMEOUT", 0.3)
    sim, bridge = subscribed
    auth = bridge.pipeline.auth
    with token_lock_held(auth.store.lock_path):
        record = auth._record
        assert record is not None  # due in 200 s: inside the 300 s margin, valid at Schwab
        auth._record = dataclasses.replace(record, access_expires_at=time.time() + 200)
        await sim_post(sim, "/sim/fault/drop")
        await wait_for(lambda: bridge.has_state("subscribed", 2), timeout=5)
        await _streams_again(bridge)
    states = await bridge.states()
    assert "login_needed" not in states and "token_file_unavailable" not in states
    assert any("the current access token has" in m for m in _warnings(caplog, "token lock"))
    assert await bridge.stop() == 0
