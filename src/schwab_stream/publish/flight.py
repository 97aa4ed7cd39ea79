"""What the publisher's core and its wire layer hand each other: a batch to write, and Redis's
answer to it, as plain data (no sockets, no exception text to parse)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from schwab_stream.events import Event


@dataclass(slots=True)
class Flight:
    """One batch, from the moment it is taken off the queue until Redis has answered all of it."""

    batch: list[Event]
    #: Each event's stream key and JSON, in batch order
    streams: list[bytes]
    payloads: list[bytes]
    #: Latest-state key -> value, written after the entries (by the same script)
    latest: dict[bytes, bytes]
    #: Latest-state key -> the index of the entry whose payload is its value (the wire sends
    #: that payload once); a value of no entry here (a refused one tried again) is not listed
    latest_entry: dict[bytes, int]
    #: Pub/sub channel of each event when the mirror is on, else empty
    channels: list[bytes]
    #: The heartbeat key's value (wall-clock ms) when this flight refreshes it
    heartbeat_ms: int | None
    #: recv_ns of the oldest and newest event (latency samples)
    oldest_ns: int
    newest_ns: int
    #: It holds events never conflated (bars, account, status): no batch may overtake it, since
    #: a refused one sent again after a newer one of its stream would break the stream's order.
    ordered: bool
    #: It holds events of a flight whose answer was lost (Redis may have written them): the
    #: write checks each entry against its stream's watermark. A first try needs no check.
    check: bool = False


class RefusalScope(Enum):
    """What a refusal is about: one key (the others are fine), or every write."""

    KEY = "key"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Refusal:
    """An error reply: Redis's error code (its first word, e.g. WRONGTYPE) and its message."""

    code: str
    message: str
    scope: RefusalScope

    @property
    def reason(self) -> str:
        """How a gap names it (the same words as the failures that are not refusals)."""
        return f"ResponseError: {self.message}"


@dataclass(slots=True)
class Answer:
    """Redis's answer to a flight: the entries it refused (indexes into the batch, in order),
    whether the latest keys were written, and the first refusal."""

    refused: list[int] = field(default_factory=list)
    latest_written: bool = True
    refusal: Refusal | None = None
    #: Every refusal was of a key alone (WRONGTYPE): only those streams need holding
    per_stream: bool = True


class Outage(Enum):
    """Why the publisher entered its gap state, for the log line that says so."""

    UNAVAILABLE = "unavailable"
    REFUSED = "refused a write"


@dataclass(frozen=True, slots=True)
class Failure:
    """A write that did not get its answer (the connection is gone and every flight with it),
    or a refusal of every key: the publisher's gap."""

    outage: Outage
    #: Names the cause in the gap event and the log: `ExceptionType: message`, never a secret
    reason: str
