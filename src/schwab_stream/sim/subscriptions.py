"""A connection's subscriptions and the rules of SUBS, ADD, UNSUBS and VIEW.

Kept apart from the session so the rules read in one place: SUBS replaces a service's keys and
fields, ADD adds keys (new keys only get a snapshot) and merges fields, UNSUBS removes keys, VIEW
replaces the fields; keys past the symbol limit (summed over services) are refused with 19.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schwab_stream.sim.services import ACCT_SERVICE, BOOK_SERVICES, FIELD_COUNTS, SCREENER_SERVICES

COMMANDS = ("SUBS", "ADD", "UNSUBS", "VIEW")


@dataclass
class Sub:
    """One service's subscription on a connection and what was last sent for it."""

    fields: list[str]
    keys: dict[str, None] = field(default_factory=dict)  # ordered set
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # level one: last sent values
    due: dict[str, float] = field(default_factory=dict)  # books, screeners: next snapshot time
    bar_sent: dict[str, int] = field(default_factory=dict)  # charts: start of last bar sent
    cursor: int = 0  # rotation over keys when symbols_per_frame > 0

    def forget(self, key: str) -> None:
        self.last.pop(key, None)
        self.due.pop(key, None)
        self.bar_sent.pop(key, None)


class BadRequest(Exception):
    """A request that gets code 21 (bad command format)."""


def apply(
    subs: dict[str, Sub], svc: str, cmd: str, params: dict[str, Any], now: float, limit: int
) -> tuple[int, str]:
    """Apply SUBS/ADD/UNSUBS/VIEW to `subs`; returns (code, msg), raises BadRequest for 21.

    A request that raises has changed nothing; a service left without keys is removed.
    """
    if cmd not in COMMANDS:
        raise BadRequest(f"unknown command {cmd}")
    raw_fields = params.get("fields")
    fields = parse_fields(svc, raw_fields, required=cmd == "VIEW")
    sub = subs.get(svc)
    if cmd == "VIEW":
        if sub is not None:
            sub.fields = fields
        return 0, "VIEW command succeeded"
    keys = parse_keys(params.get("keys"))
    if svc == ACCT_SERVICE:
        if cmd == "ADD":
            return 24, "ADD command is not supported for ACCT_ACTIVITY; use SUBS"
        keys = keys[:1]
    if cmd == "UNSUBS":
        if sub is not None:
            for key in keys:
                if key in sub.keys:
                    del sub.keys[key]
                    sub.forget(key)
            if not sub.keys:
                del subs[svc]
        return 0, "UNSUBS command succeeded"
    if cmd == "SUBS" or sub is None:
        sub = Sub(fields)
        subs[svc] = sub
    elif raw_fields is not None:
        sub.fields = sorted(set(sub.fields) | set(fields), key=int)
    others = sum(len(s.keys) for name, s in subs.items() if name != svc)
    rejected = []
    for key in keys:
        if key in sub.keys:
            continue
        if others + len(sub.keys) >= limit:
            rejected.append(key)
            continue
        sub.keys[key] = None
        if svc in BOOK_SERVICES or svc in SCREENER_SERVICES:
            sub.due[key] = now
    if not sub.keys:
        del subs[svc]
    if rejected:
        return 19, (f"Reached symbol limit of {limit}; not subscribed: " + ",".join(rejected))
    return 0, f"{cmd} command succeeded"


def parse_keys(raw: Any) -> list[str]:
    """The comma-separated keys, stripped and without duplicates, in order."""
    if not isinstance(raw, str):
        raise BadRequest("parameters.keys must be a comma-separated string")
    keys = list(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
    if not keys:
        raise BadRequest("parameters.keys is empty")
    return keys


def parse_fields(svc: str, raw: Any, required: bool) -> list[str]:
    """Requested numeric fields, without 0 (the symbol always comes back as `key`)."""
    count = FIELD_COUNTS.get(svc, 0)
    if raw is None and not required:
        return [str(n) for n in range(1, count)]
    if not isinstance(raw, str):
        raise BadRequest("parameters.fields must be a comma-separated string of numbers")
    parts = [p.strip() for p in raw.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise BadRequest(f"bad fields {raw!r}")
    return [str(n) for n in sorted({int(p) for p in parts}) if 0 < n < count]
