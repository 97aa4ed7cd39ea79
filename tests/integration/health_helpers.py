"""What an operator sees of a bridge whose Redis topology is wrong or away (#18): its `/healthz`
over HTTP, and its log lines."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import Any

import aiohttp
import pytest

from schwab_stream.embedded_redis import free_port

from .fault_helpers import Bridge
from .pipeline_helpers import wait_for


def watched() -> dict[str, Any]:
    """Settings for a bridge whose `/healthz` a test reads: served, and a short Redis grace."""
    return {"metrics_port": free_port(), "redis_unhealthy_seconds": 1.0}


async def healthz(bridge: Bridge) -> tuple[int, dict[str, Any]]:
    server = bridge.pipeline.metrics_server
    assert server is not None, "the bridge serves no /healthz (metrics_port)"
    async with aiohttp.ClientSession() as session, session.get(server.url + "/healthz") as resp:
        return resp.status, await resp.json()


async def wait_healthz(
    bridge: Bridge, status: int, cause: str | None = None, timeout: float = 30.0
) -> dict[str, Any]:
    """Until `/healthz` answers `status` (and names `cause`); its body."""
    seen: list[Any] = []

    async def answers() -> dict[str, Any] | None:
        if bridge.pipeline.metrics_server is None:
            return None  # (not started yet)
        code, body = await healthz(bridge)
        seen[:] = [code, body]
        about_redis = body["reason"].startswith(("redis unreachable", "standby: redis"))
        if code == status and (cause is None or (body["redis_cause"] == cause and about_redis)):
            return body
        return None

    try:
        body: dict[str, Any] = await wait_for(answers, timeout=timeout, interval=0.2)
    except AssertionError:
        raise AssertionError(f"/healthz never answered {status} {cause}; last: {seen}") from None
    return body


async def said_once(caplog: pytest.LogCaptureFixture, words: str) -> str:
    """The one `/healthz unhealthy` line holding `words` (said within a second or two of
    `/healthz` turning: the bridge looks once a second); and no line of the bridge's was a
    traceback or was said over and over (each at most twice: once, and again after a return)."""

    def lines() -> list[str]:
        return [
            m
            for m in (r.getMessage() for r in caplog.records)
            if m.startswith("/healthz unhealthy: redis unreachable for ") and words in m
        ]

    with contextlib.suppress(AssertionError):
        await wait_for(lines, timeout=5)
    assert len(lines()) == 1, lines()
    loud = [r for r in caplog.records if r.levelno >= 30 and r.name.startswith("schwab_stream")]
    assert not [r for r in loud if r.exc_info], [r.getMessage() for r in loud if r.exc_info]
    repeats = {m: n for m, n in Counter(r.getMessage() for r in loud).items() if n > 2}
    assert not repeats, repeats
    return lines()[0]
