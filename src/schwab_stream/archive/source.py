"""The streams of a prefix read through one consumer group (the Redis edge of the archive).

Streams are found with SCAN (stream keys only; on a cluster SCAN runs on every primary) and
looked for again while running, so a symbol subscribed later is archived too; each gets the
group, from its first entry. New entries are read by `MULTI; XREADGROUP; EVAL READ; EXEC`: the
script returns, per stream, the `seq` of the last entry the group had been handed before this
read, and notes the new one. Nothing of another client runs inside a MULTI, so each read learns
the `seq` before it whichever archiver had the entries before (gaps.py); and the entries go
from XREADGROUP to the client as they are, not through Lua tables (which cost Redis ~2.5x the
read). One MULTI names the streams of one slot (keys.py), they go in one pipeline (one per node
on a cluster, pipes.py). XREADGROUP cannot block in a MULTI, so when a read finds nothing the
reader waits with XREAD BLOCK on the streams' ends; on a cluster, where one XREAD may only name
streams of one slot, it sleeps a little instead.

A read whose reply was lost (the connection failed: a failover, a timeout) may have handed
entries to this archiver all the same; they would stay pending for it, unseen. So the streams
of such a read are read again from this consumer's own pending list, past the last entry it
was handed (`Handed`), before anything new.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis
from redis.exceptions import RedisError, ResponseError

from schwab_stream.archive.keys import ArchiveKeys
from schwab_stream.archive.pipes import Multi, NodePipes, OnePipe, unsure
from schwab_stream.archive.rows import Entry, id_order

log = logging.getLogger("schwab_stream.archive")

#: How long a cluster's reader sleeps when no stream had anything (ms)
CLUSTER_POLL_MS = 200

#: Run after the read's XREADGROUP, in its MULTI (KEYS: the streams, then their seq record;
#: ARGV: the group). Field `@STREAM` of the record holds the group's last-delivered-id when its
#: `seq` was noted: one XREAD past those ids finds the streams this read moved (an idle stream
#: costs no Lua). For each, returns the stream and the `seq` noted before the read, then notes
#: the `seq` of the newest entry up to the new last-delivered-id that has one. Sent with EVAL,
#: not EVALSHA: a NOSCRIPT would come after XREADGROUP had run.
READ = """
local seqs = KEYS[#KEYS]
local n = #KEYS - 1
local args = {'XREAD', 'COUNT', 1, 'STREAMS'}
for i = 1, n do args[4 + i] = '@' .. KEYS[i] end
local ids = redis.call('HMGET', seqs, unpack(args, 5))
for i = 1, n do
  args[4 + i] = KEYS[i]
  args[4 + n + i] = ids[i] or '0-0'
end
local out = {}
local newer = redis.call(unpack(args))
if not newer then return out end
local index = {}
for i = 1, n do index[KEYS[i]] = i end
for _, found in ipairs(newer) do
  local key = found[1]
  local noted = ids[index[key]]
  local last = nil
  local groups = redis.pcall('XINFO', 'GROUPS', key)
  if type(groups) == 'table' and not groups.err then
    for _, g in ipairs(groups) do
      if g[2] == ARGV[1] then
        for f = 1, #g, 2 do
          if g[f] == 'last-delivered-id' then last = g[f + 1] end
        end
      end
    end
  end
  if last and last ~= '0-0' and last ~= noted then
    out[#out + 1] = key
    out[#out + 1] = redis.call('HGET', seqs, key)
    local upto, seq, count = last, nil, 1
    repeat
      local range = redis.call('XREVRANGE', key, upto, '-', 'COUNT', count)
      for _, entry in ipairs(range) do
        if entry[1] == noted then range = {} break end
        local data = nil
        for f = 1, #entry[2], 2 do
          if entry[2][f] == 'data' then data = entry[2][f + 1] end
        end
        local ok, event = pcall(cjson.decode, data or '')
        if ok and type(event) == 'table' and type(event.seq) == 'number' then
          seq = string.format('%d', event.seq)
          break
        end
        upto = '(' .. entry[1]
      end
      local short = #range < count
      count = 32
    until seq or short
    if seq then redis.call('HSET', seqs, key, seq) end
    redis.call('HSET', seqs, '@' .. key, last)
  end
end
return out
"""


class Delivery:
    """One stream's entries from one read, and the `seq` the group saw before them."""

    __slots__ = ("entries", "prev_seq", "stream")

    def __init__(self, stream: str, entries: list[Entry], prev_seq: int | None) -> None:
        self.stream = stream
        self.entries = entries
        self.prev_seq = prev_seq


class Handed:
    """Per stream, the last entry this consumer was handed by a read, and the entries it claimed
    from dead archivers past it: what a read of its own pending list must skip."""

    def __init__(self) -> None:
        self.last: dict[str, str] = {}
        self.claimed: dict[str, set[str]] = {}

    def after(self, stream: str) -> str:
        return self.last.get(stream, "0-0")

    def read(self, stream: str, entry_id: str) -> None:
        if id_order(entry_id) <= id_order(self.after(stream)):
            return
        self.last[stream] = entry_id
        claimed = self.claimed.pop(stream, None)
        if claimed:
            bound = id_order(entry_id)
            beyond = {i for i in claimed if id_order(i) > bound}
            if beyond:
                self.claimed[stream] = beyond

    def claim(self, stream: str, entry_ids: list[str]) -> None:
        bound = id_order(self.after(stream))
        beyond = {i for i in entry_ids if id_order(i) > bound}
        if beyond:
            self.claimed.setdefault(stream, set()).update(beyond)

    def known(self, stream: str, entry_id: str) -> bool:
        return entry_id in self.claimed.get(stream, ())


class GroupSource:
    def __init__(
        self, client: redis.Redis, keys: ArchiveKeys, consumer: str, pipes: OnePipe | NodePipes
    ) -> None:
        self.client = client
        self.keys = keys
        self.group = keys.group
        self.consumer = consumer
        self.pipes = pipes
        self.streams: list[str] = []
        self.handed = Handed()
        #: Read, not yet handed out (another read of the same round failed)
        self._carried: list[Delivery] = []
        #: Streams of reads whose reply was lost
        self._unsure: set[str] = set()
        #: Stream keys passed over (not UTF-8), said once each
        self._not_utf8: set[bytes] = set()

    def discover(self) -> list[str]:
        """Find the prefix's event streams; give new ones the group. Returns the new ones."""
        found: set[str] = set()
        for pattern in self.keys.symbol_patterns():
            for key in self.client.scan_iter(match=pattern, count=1000, _type="stream"):
                try:
                    found.add(key.decode() if isinstance(key, bytes) else str(key))
                except UnicodeDecodeError:  # no bridge writes such a key: not ours to archive
                    if key not in self._not_utf8:
                        self._not_utf8.add(key)
                        log.warning("stream %r under the prefix is not UTF-8: not archived", key)
        for key in self.keys.singles:
            if text(self.client.type(key)) == "stream":
                found.add(key)
        new = sorted(found - set(self.streams))
        for key in new:
            self.ensure_group(key)
        self.streams = sorted(found | set(self.streams))
        return new

    def ensure_group(self, key: str) -> None:
        try:
            self.client.xgroup_create(key, self.group, id="0")
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def regroup(self) -> None:
        """After NOGROUP (Redis restarted empty, a stream deleted): forget streams that are gone,
        give the group again to the others."""
        self.streams = [k for k in self.streams if text(self.client.type(k)) == "stream"]
        for key in self.streams:
            self.ensure_group(key)

    def read(self, count: int) -> list[Delivery]:
        """New entries for this consumer, up to `count` per stream. When part of the read fails,
        what the rest got is kept for the next call and the error raised."""
        out, self._carried = self._carried, []
        try:
            self._recover(count, out)
            self._read_new(count, out)
        except BaseException:
            self._carried = out
            raise
        return out

    def _read_new(self, count: int, out: list[Delivery]) -> None:
        batches = self.keys.batches(self.streams)
        reads = []
        for batch in batches:
            seqs = self.keys.seq(batch[0])
            group = ("GROUP", self.group, self.consumer, "COUNT", count, "STREAMS")
            xreadgroup = ("XREADGROUP", *group, *batch, *(">" for _ in batch))
            note = ("EVAL", READ, len(batch) + 1, *batch, seqs, self.group)
            reads.append((seqs, Multi((xreadgroup, note))))
        error: RedisError | None = None
        regroup = False
        for batch, reply in zip(batches, self.pipes.send(reads), strict=True):
            got, prevs = (reply, []) if isinstance(reply, RedisError) else reply
            if isinstance(got, ResponseError) and "NOGROUP" in str(got):
                regroup = True
            elif isinstance(got, RedisError):
                if unsure(got):
                    self._unsure.update(batch)
                error = error or got
            elif got:
                if isinstance(prevs, RedisError):  # (the entries are handed out all the same)
                    log.warning("cannot note the seq of a read, no gap check for it: %s", prevs)
                    prevs = []
                prev_of = dict(zip(map(text, prevs[::2]), prevs[1::2], strict=True))
                for raw_key, raw_entries in got.items() if isinstance(got, dict) else got:
                    delivery = Delivery(text(raw_key), _entries(raw_key, raw_entries), None)
                    delivery.prev_seq = _int(prev_of.get(delivery.stream))
                    if delivery.entries:
                        self.handed.read(delivery.stream, delivery.entries[-1].entry_id)
                    out.append(delivery)
        if regroup:
            self.regroup()
        if error is not None:
            raise error

    def _recover(self, count: int, out: list[Delivery]) -> None:
        """The entries of this consumer's own pending list past the last it was handed (a read
        whose reply was lost handed them out); entries trimmed since are acknowledged."""
        for stream in sorted(self._unsure):
            found = 0
            while True:
                try:
                    reply: Any = self.client.xreadgroup(
                        self.group, self.consumer, {stream: self.handed.after(stream)}, count=count
                    )
                except ResponseError as exc:
                    if "NOGROUP" not in str(exc):
                        raise
                    reply = None  # (the group is gone, and what it had pending with it)
                raw = reply[0][1] if reply else []
                entries, gone = [], []
                for raw_id, fields in raw:
                    entry_id = text(raw_id)
                    if not fields:
                        gone.append(entry_id)
                    elif not self.handed.known(stream, entry_id):
                        entries.append(Entry(stream, entry_id, field_of(fields, b"data") or b""))
                if gone:
                    self.client.xack(stream, self.group, *gone)
                if entries:
                    out.append(Delivery(stream, entries, None))
                    found += len(entries)
                if raw:
                    self.handed.read(stream, text(raw[-1][0]))
                if len(raw) < count:
                    break
            self._unsure.discard(stream)
            if found:
                log.info(
                    "%s: %d entries handed to this archiver by a read whose reply was lost were "
                    "read again from its pending list",
                    stream,
                    found,
                )

    def wait(self, block_ms: int) -> None:
        """Return when any stream gets a new entry, or after `block_ms` (on a cluster: after a
        short pause)."""
        if block_ms <= 0 or self._carried or self._unsure:
            return
        if not self.streams or self.keys.cluster:
            pause = block_ms if not self.streams else min(block_ms, CLUSTER_POLL_MS)
            time.sleep(pause / 1000)
            return
        self.client.xread({key: "$" for key in self.streams}, count=1, block=block_ms)


def _entries(raw_key: Any, raw_entries: Any) -> list[Entry]:
    stream = text(raw_key)
    out = []
    for raw_id, fields in raw_entries:
        data = field_of(fields, b"data")
        out.append(Entry(stream, text(raw_id), data if data is not None else b""))
    return out


def field_of(fields: Any, name: bytes) -> bytes | None:
    """A field of an entry, as redis-py hands it (a dict, or the flat list a script returns)."""
    if isinstance(fields, dict):
        value = fields.get(name)
        return value if value is None or isinstance(value, bytes) else bytes(value)
    if len(fields) == 2 and fields[0] == name:  # the usual entry: `data` alone
        return bytes(fields[1])
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == name:
            return bytes(fields[i + 1])
    return None


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
