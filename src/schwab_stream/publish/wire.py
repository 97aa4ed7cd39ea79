"""A flight as Redis commands, and Redis's replies as an `Answer`: the publisher's wire format,
with the one table that says what each kind of refusal means.

The stream entries go as one EVALSHA per `XADD_CHUNK` events (a short Lua loop doing the XADD
of each entry: one reply instead of one per event) that also sets the latest value of each key
from the entry that carries it, so a payload crosses the wire once. The script writes each entry
exactly once: see `XADD_ONCE`, and docs/architecture.md, "What a failed write does". In cluster
mode there is one script per hash tag, with that tag's latest keys (they share its slot).
"""

from __future__ import annotations

import hashlib
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
#: XADD KEYS[i] MAXLEN ~ ARGV[1] * data PAYLOAD, for each of the ARGV[3] = n entries, exactly
#: once. KEYS[n + 1] is the watermark hash (`PREFIX:written`): per stream, `WRITER:SEQ` of the
#: last entry this writer wrote there. ARGV[2] is the writer (one per publisher, random), ARGV[4]
#: says whether to check (1) or not (0); then each entry's `seq` and payload. When checking, an
#: entry whose seq is not above its stream's watermark of this writer was written by an earlier
#: try whose answer was lost (a timeout, a dropped socket): it is skipped, counted as written.
#: The publisher asks for the check only in a flight holding such entries (`Flight.check`): a
#: first try cannot have been written before, since per-stream `seq` only grows within a process
#: and the publisher sends a stream's events in `seq` order (the read costs Redis ~15% of the
#: call). Either way the watermark moves in the same script as the XADDs, so both happen or
#: neither (a script runs alone, and is replicated and persisted as one). An entry Redis
#: refuses (a key of another type, out of memory) does not stop other streams; the rest of its
#: stream in this call is refused with it (order is kept, and the watermark never passes an
#: entry that was not written). The watermarks are read with one HMGET and moved with one HSET:
#: a call from Lua costs the server more than the command itself.
#: KEYS past the watermark hash are latest-value keys, set with one MSET after the entries. After
#: the entries, ARGV says how many of them (r, the first r) take the payload of one of this
#: call's entries, then that entry's number for each (a value is sent once), then the values of
#: the others (a refused value tried again). The reply lists the refused entries as
#: [i, error, i, error, ...], i = 0 for the latest values. It goes as EVALSHA, loaded on each
#: connection as it connects (a restarted or promoted server, a new node may not have it); a
#: NOSCRIPT reply (a SCRIPT FLUSH meanwhile) ends the connection and the flights go again.
XADD_ONCE = b"""
local n = tonumber(ARGV[3])
local marks = KEYS[n + 1]
local prefix = ARGV[2] .. ':'
local plen = #prefix
local top, distinct = {}, {}
for i = 1, n do
  local key = KEYS[i]
  if top[key] == nil then
    top[key] = -1
    distinct[#distinct + 1] = key
  end
end
if ARGV[4] == '1' and #distinct > 0 then
  local stored = redis.pcall('HMGET', marks, unpack(distinct))
  if type(stored) == 'table' and not stored.err then
    for d = 1, #distinct do
      local mark = stored[d]
      if type(mark) == 'string' and string.sub(mark, 1, plen) == prefix then
        top[distinct[d]] = tonumber(string.sub(mark, plen + 1)) or -1
      end
    end
  end
end
local maxlen = ARGV[1]
local moved, blocked, refused = {}, {}, {}
for i = 1, n do
  local key = KEYS[i]
  local err = blocked[key]
  local seq = tonumber(ARGV[2 * i + 3])
  if err == nil and seq > top[key] then
    local reply = redis.pcall('XADD', key, 'MAXLEN', '~', maxlen, '*', 'data', ARGV[2 * i + 4])
    if type(reply) == 'table' and reply.err then
      err = reply.err
      blocked[key] = err
    else
      top[key] = seq
      moved[key] = true
    end
  end
  if err then
    refused[#refused + 1] = i
    refused[#refused + 1] = err
  end
end
local marked = {}
for d = 1, #distinct do
  local key = distinct[d]
  if moved[key] then
    marked[#marked + 1] = key
    marked[#marked + 1] = prefix .. top[key]
  end
end
if #marked > 0 then
  redis.pcall('HSET', marks, unpack(marked))
end
if #KEYS > n + 1 then
  local base = 2 * n + 5
  local refs = tonumber(ARGV[base])
  local latest = {}
  for j = 1, #KEYS - n - 1 do
    local value = ARGV[base + j]
    if j <= refs then
      value = ARGV[2 * tonumber(value) + 4]
    end
    latest[#latest + 1] = KEYS[n + 1 + j]
    latest[#latest + 1] = value
  end
  local reply = redis.pcall('MSET', unpack(latest))
  if type(reply) == 'table' and reply.err then
    refused[#refused + 1] = 0
    refused[#refused + 1] = reply.err
  end
end
return refused
"""
#: The script's name for EVALSHA
XADD_ONCE_SHA = hashlib.sha1(XADD_ONCE, usedforsecurity=False).hexdigest().encode()


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
    SCRIPT = 1  # a script call's entries
    LATEST = 2  # a script call's latest values (its refusal ends the reply: [0, error])
    OTHER = 3  # PUBLISH, the heartbeat SET
    SCRIPT_LATEST = 4  # a script call that sets latest values too


#: Bound once: the hot path builds a plan entry per command.
SCRIPT, LATEST, OTHER, SCRIPT_LATEST = ReplyKind
#: One command's reply to come: its kind, the first batch entry it covers, how many, and (cluster
#: mode, where a script covers the entries of one hash tag) which ones, or None for the run
#: first..first+count. A plain tuple (not a NamedTuple): one is made per command on the hot path.
Expect = tuple[ReplyKind, int, int, tuple[int, ...] | None]


class ErrorReply(NamedTuple):
    """An error reply, as read off the connection (not raised: it is an outcome)."""

    message: str


_NOTHING: Expect = (OTHER, 0, 0, None)
#: An EVAL of the script with no entries and no latest keys: it loads the script for EVALSHA
#: (with no SCRIPT permission needed) and writes nothing.
LOAD: tuple[bytes, ...] = (b"EVAL", XADD_ONCE, b"0", b"", b"", b"0", b"0")


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
    if flight.channels:
        for channel, payload in zip(flight.channels, flight.payloads, strict=True):
            commands.append([b"PUBLISH", channel, payload])
            plan.append(_NOTHING)
    if settings.cluster:
        _scripts_per_tag(flight, settings, commands, plan)
    elif flight.streams or flight.latest:
        everything = range(len(flight.streams))
        latest = list(flight.latest)
        _scripts(flight, settings, settings.marks_key, everything, latest, commands, plan)
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
    """Cluster mode: the script per hash tag (a symbol's streams, or the bridge's own), with that
    tag's marks hash and latest keys, so each call touches one slot."""
    groups: dict[bytes, list[int]] = {}
    for i, key in enumerate(flight.streams):
        groups.setdefault(hash_tag(key), []).append(i)
    latest: dict[bytes, list[bytes]] = {}
    for key in flight.latest:
        latest.setdefault(hash_tag(key), []).append(key)
        groups.setdefault(hash_tag(key), [])
    for tag, indices in groups.items():
        marks = settings.marks_prefix + tag
        _scripts(flight, settings, marks, indices, latest.get(tag, []), commands, plan)


#: An entry's number in its script call, by its place there
_NUMBERS = [b"%d" % number for number in range(1, XADD_CHUNK + 1)]


def _scripts(
    flight: Flight,
    settings: WriteSettings,
    marks: bytes,
    indices: Sequence[int],
    latest: list[bytes],
    commands: list[list[bytes]],
    plan: list[Expect],
) -> None:
    """The script calls for the entries `indices` (batch order) and the latest keys `latest`,
    `XADD_CHUNK` entries a call: a latest key goes with the call that holds the entry whose
    payload is its value (sent once), a value of no entry with the last call (then more calls
    without entries if there are many)."""
    contiguous = isinstance(indices, range)
    calls = [indices[first : first + XADD_CHUNK] for first in range(0, len(indices), XADD_CHUNK)]
    #: Per call: its latest keys (those named by an entry's number first) and those numbers
    keys_of: list[list[bytes]] = [[] for _ in calls]
    numbers: list[list[bytes]] = [[] for _ in calls]
    given: list[bytes] = []
    at = flight.latest_entry
    if contiguous and len(calls) == 1 and len(latest) == len(at):
        # The usual flight: one call, and each latest value is one of its entries
        keys_of[0] = list(at)
        numbers[0] = [_NUMBERS[i] for i in at.values()]
    elif latest:
        position = None if contiguous else {i: place for place, i in enumerate(indices)}
        for key in latest:
            i = at.get(key)
            place = None if i is None else i if position is None else position.get(i)
            if place is None:
                given.append(key)
                continue
            keys_of[place // XADD_CHUNK].append(key)
            numbers[place // XADD_CHUNK].append(_NUMBERS[place % XADD_CHUNK])
    streams, payloads, batch, values = flight.streams, flight.payloads, flight.batch, flight.latest
    check = b"1" if flight.check else b"0"
    extra = [given[k : k + XADD_CHUNK] for k in range(0, len(given), XADD_CHUNK)]
    if extra and calls:
        last = len(calls) - 1
        keys_of[last] += extra[0]
        extra = extra[1:]
    for chunk, keys, refs in zip(calls, keys_of, numbers, strict=True):
        args = [b"EVALSHA", XADD_ONCE_SHA, b"%d" % (len(chunk) + 1 + len(keys))]
        args += [streams[i] for i in chunk]
        args.append(marks)
        args += keys
        args += (settings.maxlen, settings.writer, b"%d" % len(chunk), check)
        for i in chunk:
            args += (b"%d" % batch[i].seq, payloads[i])
        if keys:
            args.append(b"%d" % len(refs))
            args += refs
            args += [values[key] for key in keys[len(refs) :]]
        commands.append(args)
        covered = None if contiguous else tuple(chunk)
        kind = SCRIPT_LATEST if keys else SCRIPT
        plan.append((kind, chunk[0] if chunk else 0, len(chunk), covered))
    for keys in extra:
        args = [b"EVALSHA", XADD_ONCE_SHA, b"%d" % (1 + len(keys)), marks, *keys]
        args += (settings.maxlen, settings.writer, b"0", b"0", b"0", *[values[key] for key in keys])
        commands.append(args)
        plan.append((SCRIPT_LATEST, 0, 0, None if contiguous else ()))


def read_answer(plan: Sequence[Expect], replies: Sequence[object]) -> Answer:
    """Redis's replies to a flight's commands (error replies as `ErrorReply`) as an `Answer`."""
    answer = Answer()
    for (kind, first, entries, indices), reply in zip(plan, replies, strict=True):
        covered = range(first, first + entries) if indices is None else indices
        if isinstance(reply, ErrorReply):
            _refuse(answer, covered, [reply.message], kind)
        elif kind in _SCRIPTS and reply:  # [i, error, ...], i counted from 1, 0: latest values
            assert isinstance(reply, list)
            places = [int(i) for i in reply[::2]]
            errors = [bytes(error).decode() for error in reply[1::2]]
            latest = places[-1] == 0  # the latest values' error comes last
            if len(places) > latest:
                refused = (covered[i - 1] for i in places[: len(places) - latest])
                _refuse(answer, refused, errors[: len(errors) - latest], SCRIPT)
            if latest:
                _refuse(answer, (), errors[-1:], LATEST)
    return answer


_SCRIPTS = (SCRIPT, SCRIPT_LATEST)


def _refuse(answer: Answer, entries: Iterable[int], errors: Iterable[str], kind: ReplyKind) -> None:
    refusals = [classify(error) for error in errors]
    answer.refusal = answer.refusal or refusals[0]
    answer.refused.extend(entries)
    latest = kind is LATEST or kind is SCRIPT_LATEST
    answer.latest_written = answer.latest_written and not latest
    answer.per_stream = (
        answer.per_stream and not latest and all(r.scope is RefusalScope.KEY for r in refusals)
    )
