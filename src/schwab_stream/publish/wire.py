"""A flight as Redis commands, and Redis's replies as an `Answer`: the publisher's wire format,
with the one table that says what each kind of refusal means.

The stream entries go as one EVAL per `XADD_CHUNK` events (a short Lua loop doing the XADD of
each entry: one reply instead of one per event), then one MSET of the latest value per key. The
script writes each entry exactly once: see `XADD_ONCE`, and docs/architecture.md, "What a failed
write does".
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from schwab_stream.publish.flight import Answer, Flight, Refusal, RefusalScope
from schwab_stream.publish.keys import hash_tag
from schwab_stream.publish.resp import CommandBuffer

#: Events per script call: bounds how long one call holds the Redis server.
XADD_CHUNK = 500
#: XADD KEYS[i] MAXLEN ~ ARGV[1] * data PAYLOAD, for each entry i, exactly once. KEYS ends with
#: the watermark hash (`PREFIX:written`): per stream, `WRITER:SEQ` of the last entry this writer
#: wrote there. ARGV[2] is the writer (one per publisher, random); then each entry's `seq` and
#: payload. An entry whose seq is not above its stream's watermark of this writer was written by
#: an earlier try whose answer was lost (a timeout, a dropped socket): it is skipped, counted as
#: written. The watermark moves in the same script as the XADDs, so both happen or neither (a
#: script runs alone, and is replicated and persisted as one). Per-stream `seq` only grows within
#: a process, and the publisher sends a stream's events in `seq` order, so nothing new is ever
#: below the watermark. An entry Redis refuses (a key of another type, out of memory) does not
#: stop other streams; the rest of its stream in this call is refused with it (order is kept,
#: and the watermark never passes an entry that was not written). The reply lists the refused
#: entries as [i, error, i, error, ...]. EVAL (not EVALSHA) so a restarted Redis needs no
#: reload step; Redis caches the compiled script either way.
XADD_ONCE = b"""
local marks = KEYS[#KEYS]
local prefix = ARGV[2] .. ':'
local top, moved, blocked, refused = {}, {}, {}, {}
for i = 1, #KEYS - 1 do
  local key = KEYS[i]
  local seq = tonumber(ARGV[2 * i + 1])
  local mark = top[key]
  if mark == nil then
    mark = -1
    local stored = redis.pcall('HGET', marks, key)
    if type(stored) == 'string' and string.sub(stored, 1, #prefix) == prefix then
      mark = tonumber(string.sub(stored, #prefix + 1)) or -1
    end
  end
  local err = blocked[key]
  if err == nil and seq > mark then
    local reply = redis.pcall('XADD', key, 'MAXLEN', '~', ARGV[1], '*', 'data', ARGV[2 * i + 2])
    if type(reply) == 'table' and reply.err then
      err = reply.err
      blocked[key] = err
    else
      mark = seq
      moved[key] = true
    end
  end
  if err then
    refused[#refused + 1] = i
    refused[#refused + 1] = err
  end
  top[key] = mark
end
for key in pairs(moved) do
  redis.pcall('HSET', marks, key, prefix .. top[key])
end
return refused
"""


@dataclass(frozen=True, slots=True)
class WriteSettings:
    """What every flight's commands share: the trim length, the heartbeat key and its TTL, the
    watermark hash and this publisher's writer token (all encoded once). In cluster mode the
    entries go in one script per hash tag, each with its own marks hash (`marks_prefix` + tag),
    so every command touches one slot."""

    maxlen: bytes
    heartbeat_key: bytes
    heartbeat_px: bytes
    marks_key: bytes
    writer: bytes
    cluster: bool = False
    marks_prefix: bytes = b""


#: What a refusal is about, by Redis's error code. A key of another type (another program wrote
#: there) is that stream's problem alone; anything else (OOM, NOPERM, READONLY, ...) refuses
#: every write, so it is the publisher's gap for every stream.
REFUSAL_SCOPES: dict[str, RefusalScope] = {"WRONGTYPE": RefusalScope.KEY}


#: Replies that mean the URL names one node of a cluster: what to do instead is said with them.
_CLUSTER_CODES = frozenset({"MOVED", "ASK", "CLUSTERDOWN", "CROSSSLOT"})


#: How Redis 6.2 words an error met inside a script (`XADD_ONCE`'s pcall): `@user_script: 18:
#: -OOM command not allowed when used memory > 'maxmemory'.\r\n`, where Redis 7 and Valkey 8
#: give the reply itself (`OOM command not allowed ...`).
_SCRIPT_PREFIX = re.compile(r"@user_script:\s*\d+:\s*-?")
#: A command the script's user may not run, per server: 6.2 says no more than this (after the
#: prefix above), 7.0 the same after `ERR `, Valkey 8 `ERR ACL failure in script: User u has no
#: permissions to run the 'xadd' command`.
_SCRIPT_NOPERM_62 = "The user executing the script can't"
_SCRIPT_NOPERM = "ERR ACL failure in script: "


def error_text(message: str) -> str:
    """An error reply in one form on every server: an error met inside the script as the same
    command would have had it outside (its code first: OOM, NOPERM, WRONGTYPE), on one line."""
    message = _SCRIPT_PREFIX.sub("", message.strip(), count=1).strip()
    if message.removeprefix("ERR ").startswith(_SCRIPT_NOPERM_62):
        return f"NOPERM {message.removeprefix('ERR ')}"
    if message.startswith(_SCRIPT_NOPERM):
        return f"NOPERM {message.removeprefix(_SCRIPT_NOPERM)}"
    return " / ".join(line.strip() for line in message.splitlines() if line.strip())


def classify(message: str) -> Refusal:
    """An error reply's text as a `Refusal` (its code the first word of `error_text`)."""
    message = error_text(message)
    code = message.split(" ", 1)[0]
    if code in _CLUSTER_CODES:
        message += " (this Redis is a cluster node: use a redis+cluster:// URL)"
    return Refusal(code, message, REFUSAL_SCOPES.get(code, RefusalScope.ALL))


class ReplyKind(IntEnum):
    SCRIPT = 1  # EVAL of a chunk of entries
    LATEST = 2  # the MSET of latest keys
    OTHER = 3  # PUBLISH, the heartbeat SET


#: Bound once: the hot path builds a plan entry per command.
SCRIPT, LATEST, OTHER = ReplyKind
#: One command's reply to come: its kind, the first batch entry it covers, how many, and (cluster
#: mode, where a script covers the entries of one hash tag) which ones, or None for the run
#: first..first+count. A plain tuple (not a NamedTuple): one is made per command on the hot path.
Expect = tuple[ReplyKind, int, int, tuple[int, ...] | None]


class ErrorReply(NamedTuple):
    """An error reply, as read off the connection (not raised: it is an outcome)."""

    message: str


_NOTHING: Expect = (OTHER, 0, 0, None)


def pack(flight: Flight, settings: WriteSettings) -> tuple[bytes, list[Expect]]:
    """The flight's commands in one RESP buffer, and the replies they will get, in order."""
    buffer = CommandBuffer()
    commands, plan = build(flight, settings)
    for args in commands:
        buffer.add_all(args)
    return buffer.getvalue(), plan


def build(flight: Flight, settings: WriteSettings) -> tuple[list[list[bytes]], list[Expect]]:
    """The flight's commands, and the replies they will get, in order."""
    commands: list[list[bytes]] = []
    plan: list[Expect] = []
    streams, payloads = flight.streams, flight.payloads
    if flight.channels:
        for channel, payload in zip(flight.channels, payloads, strict=True):
            commands.append([b"PUBLISH", channel, payload])
            plan.append(_NOTHING)
    batch = flight.batch
    if settings.cluster:
        _scripts_per_tag(flight, settings, commands, plan)
    else:
        for first in range(0, len(streams), XADD_CHUNK):
            keys = streams[first : first + XADD_CHUNK]
            args = [b"EVAL", XADD_ONCE, b"%d" % (len(keys) + 1), *keys, settings.marks_key]
            args += (settings.maxlen, settings.writer)
            for i in range(first, first + len(keys)):
                args += (b"%d" % batch[i].seq, payloads[i])
            commands.append(args)
            plan.append((SCRIPT, first, len(keys), None))
    if flight.latest:
        groups: dict[bytes, list[bytes]] = {}
        for key, value in flight.latest.items():
            groups.setdefault(hash_tag(key) if settings.cluster else b"", []).extend((key, value))
        for pairs in groups.values():
            commands.append([b"MSET", *pairs])
            plan.append((LATEST, 0, 0, None))
    if flight.heartbeat_ms is not None:
        commands.append(
            [
                b"SET",
                settings.heartbeat_key,
                b"%d" % flight.heartbeat_ms,
                b"PX",
                settings.heartbeat_px,
            ]
        )
        plan.append(_NOTHING)
    return commands, plan


def _scripts_per_tag(
    flight: Flight, settings: WriteSettings, commands: list[list[bytes]], plan: list[Expect]
) -> None:
    """Cluster mode: one script per hash tag (a symbol's streams, or the bridge's own), with
    that tag's marks hash, so each touches one slot; a stream's entries keep their order."""
    groups: dict[bytes, list[int]] = {}
    for i, key in enumerate(flight.streams):
        groups.setdefault(hash_tag(key), []).append(i)
    batch, payloads, streams = flight.batch, flight.payloads, flight.streams
    for tag, indices in groups.items():
        marks = settings.marks_prefix + tag
        for first in range(0, len(indices), XADD_CHUNK):
            chunk = indices[first : first + XADD_CHUNK]
            args = [b"EVAL", XADD_ONCE, b"%d" % (len(chunk) + 1)]
            args += [streams[i] for i in chunk]
            args += (marks, settings.maxlen, settings.writer)
            for i in chunk:
                args += (b"%d" % batch[i].seq, payloads[i])
            commands.append(args)
            plan.append((SCRIPT, chunk[0], len(chunk), tuple(chunk)))


def read_answer(plan: Sequence[Expect], replies: Sequence[object]) -> Answer:
    """Redis's replies to a flight's commands (error replies as `ErrorReply`) as an `Answer`."""
    answer = Answer()
    for (kind, first, entries, indices), reply in zip(plan, replies, strict=True):
        covered = range(first, first + entries) if indices is None else indices
        if isinstance(reply, ErrorReply):
            _refuse(answer, covered, [reply.message], kind)
        elif kind is SCRIPT and reply:  # [i, error, ...], i counted from 1
            assert isinstance(reply, list)
            _refuse(
                answer,
                (covered[int(i) - 1] for i in reply[::2]),
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
