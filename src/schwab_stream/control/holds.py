"""Who holds which streamer key, and the control messages, as data (no I/O).

A key is wanted while it has a holder: the bridge's settings (`settings`, pinned for its run), a
plain `subscribe` (until `unsubscribe`), or a lease (`subscribe --ttl`: valid while its holder's
lease key lives in Redis). The wanted set is the union; the stream client's `SubscriptionBook`
turns changes of it into ADD and UNSUBS. Requests and answers travel through Redis as JSON
(docs/subscriptions.md has the keys and the fields).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final

import msgspec

#: The holder of what the bridge's own settings and `--subscribe` ask for.
SETTINGS_HOLDER: Final = "settings"
#: Holder names: short, printable, no separators that would make the hash fields ambiguous.
_HOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,63}$")
#: Keys one request may carry (1,000 is the documented bulk case; Schwab's limit is ~500 a
#: connection, so more is only ever refused, but a bigger request is no reason to fail here).
MAX_KEYS_PER_REQUEST: Final = 5000
#: Requests kept in the request stream (only the last few matter: answers go to their own key).
REQUESTS_MAXLEN: Final = 1000


class HoldKind(StrEnum):
    #: Until `unsubscribe`
    PINNED = "pinned"
    #: While the holder's lease key lives (`subscribe --ttl`)
    LEASE = "lease"


class Op(StrEnum):
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"


class Outcome(StrEnum):
    """How a request ended: the answer's `outcome`, and the command's exit code."""

    #: Schwab acknowledged every key (or, unsubscribing, nobody holds it on the wire any more)
    APPLIED = "applied"
    #: Schwab refused some keys (`refused` names them and the code)
    REFUSED = "refused"
    #: The request could not be read (the bridge says what was wrong)
    INVALID = "invalid"


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What `subscribe` / `unsubscribe` write to the control stream."""

    id: str
    op: Op
    holder: str
    subs: dict[str, list[str]]
    kind: HoldKind = HoldKind.PINNED


class RefusedKey(msgspec.Struct, frozen=True):
    service: str
    key: str
    code: int
    message: str


class KeptKey(msgspec.Struct, frozen=True):
    """A key unsubscribed by one holder that others still hold: not an error, reported."""

    service: str
    key: str
    holders: list[str]


class Answer(msgspec.Struct, frozen=True):
    id: str
    outcome: Outcome
    detail: str
    applied: dict[str, list[str]] = {}
    refused: list[RefusedKey] = []
    kept: list[KeptKey] = []


class Hold(msgspec.Struct, frozen=True, order=True):
    service: str
    key: str
    holder: str
    kind: HoldKind


class InvalidRequest(ValueError):
    """A control message that cannot be used; the message says what was wrong."""


_decode_request = msgspec.json.Decoder(Request).decode
encode = msgspec.json.Encoder().encode
decode_answer = msgspec.json.Decoder(Answer).decode


def check_holder(holder: str) -> str:
    if not _HOLDER.match(holder):
        raise InvalidRequest(
            f"holder {holder[:80]!r}: 1-64 characters, letters, digits and . _ : @ / -, "
            "starting with a letter or digit"
        )
    return holder


def read_request(raw: bytes | str) -> Request:
    """A request from the control stream, checked; InvalidRequest says what is wrong."""
    try:
        request = _decode_request(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidRequest(f"not a control request: {exc}") from None
    check_holder(request.holder)
    if request.holder == SETTINGS_HOLDER:
        raise InvalidRequest(f"holder {SETTINGS_HOLDER!r} is the bridge's own settings")
    count = sum(len(keys) for keys in request.subs.values())
    if count == 0:
        raise InvalidRequest("no keys")
    if count > MAX_KEYS_PER_REQUEST:
        raise InvalidRequest(f"{count} keys: at most {MAX_KEYS_PER_REQUEST} per request")
    return request


# --- holds in Redis: one hash, field = JSON [service, key, holder], value = the kind ----------


def hold_field(service: str, key: str, holder: str) -> bytes:
    return encode([service, key, holder])


def read_holds(raw: Mapping[Any, Any]) -> tuple[list[Hold], list[bytes]]:
    """The holds of the hash (bytes to bytes, as redis-py returns it), and the fields that are
    not holds (written by something else). A field whose service, key or holder `subscribe`
    would have refused is not a hold either: the bridge would send it to Schwab (a service
    Schwab does not have, a 100 kB key in every SUBS) on every connection."""
    from schwab_stream.symbols import check_key

    holds, bad = [], []
    for field, value in raw.items():
        try:
            service, key, holder = msgspec.json.decode(field, type=tuple[str, str, str])
            hold = Hold(service, key, holder, HoldKind(bytes(value).decode()))
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, TypeError):
            bad.append(field)
            continue
        if check_key(service, key) is not None or not _HOLDER.match(holder):
            bad.append(field)
        else:
            holds.append(hold)
    return sorted(holds), bad


def wanted(pinned: Mapping[str, Iterable[str]], holds: Iterable[Hold]) -> dict[str, list[str]]:
    """The union of the settings' keys and every hold, in a stable order (settings first)."""
    union: dict[str, dict[str, None]] = defaultdict(dict)
    for service, keys in pinned.items():
        union[service].update(dict.fromkeys(keys))
    for hold in holds:
        union[hold.service][hold.key] = None
    return {service: list(keys) for service, keys in union.items() if keys}


def holders(
    pinned: Mapping[str, Iterable[str]], holds: Iterable[Hold]
) -> dict[tuple[str, str], list[str]]:
    """(service, key) -> its holders, `settings` first."""
    result: dict[tuple[str, str], list[str]] = defaultdict(list)
    for service, keys in pinned.items():
        for key in keys:
            result[service, key].append(SETTINGS_HOLDER)
    for hold in holds:
        result[hold.service, hold.key].append(hold.holder)
    return dict(result)


class ControlKeys:
    """The Redis keys of the control plane for one prefix. On a cluster they share the hash tag
    `{PREFIX}`, so a change (its holds, its lease, its request) is one transaction on one slot."""

    def __init__(self, prefix: str, cluster: bool = False) -> None:
        own = f"{{{prefix}}}" if cluster else prefix
        self.own = own
        #: hash: hold_field(service, key, holder) -> HoldKind
        self.holds = f"{own}:subs:holds"
        #: the running bridge's view (JSON, expires unless refreshed): what `subscriptions` shows
        self.state = f"{own}:subs:state"
        #: stream of Requests (field `request`)
        self.requests = f"{own}:subs:requests"
        #: the hot-standby lease: whoever holds it runs the bridge
        self.bridge_lease = f"{prefix}:lease"

    def lease(self, holder: str) -> str:
        """Lives (PX ttl) while a `subscribe --ttl` holder is alive."""
        return f"{self.own}:subs:lease:{holder}"

    def answer(self, request_id: str) -> str:
        """A list the bridge pushes the Answer to (expires soon after)."""
        return f"{self.own}:subs:answer:{request_id}"
