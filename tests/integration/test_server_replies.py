"""What each server says when it refuses the publisher's writes reaches the gap event in one
form: Redis 6.2 wraps an error met inside a script (`@user_script: 18: -OOM ...\r\n`) where
Redis 7 and Valkey pass it on, and words a missing permission otherwise (#21). Run on every
server of the suite, like every Redis-facing test."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import BarEvent, StatusEvent, decode_event
from schwab_stream.publish.redis import TradingEventPublisher


async def _gap_reason(
    url: str, admin: aioredis.Redis, prefix: str, allow: Callable[[], Awaitable[object]]
) -> str:
    """Publish one bar through `url` until Redis refuses it, lift the refusal (`allow`), and
    return the reason of the gap event written then."""
    pub = TradingEventPublisher(url, prefix=prefix, maxlen=1000)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit([BarEvent(service="CHART_EQUITY", symbol="AAPL", seq=1, recv_ns=time.time_ns())])
        deadline = time.monotonic() + 5
        while pub.stats.redis_errors == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not pub.redis_ok
        await allow()
        assert await pub.flush(10)
    finally:
        await pub.close()
        await task
    status = [decode_event(f[b"data"]) for _, f in await admin.xrange(f"{prefix}:status")]
    gaps = [e for e in status if isinstance(e, StatusEvent) and e.state == "gap"]
    assert len(gaps) == 1
    return str(gaps[0].info["reason"])


async def test_out_of_memory_in_the_script_is_the_same_reason_on_every_server(
    redis_url: str,
) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    await admin.config_set("maxmemory", "1")
    try:
        reason = await _gap_reason(
            redis_url, admin, "oom", lambda: admin.config_set("maxmemory", "0")
        )
    finally:
        await admin.config_set("maxmemory", "0")
        await admin.aclose()
    assert reason == "ResponseError: OOM command not allowed when used memory > 'maxmemory'."


async def test_no_permission_in_the_script_is_nopermission_on_every_server(
    redis_server: EmbeddedRedis, redis_url: str
) -> None:
    admin = aioredis.Redis.from_url(redis_url)
    await admin.execute_command(
        "ACL", "SETUSER", "noxadd2", "on", ">pw", "~*", "&*", "+@all", "-xadd"
    )
    url = f"redis://noxadd2:pw@127.0.0.1:{redis_server.port}/0"
    try:
        reason = await _gap_reason(
            url, admin, "np", lambda: admin.execute_command("ACL", "SETUSER", "noxadd2", "+xadd")
        )
    finally:
        await admin.execute_command("ACL", "DELUSER", "noxadd2")
        await admin.aclose()
    assert reason.startswith("ResponseError: NOPERM ") and "\n" not in reason, reason
