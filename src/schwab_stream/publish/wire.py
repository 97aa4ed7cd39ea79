"""A flight as Redis commands, and Redis's replies as an `Answer`: the publisher's wire format,
with the one table that says what each kind of refusal means.

The stream entries go as one EVAL per `XADD_CHUNK` events (the same XADD per event inside a
short Lua loop: the same entries, ids and trimming, one reply instead of one per event), a batch
of up to `XADD_DIRECT` events as plain XADDs (cheaper than running the script), then one MSET of
the latest value per key. See docs/architecture.md, "Batches, two in flight, packed in C".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from enum import IntEnum
from typing import NamedTuple

from schwab_stream.publish.flight import Answer, Flight, Refusal, RefusalScope
from schwab_stream.publish.resp import CommandBuffer

#: Events per script call: bounds how long one call holds the Redis server.
XADD_CHUNK = 500
#: Batches this small go as plain XADDs: a reply each costs less than running the script.
XADD_DIRECT = 4
#: XADD KEYS[i] MAXLEN ~ ARGV[1] * data ARGV[i + 1], for every key. An entry Redis refuses (a
#: key of another type, out of memory) does not stop the others; the reply lists the refused
#: ones as [i, error, i, error, ...], so only those are sent again. EVAL (not EVALSHA) so a
#: restarted Redis needs no reload step; Redis caches the compiled script either way.
XADD_MANY = b"""
local refused = {}
for i, key in ipairs(KEYS) do
  local reply = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[i + 1])
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = i
    refused[#refused + 1] = reply.err
  end
end
return refused
"""

#: What a refusal is about, by Redis's error code. A key of another type (another program wrote
#: there) is that stream's problem alone; anything else (OOM, NOPERM, READONLY, ...) refuses
#: every write, so it is the publisher's gap for every stream.
REFUSAL_SCOPES: dict[str, RefusalScope] = {"WRONGTYPE": RefusalScope.KEY}


def classify(message: str) -> Refusal:
    """An error reply's text as a `Refusal`."""
    code = message.split(" ", 1)[0]
    return Refusal(code, message, REFUSAL_SCOPES.get(code, RefusalScope.ALL))


class ReplyKind(IntEnum):
    ENTRY = 0  # one XADD
    SCRIPT = 1  # EVAL of a chunk of entries
    LATEST = 2  # the MSET of latest keys
    OTHER = 3  # PUBLISH, the heartbeat SET


#: Bound once: the hot path builds a plan entry per command.
ENTRY, SCRIPT, LATEST, OTHER = ReplyKind
#: One command's reply to come: its kind, the first batch entry it covers, how many. A plain
#: tuple (not a NamedTuple) because one is made per command on the hot path.
Expect = tuple[ReplyKind, int, int]


class ErrorReply(NamedTuple):
    """An error reply, as read off the connection (not raised: it is an outcome)."""

    message: str


_NOTHING: Expect = (OTHER, 0, 0)


def pack(
    flight: Flight, maxlen: bytes, heartbeat_key: bytes, heartbeat_px: bytes
) -> tuple[bytes, list[Expect]]:
    """The flight's commands in one RESP buffer, and the replies they will get, in order."""
    buffer = CommandBuffer()
    plan: list[Expect] = []
    streams, payloads = flight.streams, flight.payloads
    if flight.channels:
        for channel, payload in zip(flight.channels, payloads, strict=True):
            buffer.add(b"PUBLISH", channel, payload)
            plan.append(_NOTHING)
    if len(streams) <= XADD_DIRECT:
        for i, stream in enumerate(streams):
            buffer.add(b"XADD", stream, b"MAXLEN", b"~", maxlen, b"*", b"data", payloads[i])
            plan.append((ENTRY, i, 1))
    else:
        for i in range(0, len(streams), XADD_CHUNK):
            keys = streams[i : i + XADD_CHUNK]
            buffer.add_all(
                [
                    b"EVAL",
                    XADD_MANY,
                    b"%d" % len(keys),
                    *keys,
                    maxlen,
                    *payloads[i : i + XADD_CHUNK],
                ]
            )
            plan.append((SCRIPT, i, len(keys)))
    if flight.latest:
        buffer.add_all([b"MSET", *[item for pair in flight.latest.items() for item in pair]])
        plan.append((LATEST, 0, 0))
    if flight.heartbeat_ms is not None:
        buffer.add(b"SET", heartbeat_key, b"%d" % flight.heartbeat_ms, b"PX", heartbeat_px)
        plan.append(_NOTHING)
    return buffer.getvalue(), plan


def read_answer(plan: Sequence[Expect], replies: Sequence[object]) -> Answer:
    """Redis's replies to a flight's commands (error replies as `ErrorReply`) as an `Answer`."""
    answer = Answer()
    for (kind, first, entries), reply in zip(plan, replies, strict=True):
        if isinstance(reply, ErrorReply):
            _refuse(answer, range(first, first + entries), [reply.message], kind)
        elif kind is SCRIPT and reply:  # [i, error, ...], i counted from 1
            assert isinstance(reply, list)
            _refuse(
                answer,
                (first + int(i) - 1 for i in reply[::2]),
                (bytes(error).decode() for error in reply[1::2]),
                kind,
            )
    return answer


def _refuse(answer: Answer, entries: Iterable[int], errors: Iterable[str], kind: ReplyKind) -> None:
    refusals = [classify(error) for error in errors]
    answer.refusal = answer.refusal or refusals[0]
    answer.refused.extend(entries)
    answer.latest_written = answer.latest_written and kind is not LATEST
    answer.per_stream = (
        answer.per_stream
        and kind is not LATEST
        and all(r.scope is RefusalScope.KEY for r in refusals)
    )
