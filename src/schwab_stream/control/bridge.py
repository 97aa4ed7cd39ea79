"""The running bridge's side of live subscriptions: read requests from Redis, apply them to the
stream client, answer, expire leases, and publish what `subscriptions` shows.

I/O only: who holds what is `holds`, when a request is answered is `answers`, and what goes on
the wire is the stream client's `SubscriptionBook`. Redis being away never stops the stream: the
loop says so once, keeps the wanted set it has, and catches up when Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

import msgspec
from redis.exceptions import RedisError

from schwab_stream.backoff import Backoff
from schwab_stream.control import answers
from schwab_stream.control.holds import (
    SETTINGS_HOLDER,
    Answer,
    ControlKeys,
    Hold,
    HoldKind,
    InvalidRequest,
    Request,
    encode,
    hold_field,
    holders,
    read_holds,
    read_request,
    wanted,
)
from schwab_stream.redis_client import async_redis, is_cluster
from schwab_stream.sink import EventSink
from schwab_stream.stream.subscriptions import SubscriptionBook

log = logging.getLogger(__name__)

#: How long an answer waits in Redis for the command that asked (it waits at most its timeout).
ANSWER_TTL_MS = 60_000
#: The bridge's view in Redis expires unless refreshed this often: a missing view means no bridge.
STATE_TTL_MS = 5_000
#: How often leases are checked and the view refreshed.
TICK_SECONDS = 1.0
#: XREAD BLOCK: bounds how late a stop is noticed.
READ_BLOCK_MS = 1000
#: Distinct invalid-request messages logged (each once).
_MAX_SAID = 64


class Client(Protocol):
    """What the loop needs of the stream client."""

    @property
    def book(self) -> SubscriptionBook: ...
    @property
    def book_changed(self) -> asyncio.Event: ...
    def want(self, wanted: Mapping[str, list[str]]) -> dict[str, tuple[list[str], list[str]]]: ...


class ControlLoop:
    def __init__(
        self,
        redis_url: str,
        prefix: str,
        client: Client,
        pinned: Mapping[str, list[str]],
        sink: EventSink,
    ) -> None:
        self.keys = ControlKeys(prefix, cluster=is_cluster(redis_url))
        self.client = client
        self.pinned = {service: list(keys) for service, keys in pinned.items()}
        self.sink = sink
        self.redis = async_redis(redis_url, socket_connect_timeout=2.0)
        self.holds: list[Hold] = []
        self._pending: list[Request] = []
        self._requests: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue()
        self._said: set[str] = set()
        #: The step whose Redis trouble was said, until it succeeds again
        self._redis_down: str | None = None

    async def load(self) -> None:
        """Read the stored holds and make settings + holds the wanted set (settings alone when
        Redis cannot say: the stored holds then come with the first tick that reaches it)."""
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            await asyncio.wait_for(self._reload(holder=None), 2.0)
            return
        self.client.want(self.pinned)

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_requests(), name="control-reader")
        try:
            next_tick = 0.0
            while True:
                now = time.monotonic()
                if now >= next_tick:
                    next_tick = now + TICK_SECONDS
                    await self._guard(self._tick())
                while not self._requests.empty():
                    entry_id, fields = self._requests.get_nowait()
                    await self._guard(self._on_request(entry_id, fields))
                await self._guard(self._answer_settled())
                await self._wait(max(0.0, next_tick - time.monotonic()))
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            await self.redis.aclose()

    async def _wait(self, timeout: float) -> None:
        """Until a request, a subscription answer, or `timeout`."""
        changed = self.client.book_changed
        changed.clear()
        got = asyncio.ensure_future(self._requests_ready())
        book = asyncio.ensure_future(changed.wait())
        try:
            await asyncio.wait({got, book}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            got.cancel()
            book.cancel()

    async def _requests_ready(self) -> None:
        while self._requests.empty():
            item = await self._requests.get()
            self._requests.put_nowait(item)

    async def _guard(self, step: Any) -> None:
        """Run one step; Redis trouble is said once per outage, never raised. The outage ends
        when the step that failed, or the tick (it always reads and writes Redis), succeeds: a
        step with nothing to do in Redis said "back" every second while a redis:// URL on a
        cluster node refused the tick's keys with MOVED."""
        name = step.__qualname__
        try:
            await step
        except (RedisError, OSError, TimeoutError) as exc:
            if self._redis_down is None:
                self._redis_down = name
                log.warning(
                    "subscription control: redis unavailable (%s); streaming what is wanted",
                    type(exc).__name__,
                )
            return
        if self._redis_down is not None and name in (self._redis_down, self._tick.__qualname__):
            self._redis_down = None
            log.info("subscription control: redis back")

    # --- requests -------------------------------------------------------------------------------

    async def _read_requests(self) -> None:
        last: Any = b"$"
        retry = Backoff(0.2, 5.0)
        while True:
            try:
                if last == b"$":  # start after what is there now, never lose one in between
                    newest = await self.redis.xrevrange(self.keys.requests, count=1)
                    last = newest[0][0] if newest else b"0-0"
                reply: Any = await self.redis.xread(
                    {self.keys.requests: last}, count=100, block=READ_BLOCK_MS
                )
            except (RedisError, OSError, TimeoutError):
                await asyncio.sleep(retry.next())
                continue
            retry.reset()
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._requests.put_nowait((entry_id, fields))

    async def _on_request(self, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        raw = fields.get(b"request", b"")
        try:
            request = read_request(raw)
        except InvalidRequest as exc:
            self._say_invalid(entry_id, str(exc))
            request_id = _request_id(raw)
            if request_id is not None:
                await self._push(answers.invalid(request_id, str(exc)))
            return
        await self._reload(holder=request.holder)
        self._pending.append(request)

    async def _reload(self, holder: str | None) -> None:
        """Read the holds and hand the wanted set to the client; `holder` made the change."""
        raw = await self.redis.hgetall(self.keys.holds)
        holds, bad = read_holds(raw)
        if bad:
            self._say_invalid(b"-", f"{len(bad)} fields of {self.keys.holds} are not holds")
        self._apply(holds, holder)

    def _apply(self, holds: list[Hold], holder: str | None) -> None:
        self.holds = holds
        changes = self.client.want(wanted(self.pinned, holds))
        for service, (added, removed) in changes.items():
            log.info(
                "subscriptions changed: %s +%d -%d (%s)",
                service,
                len(added),
                len(removed),
                holder or "stored holds",
            )
            self.sink.status(
                "subscription_changed",
                f"{service}: +{len(added)} -{len(removed)} by {holder or 'stored holds'}",
                service=service,
                added=added,
                removed=removed,
                holder=holder or "",
            )

    async def _answer_settled(self) -> None:
        if not self._pending:
            return
        by_key = holders(self.pinned, self.holds)
        waiting = []
        answered = False
        for request in self._pending:
            answer = answers.settle(request, self.client.book, _others(by_key, request))
            if answer is None:
                waiting.append(request)
                continue
            await self._push(answer)
            answered = True
            if answer.refused:
                self.sink.status(
                    "subscription_refused",
                    answer.detail,
                    answer.refused[0].code,
                    holder=request.holder,
                    keys=[f"{r.service}={r.key}" for r in answer.refused[:20]],
                )
        self._pending = waiting
        if answered:  # `subscriptions` right after the command sees the change
            await self._publish_view()

    async def _publish_view(self) -> None:
        await self.redis.set(self.keys.state, encode(self.view()), px=STATE_TTL_MS)

    async def _push(self, answer: Answer) -> None:
        key = self.keys.answer(answer.id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, encode(answer))
            pipe.pexpire(key, ANSWER_TTL_MS)
            await pipe.execute()

    def _say_invalid(self, entry_id: bytes, why: str) -> None:
        if why in self._said or len(self._said) >= _MAX_SAID:
            return
        self._said.add(why)
        log.warning(
            "ignored a control message (entry %s of %s): %s; streaming goes on",
            entry_id.decode(errors="replace"),
            self.keys.requests,
            why,
        )

    # --- leases and the published view ------------------------------------------------------------

    async def _tick(self) -> None:
        """Expire holds whose holder's lease is gone, then refresh the view."""
        leased = sorted({h.holder for h in self.holds if h.kind is HoldKind.LEASE})
        if leased:
            async with self.redis.pipeline(transaction=False) as pipe:
                for holder in leased:
                    pipe.exists(self.keys.lease(holder))
                alive = await pipe.execute()
            gone = {h for h, ok in zip(leased, alive, strict=True) if not ok}
            if gone:
                dead = [h for h in self.holds if h.holder in gone and h.kind is HoldKind.LEASE]
                await self.redis.hdel(
                    self.keys.holds, *(hold_field(h.service, h.key, h.holder) for h in dead)
                )
                for holder in sorted(gone):
                    log.info("subscription lease of %s expired: its keys are released", holder)
        await self._reload(holder=None)
        await self._publish_view()

    def view(self) -> dict[str, Any]:
        """What `subscriptions` shows: every wanted key, its holders, Schwab's answer and its
        last data (wall-clock ns)."""
        by_key = holders(self.pinned, self.holds)
        kinds = {(h.service, h.key, h.holder): h.kind for h in self.holds}
        keys = []
        for status in self.client.book.status():
            refusal = status.refusal
            keys.append(
                {
                    "service": status.service,
                    "key": status.key,
                    "state": status.state.value,
                    "holders": [
                        {
                            "holder": holder,
                            "kind": "settings"
                            if holder == SETTINGS_HOLDER
                            else kinds.get((status.service, status.key, holder), "pinned"),
                        }
                        for holder in by_key.get((status.service, status.key), [])
                    ],
                    "last_data_ns": status.last_data_ns or None,
                    "refused": None
                    if refusal is None
                    else {"code": refusal.code, "message": refusal.message},
                }
            )
        return {"at_ns": time.time_ns(), "keys": keys}


def _others(
    by_key: Mapping[tuple[str, str], list[str]], request: Request
) -> dict[tuple[str, str], list[str]]:
    """Holders of each key other than the request's own (after an unsubscribe, its own hold is
    already gone; the others keep the key on the wire)."""
    return {key: [h for h in hs if h != request.holder] for key, hs in by_key.items()}


def _request_id(raw: bytes) -> str | None:
    """The id of a request too broken to use, if it has one: so its sender is told why."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    request_id = value.get("id") if isinstance(value, dict) else None
    if isinstance(request_id, str) and 0 < len(request_id) <= 64 and request_id.isprintable():
        return request_id
    return None
