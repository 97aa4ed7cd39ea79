"""When a control request is answered, and what the answer says (no I/O).

A subscribe is answered once Schwab has acknowledged or refused every key it asked for; an
unsubscribe once each key is off the wire, or is kept because another holder still holds it. While
the bridge is not connected nothing settles: the caller's timeout decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from schwab_stream.control.holds import Answer, KeptKey, Op, Outcome, RefusedKey, Request
from schwab_stream.stream.subscriptions import KeyState, Refusal


class BookView(Protocol):
    """What answering needs of the `SubscriptionBook`."""

    def state_of(self, service: str, key: str) -> KeyState | None: ...
    def refusal(self, service: str, key: str) -> Refusal | None: ...
    def on_wire(self, service: str, key: str) -> bool: ...


def settle(
    request: Request, book: BookView, holders: Mapping[tuple[str, str], list[str]]
) -> Answer | None:
    """The answer to `request` now, or None while some key waits for Schwab."""
    applied: dict[str, list[str]] = {}
    refused: list[RefusedKey] = []
    kept: list[KeptKey] = []
    for service, keys in request.subs.items():
        for key in keys:
            if request.op is Op.SUBSCRIBE:
                state = book.state_of(service, key)
                if state is KeyState.PENDING:
                    return None
                refusal = book.refusal(service, key)
                if state is KeyState.REFUSED and refusal is not None:
                    refused.append(RefusedKey(service, key, refusal.code, refusal.message))
                elif state is KeyState.ACTIVE:
                    applied.setdefault(service, []).append(key)
                # None: no longer wanted (unsubscribed meanwhile): nothing to say
            else:
                others = holders.get((service, key))
                if others:
                    kept.append(KeptKey(service, key, list(others)))
                elif book.on_wire(service, key):
                    return None
                else:
                    applied.setdefault(service, []).append(key)
    outcome = Outcome.REFUSED if refused else Outcome.APPLIED
    detail = describe(request.op, applied, kept, refused)
    return Answer(request.id, outcome, detail, applied=applied, refused=refused, kept=kept)


def describe(
    op: Op,
    applied: Mapping[str, list[str]],
    kept: list[KeptKey],
    refused: list[RefusedKey],
) -> str:
    """The answer's one line: what was applied, kept for others, refused."""
    verb = "subscribed" if op is Op.SUBSCRIBE else "unsubscribed"
    parts = [f"{verb} {_count(applied)}"]
    if kept:
        parts.append(f"{len(kept)} still held by others")
    if refused:
        codes = sorted({r.code for r in refused})
        parts.append(
            f"{len(refused)} refused by Schwab (code {', '.join(map(str, codes))}: "
            f"{refused[0].message})"
        )
    return "; ".join(parts)


def invalid(request_id: str, why: str) -> Answer:
    return Answer(request_id, Outcome.INVALID, why)


def _count(by_service: Mapping[str, list[str]]) -> str:
    total = sum(len(keys) for keys in by_service.values())
    return f"{total} key{'s' if total != 1 else ''}"
