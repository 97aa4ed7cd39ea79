"""The hot-standby lease's logic against a fake Redis: what a stall leaves behind.

A Redis stall (a fork, a slow disk, SIGSTOP) lets a client time out on a command that Redis still
runs afterwards. The real-Redis version of these cases is in tests/integration/test_standby.py.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from schwab_stream.errors import LeaseLost
from schwab_stream.standby import Lease, Standby, StandbyReason


class StallingRedis:
    """Holds one key. `stall_next` commands time out on the client yet still run (late)."""

    def __init__(self) -> None:
        self.value: str | None = None
        self.stall_next = 0
        self.renew_answers: list[int] = []

    def _stalled(self) -> bool:
        if self.stall_next:
            self.stall_next -= 1
            return True
        return False

    async def set(self, key: str, value: str, nx: bool, px: int) -> bool | None:
        took = self.value is None
        if took:
            self.value = value
        if self._stalled():
            raise RedisTimeoutError("Timeout reading from socket")
        return True if took else None

    async def get(self, key: str) -> bytes | None:
        return None if self.value is None else self.value.encode()

    async def eval(self, script: str, numkeys: int, *args: object) -> int:
        if self._stalled():
            raise RedisTimeoutError("Timeout reading from socket")
        return self.renew_answers.pop(0)

    async def aclose(self) -> None:
        pass


def _lease(fake: StallingRedis, instance_id: str, ttl: float = 2.0) -> Lease:
    lease = Lease("redis://127.0.0.1:1/0", "t:lease", ttl=ttl, instance_id=instance_id)
    lease.redis = fake  # type: ignore[assignment]
    return lease


async def test_a_timed_out_acquire_that_redis_ran_later_is_recognised_as_ours() -> None:
    fake = StallingRedis()
    fake.stall_next = 1  # our SET NX runs, its answer is lost
    lease = _lease(fake, "me")
    told: list[Standby] = []
    acquired = await asyncio.wait_for(lease.wait_until_acquired(asyncio.Event(), told.append), 3)
    assert acquired and fake.value == "me"
    assert [s.reason for s in told] == [StandbyReason.REDIS_UNREACHABLE]
    assert not any("holds the lease: me" in s.detail for s in told)


async def test_try_acquire_finds_its_own_lease_and_not_another() -> None:
    fake = StallingRedis()
    fake.value = "me"
    assert await _lease(fake, "me").try_acquire()
    assert not await _lease(fake, "other").try_acquire()
    assert fake.value == "me"


async def test_a_renew_that_finds_another_holder_raises_without_saying_renewed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    fake = StallingRedis()
    fake.value = "standby"
    fake.stall_next = 2
    fake.renew_answers = [0]
    lease = _lease(fake, "me", ttl=0.3)
    with pytest.raises(LeaseLost, match="held by standby"):
        await asyncio.wait_for(lease.hold(), 3)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("cannot renew the lease" in m for m in lines) == 1
    assert not any("renewed again" in m for m in lines), lines


async def test_a_renew_that_succeeds_after_failures_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    fake = StallingRedis()
    fake.value = "me"
    fake.stall_next = 1
    fake.renew_answers = [1, 1, 0]
    with pytest.raises(LeaseLost):
        await asyncio.wait_for(_lease(fake, "me", ttl=0.3).hold(), 3)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("renewed again" in m for m in lines) == 1
