"""Hot standby: a lease in Redis decides which of several `run`s for one Schwab user streams.

Schwab allows one streamer connection per user; a second LOGIN ends the first with code 12. So the
instance that holds `PREFIX:lease` (SET NX PX) streams and renews the lease every ttl/3 with a
compare-and-set script; every other instance waits as a standby holding nothing (no websocket, no
token refresh) and tries to take the lease about once a second. When the active instance dies its
lease expires and a standby takes over within ttl + 1 s. An active instance that finds the lease
held by someone else stops streaming at once.

While Redis is unreachable nobody can take the lease, so the active instance keeps streaming (its
publisher buffers, as in any Redis outage) and keeps trying to renew; if Redis comes back empty
(a restart without persistence) the renew script takes the free lease back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from redis.exceptions import RedisError

from schwab_stream.backoff import Backoff
from schwab_stream.errors import LeaseLost
from schwab_stream.events import Event, encode_event, status_event
from schwab_stream.redis_client import async_redis, topology
from schwab_stream.redis_topology import Kind

log = logging.getLogger(__name__)

#: Renew when we hold it; re-take when it is free (Redis restarted empty); 0 when another holds it.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
#: Delete only our own lease, so a late release never frees a successor's.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
#: How often a standby tries to take the lease, at most (plus jitter).
STANDBY_POLL = 1.0
#: How long a standby stopped mid-try spends giving back a lease that try may have taken.
RELEASE_ON_STOP = 0.3


def new_instance_id() -> str:
    """`host:pid:random`: readable in `GET PREFIX:lease`, unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class StandbyReason(Enum):
    """Why an instance waits instead of streaming."""

    #: Another instance holds the lease: healthy, it takes over when that one dies
    LEASE_HELD = "lease_held"
    #: Redis cannot be reached, so no instance can hold the lease: a person must look
    REDIS_UNREACHABLE = "redis_unreachable"


@dataclass(frozen=True)
class Standby:
    """What a waiting instance reports: the reason as a value, and words for people."""

    reason: StandbyReason
    detail: str


class Lease:
    """`PREFIX:lease` in Redis: acquire (SET NX PX), renew (compare-and-set), release."""

    def __init__(
        self,
        redis_url: str,
        key: str,
        ttl: float,
        instance_id: str | None = None,
    ) -> None:
        self.key = key
        self.ttl = ttl
        self.instance_id = instance_id or new_instance_id()
        # Timeouts well inside the renew interval, so a stalled Redis cannot outlive the lease.
        timeout = max(0.2, ttl / 4)
        self.redis = async_redis(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._ttl_ms = max(1, int(ttl * 1000))
        #: Behind Sentinel a lease written to the primary only is lost if it fails over before
        #: replicating: each write then waits (briefly) for a replica (docs/operations.md)
        self._replicated = topology(redis_url).kind is Kind.SENTINEL
        self._wait_ms = max(1, min(250, self._ttl_ms // 8))
        self._unreplicated_said = False

    async def try_acquire(self) -> bool:
        """Take the lease if it is free, or find it already ours; raises RedisError/OSError when
        Redis is unreachable."""
        return (await self._attempt())[0]

    async def _attempt(self) -> tuple[bool, str | None]:
        """(ours, holder): SET NX, and when that finds the lease held, who holds it. An earlier
        SET NX whose answer we never read (our client timed out while Redis stalled, and Redis ran
        it afterwards) leaves the lease holding our own id: that is ours, not another's."""
        if await self.redis.set(self.key, self.instance_id, nx=True, px=self._ttl_ms):
            await self._replicate()
            return True, self.instance_id
        holder = await self.holder()
        return holder == self.instance_id, holder

    async def renew(self) -> bool:
        """Extend our lease (or take it back if it is free); False when another instance has it."""
        result = await self.redis.eval(_RENEW, 1, self.key, self.instance_id, self._ttl_ms)
        if result:
            await self._replicate()
        return bool(result)

    async def _replicate(self) -> None:
        """Wait for a replica to hold the lease write (Sentinel only). One that does not answer
        in time is said once: a failover then may lose the lease, and the standby may take it;
        Schwab's one-connection rule (code 12) ends the older session at once."""
        if not self._replicated:
            return
        acked = await self.redis.execute_command("WAIT", 1, self._wait_ms)  # type: ignore[no-untyped-call]
        if int(acked) < 1 and not self._unreplicated_said:
            self._unreplicated_said = True
            log.warning(
                "the lease is not on a replica within %d ms: a failover now could lose it",
                self._wait_ms,
            )
        elif int(acked) >= 1:
            self._unreplicated_said = False

    async def holder(self) -> str | None:
        value = await self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else None

    async def release(self) -> None:
        """Give the lease up (best effort) so a standby takes over at once, not after the TTL."""
        with contextlib.suppress(RedisError, OSError):
            await self.redis.eval(_RELEASE, 1, self.key, self.instance_id)

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def wait_until_acquired(
        self, stop: asyncio.Event, on_standby: Callable[[Standby], None]
    ) -> bool:
        """Try until the lease is ours (True) or `stop` is set (False).

        `on_standby` is told when waiting starts and whenever the reason changes (another
        instance holds the lease; Redis is unreachable), so the user hears each once.
        """
        said: StandbyReason | None = None
        poll = min(STANDBY_POLL, self.ttl / 3)
        jitter = Backoff(poll, poll, jitter=0.2)  # spread the instances' tries
        while not stop.is_set():
            try:
                attempt = await self._attempt_unless(stop)
                if attempt is None:
                    return False
                ours, holder = attempt
                if ours:
                    return True
                standby = Standby(
                    StandbyReason.LEASE_HELD,
                    f"another instance holds the lease: {holder or 'just freed'}",
                )
            except (RedisError, OSError) as exc:
                standby = Standby(
                    StandbyReason.REDIS_UNREACHABLE,
                    f"redis is unreachable ({type(exc).__name__}: {exc}); not streaming without "
                    "a lease",
                )
            if standby.reason is not said:
                said = standby.reason
                on_standby(standby)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), jitter.next())
        return False

    async def _attempt_unless(self, stop: asyncio.Event) -> tuple[bool, str | None] | None:
        """`_attempt`, or None as soon as `stop` is set: a stop must not wait out a stalled or
        unreachable Redis (up to ttl/4 a try). An attempt cut short may have taken the lease all
        the same, so it is given back, briefly, best effort."""
        attempt = asyncio.ensure_future(self._attempt())
        stopped = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if not stop.is_set():
            return attempt.result()
        attempt.cancel()
        with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
            await attempt
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.release(), RELEASE_ON_STOP)
        return None

    async def hold(self) -> None:
        """Renew every ttl/3 while streaming; raises LeaseLost when another instance has it.

        A renew that fails because Redis is unreachable is retried quickly (so after a Redis
        restart we take our free lease back before a standby does); streaming goes on meanwhile.
        """
        interval = self.ttl / 3
        retry = min(0.5, interval / 2)
        failing_since: float | None = None
        while True:
            await asyncio.sleep(interval if failing_since is None else retry)
            try:
                ours = await self.renew()
            except (RedisError, OSError) as exc:
                if failing_since is None:
                    failing_since = time.monotonic()
                    log.warning(
                        "cannot renew the lease (%s: %s); streaming on, retrying",
                        type(exc).__name__,
                        exc,
                    )
                continue
            if failing_since is not None and ours:
                log.info("lease renewed again after %.1f s", time.monotonic() - failing_since)
            failing_since = None
            if not ours:
                holder = await self._holder_or_unknown()
                raise LeaseLost(f"the lease is now held by {holder}")

    async def _holder_or_unknown(self) -> str:
        try:
            return await self.holder() or "nobody"
        except (RedisError, OSError):
            return "another instance"


class StandbyReporter:
    """The `EventSink` of a waiting instance: its status events go straight to `PREFIX:status`.

    A standby does not run the publisher: its heartbeat key would tell consumers a bridge is
    delivering when none is. Events go out best effort, in the background (Redis may be the
    reason we wait); `aclose` waits for the writes under way.
    """

    def __init__(self, lease: Lease, status_key: str, maxlen: int) -> None:
        self.lease = lease
        self.status_key = status_key
        self.maxlen = maxlen
        self._writes: set[asyncio.Task[None]] = set()

    def submit(self, events: list[Event]) -> None:
        task = asyncio.get_running_loop().create_task(self._write(events))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        self.submit([status_event(state, detail, code, instance=self.lease.instance_id, **info)])

    async def _write(self, events: list[Event]) -> None:
        with contextlib.suppress(RedisError, OSError):
            for event in events:
                await self.lease.redis.xadd(
                    self.status_key,
                    {"data": encode_event(event)},
                    maxlen=self.maxlen,
                    approximate=True,
                )

    async def aclose(self) -> None:
        if self._writes:
            await asyncio.wait(self._writes, timeout=2.0)
