"""Change what the running bridge streams, from any program that reaches its Redis.

    from schwab_stream.control import SubscriptionControl

    async with SubscriptionControl("redis://127.0.0.1:6379/0", holder="my-strategy") as subs:
        result = await subs.subscribe({"LEVELONE_EQUITIES": ["NVDA"]}, ttl=60)
        ...                                   # call subs.renew(60) more often than every 60 s
        await subs.unsubscribe({"LEVELONE_EQUITIES": ["NVDA"]})

A change is stored in Redis first (so it applies when a bridge starts, if none runs), then the
bridge is asked and its answer awaited: `Result.outcome` says whether Schwab acknowledged it.
`schwab-stream subscribe`, `unsubscribe` and `subscriptions` are this class on the command line.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import TracebackType
from typing import Any

import msgspec

from schwab_stream.config import SUBSCRIBABLE_SERVICES, parse_keys
from schwab_stream.control.answers import describe
from schwab_stream.control.holds import (
    REQUESTS_MAXLEN,
    Answer,
    ControlKeys,
    HoldKind,
    InvalidRequest,
    Op,
    Outcome,
    Request,
    check_holder,
    decode_answer,
    encode,
    hold_field,
    read_holds,
)
from schwab_stream.redis_client import async_redis, is_cluster
from schwab_stream.symbols import check_keys

__all__ = ["InvalidRequest", "Result", "ResultKind", "SubscriptionControl"]

#: Services a key can be subscribed on (ACCT_ACTIVITY's one key is the bridge's to choose).
SERVICES = (*SUBSCRIBABLE_SERVICES, "ACCT_ACTIVITY")


class ResultKind(StrEnum):
    """How a change ended, from the caller's side (the CLI's exit code follows it)."""

    #: Schwab acknowledged every key (or it is off the wire / kept by another holder)
    APPLIED = "applied"
    #: Schwab refused some keys: `answer.refused` names them, with the code and message
    REFUSED = "refused"
    #: The bridge could not use the request: `detail` says why
    INVALID = "invalid"
    #: No bridge holds the lease: the change is stored and applies when one starts
    NO_BRIDGE = "no_bridge"
    #: A bridge runs but did not answer in time (e.g. not connected to Schwab); stored
    NO_ANSWER = "no_answer"


@dataclass(frozen=True)
class Result:
    kind: ResultKind
    detail: str
    answer: Answer | None = None
    #: Keys an unsubscribe named that this holder did not hold: nothing was done for them
    not_held: dict[str, list[str]] = field(default_factory=dict)


class SubscriptionControl:
    def __init__(self, redis_url: str, prefix: str = "schwab", *, holder: str = "cli") -> None:
        self.holder = check_holder(holder)
        self.prefix = prefix
        self.keys = ControlKeys(prefix, cluster=is_cluster(redis_url))
        self.redis = async_redis(redis_url, socket_connect_timeout=5.0, socket_timeout=None)

    async def __aenter__(self) -> SubscriptionControl:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.redis.aclose()

    async def subscribe(
        self,
        subs: Mapping[str, Iterable[str]],
        *,
        ttl: float | None = None,
        timeout: float = 10.0,
    ) -> Result:
        """Hold `subs` (service -> keys) until `unsubscribe`, or while `renew` is called more
        often than every `ttl` seconds; wait up to `timeout` for Schwab's answer."""
        subs = _lists(subs)
        kind = HoldKind.LEASE if ttl is not None else HoldKind.PINNED
        fields = {
            hold_field(s, k, self.holder): kind.value for s, keys in subs.items() for k in keys
        }
        request = Request(_new_id(), Op.SUBSCRIBE, self.holder, subs, kind)
        async with self.redis.pipeline(transaction=True) as pipe:
            if ttl is not None:
                pipe.set(self.keys.lease(self.holder), b"1", px=_ms(ttl))
            pipe.hset(self.keys.holds, mapping=fields)  # type: ignore[arg-type]
            self._ask(pipe, request)
            await pipe.execute()
        return await self._answer(request, timeout)

    async def unsubscribe(
        self, subs: Mapping[str, Iterable[str]], *, timeout: float = 10.0
    ) -> Result:
        """Drop this holder's hold on `subs`; the keys leave Schwab when nobody else holds them."""
        subs = _lists(subs)
        pairs = _pairs(subs)
        fields = [hold_field(s, k, self.holder) for s, k in pairs]
        request = Request(_new_id(), Op.UNSUBSCRIBE, self.holder, subs)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.keys.holds, fields)
            pipe.hdel(self.keys.holds, *fields)
            self._ask(pipe, request)
            held_before, *_ = await pipe.execute()
        not_held: dict[str, list[str]] = {}
        for (service, key), kind in zip(pairs, held_before, strict=True):
            if kind is None:
                not_held.setdefault(service, []).append(key)
        result = await self._answer(request, timeout)
        return _with_not_held(result, self.holder, not_held) if not_held else result

    async def renew(self, ttl: float) -> None:
        """Keep this holder's leased keys for another `ttl` seconds."""
        await self.redis.set(self.keys.lease(self.holder), b"1", px=_ms(ttl))

    async def view(self) -> dict[str, Any] | None:
        """The running bridge's view (every wanted key, its holders, state and last data), or
        None when no bridge has published one in the last few seconds."""
        raw = await self.redis.get(self.keys.state)
        return None if raw is None else msgspec.json.decode(raw)

    async def stored(self) -> list[tuple[str, str, str, str]]:
        """The stored holds: (service, key, holder, kind), whether or not a bridge runs."""
        holds, _ = read_holds(await self.redis.hgetall(self.keys.holds))
        return [(h.service, h.key, h.holder, h.kind.value) for h in holds]

    async def clear(self, holder: str | None = None) -> int:
        """Delete the stored holds (all, or one holder's); returns how many. A running bridge
        unsubscribes what only they held at its next tick (about a second)."""
        raw = await self.redis.hgetall(self.keys.holds)
        holds, bad = read_holds(raw)
        fields = [
            hold_field(h.service, h.key, h.holder) for h in holds if holder in (None, h.holder)
        ]
        if holder is None:
            fields += bad
        if fields:
            await self.redis.hdel(self.keys.holds, *fields)
        if holder is None:  # nothing left to ask about: the request log goes too
            await self.redis.delete(self.keys.requests)
        return len(fields)

    # --- the exchange with the bridge -------------------------------------------------------------

    def _ask(self, pipe: Any, request: Request) -> None:
        pipe.xadd(
            self.keys.requests,
            {"request": encode(request)},
            maxlen=REQUESTS_MAXLEN,
            approximate=True,
        )

    async def _answer(self, request: Request, timeout: float) -> Result:
        if not await self.redis.exists(self.keys.bridge_lease):
            return Result(
                ResultKind.NO_BRIDGE,
                f"no bridge is running on this Redis under the prefix {self.prefix!r} (another "
                "prefix? see --prefix): the change is stored and applies when `schwab-stream "
                "run` starts with it",
            )
        reply = await self.redis.blpop([self.keys.answer(request.id)], timeout=max(timeout, 0.01))
        if reply is None:
            return Result(
                ResultKind.NO_ANSWER,
                f"the bridge did not answer within {timeout:g} s (is it connected to Schwab? "
                "see its /healthz); the change is stored and applies when it is",
            )
        answer = decode_answer(reply[1])
        kind = {
            Outcome.APPLIED: ResultKind.APPLIED,
            Outcome.REFUSED: ResultKind.REFUSED,
            Outcome.INVALID: ResultKind.INVALID,
        }[answer.outcome]
        return Result(kind, answer.detail, answer)


def _lists(subs: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """`subs` upper-cased and checked: an unknown service or a key in the wrong format is an
    InvalidRequest naming it and the right format, before anything is written."""
    unique: dict[str, dict[str, None]] = {}
    for service, keys in subs.items():
        name = service.strip().upper()
        if name not in SERVICES:
            raise InvalidRequest(f"unknown service {service!r}: one of {', '.join(SERVICES)}")
        unique.setdefault(name, {}).update(dict.fromkeys(parse_keys(",".join(keys))))
    checked = {service: list(keys) for service, keys in unique.items() if keys}
    problems = check_keys(checked)
    if problems:
        raise InvalidRequest("; ".join(map(str, problems)))
    if not checked:
        raise InvalidRequest("no keys given")
    return checked


def _with_not_held(result: Result, holder: str, not_held: dict[str, list[str]]) -> Result:
    """`result` with the keys `holder` did not hold taken out of what it applied and named:
    unsubscribing them did nothing."""
    count = sum(map(len, not_held.values()))
    note = f"{count} not held by {holder!r}, nothing done: {_named(not_held)}"
    answer = result.answer
    if answer is None or answer.outcome is Outcome.INVALID:
        return replace(result, detail=f"{result.detail}; {note}", not_held=not_held)
    applied = {
        service: [k for k in keys if k not in not_held.get(service, ())]
        for service, keys in answer.applied.items()
    }
    applied = {service: keys for service, keys in applied.items() if keys}
    detail = f"{describe(Op.UNSUBSCRIBE, applied, answer.kept, answer.refused)}; {note}"
    answer = msgspec.structs.replace(answer, applied=applied, detail=detail)
    return replace(result, detail=detail, answer=answer, not_held=not_held)


def _pairs(subs: Mapping[str, list[str]]) -> list[tuple[str, str]]:
    return [(service, key) for service, keys in subs.items() for key in keys]


def _named(subs: Mapping[str, list[str]], most: int = 10) -> str:
    pairs = [f"{service}={key}" for service, key in _pairs(subs)]
    more = f" and {len(pairs) - most} more" if len(pairs) > most else ""
    return ", ".join(pairs[:most]) + more


def _new_id() -> str:
    return secrets.token_hex(8)


def _ms(seconds: float) -> int:
    if not 0.1 <= seconds <= 86_400:
        raise ValueError("a lease lasts from 0.1 s to one day")
    return round(seconds * 1000)
