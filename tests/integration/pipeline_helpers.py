"""Helpers for end-to-end tests: tokens from the simulator, settings, and reading Redis back."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.config import Settings
from schwab_stream.events import Event, StatusEvent, decode_event
from schwab_stream.sim.server import SimThread


def write_tokens(sim: SimThread, path: Path) -> TokenRecord:
    """A browser login against the simulator's authority, saved where the streamer looks."""
    access, refresh = sim.state.tokens.login()
    now = time.time()
    record = TokenRecord(
        access_token=access,
        refresh_token=refresh,
        access_expires_at=now + sim.config.access_ttl,
        login_at=now,
        refresh_expires_at=now + sim.config.refresh_ttl,
    )
    TokenStore(path).save(record)
    return record


def sim_values(sim: SimThread, token_path: Path) -> dict[str, Any]:
    """The settings that aim at a simulator: its app, its URLs, a token file of the test's."""
    return {
        "app_key": sim.config.app_key,
        "app_secret": sim.config.app_secret,
        "callback_url": sim.config.callback_url,
        "api_base_url": sim.base_url,
        "token_path": token_path,
    }


def sim_settings(sim: SimThread, token_path: Path, **overrides: Any) -> Settings:
    """Settings aimed at the simulator that ignore the developer's `.env` and shell."""
    return Settings(_env_file=None, **{**sim_values(sim, token_path), **overrides})  # type: ignore[call-arg]


def make_settings(sim: SimThread, redis_url: str, token_path: Path, **overrides: Any) -> Settings:
    """A bridge's settings: the simulator, this Redis, and short timeouts so faults show fast."""
    quick = {"watchdog_seconds": 3.0, "command_timeout": 3.0, "reconnect_max_delay": 1.0}
    return sim_settings(sim, token_path, redis_url=redis_url, **{**quick, **overrides})


async def stream(client: aioredis.Redis, key: str) -> list[Event]:
    entries = await client.xrange(key)
    return [decode_event(fields[b"data"]) for _, fields in entries]


async def statuses(client: aioredis.Redis, prefix: str = "schwab") -> list[StatusEvent]:
    return [e for e in await stream(client, f"{prefix}:status") if isinstance(e, StatusEvent)]


async def wait_for(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05
) -> Any:
    """Poll an async or sync predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def xlen_at_least(client: aioredis.Redis, key: str, n: int) -> bool:
    """For `wait_for`: the stream holds `n` entries or more."""
    return int(await client.xlen(key)) >= n


async def sim_post(sim: SimThread, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        response = await http.post(path)
        response.raise_for_status()
        return response


async def sim_stats(sim: SimThread) -> dict[str, int]:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        stats: dict[str, int] = (await http.get("/sim/stats")).json()
        return stats


_HOLD_LOCK = """
import sys, filelock
lock = filelock.FileLock(sys.argv[1])
lock.acquire()
print("held", flush=True)
sys.stdin.read()  # until the test closes our stdin
"""


@contextlib.contextmanager
def token_lock_held(lock_path: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process (a stuck refresh, say) holds the token lock until the block ends."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(lock_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(5)


README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet(marker: str) -> str:
    """The ```python block right after `<!-- MARKER -->` in the README: tests run the README's
    own code, so it cannot drift."""
    match = re.search(
        rf"<!-- {re.escape(marker)} -->\n```python\n(.*?)\n```", README.read_text(), re.DOTALL
    )
    assert match, f"README.md has no {marker} snippet"
    return match.group(1)
