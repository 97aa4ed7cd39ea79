"""The streams of a prefix read through one consumer group (the Redis edge of the archive).

Streams are found with SCAN (stream keys only) and looked for again while running, so a symbol
subscribed later is archived too; each gets the group, from its first entry. New entries are
read by a short script that also notes, per stream, the `seq` of the last entry the group has
been handed: reads of several archivers are serialized by Redis, so each read learns the `seq`
before it whichever archiver had the entries before (gaps.py). A script cannot block, so when it
finds nothing the reader waits with XREAD BLOCK on the streams' ends.
"""

from __future__ import annotations

from typing import Any

import redis
from redis.exceptions import ResponseError

from schwab_stream.archive.rows import Entry

#: Event types whose streams are per symbol (PREFIX:TYPE:SYMBOL), and the single ones.
SYMBOL_TYPES = ("tick", "level2", "bar", "screener")
SINGLE_TYPES = ("account", "status")
#: Streams per script call (the script passes them all to one XREADGROUP)
KEYS_PER_CALL = 1000

READ = """
local seqs = KEYS[#KEYS]
local args = {'XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3], 'STREAMS'}
for i = 1, #KEYS - 1 do args[#args + 1] = KEYS[i] end
for i = 1, #KEYS - 1 do args[#args + 1] = '>' end
local reply = redis.call(unpack(args))
if not reply then return {} end
local prevs = {}
for i, s in ipairs(reply) do
  prevs[i] = redis.call('HGET', seqs, s[1]) or false
  local entries = s[2]
  for j = #entries, 1, -1 do
    local fields = entries[j][2]
    local data = nil
    for f = 1, #fields, 2 do
      if fields[f] == 'data' then data = fields[f + 1] end
    end
    local ok, event = pcall(cjson.decode, data or '')
    if ok and type(event) == 'table' and type(event.seq) == 'number' then
      redis.call('HSET', seqs, s[1], string.format('%d', event.seq))
      break
    end
  end
end
return {reply, prevs}
"""


class Delivery:
    """One stream's entries from one read, and the `seq` the group saw before them."""

    __slots__ = ("entries", "prev_seq", "stream")

    def __init__(self, stream: str, entries: list[Entry], prev_seq: int | None) -> None:
        self.stream = stream
        self.entries = entries
        self.prev_seq = prev_seq


class GroupSource:
    def __init__(self, client: redis.Redis, prefix: str, group: str, consumer: str) -> None:
        self.client = client
        self.prefix = prefix
        self.group = group
        self.consumer = consumer
        self.streams: list[str] = []
        self.seqs_key = f"{prefix}:archive:{group}:seq"
        self._read = client.register_script(READ)

    def discover(self) -> list[str]:
        """Find the prefix's event streams; give new ones the group. Returns the new ones."""
        found: set[str] = set()
        for kind in SYMBOL_TYPES:
            pattern = _escape_glob(f"{self.prefix}:{kind}:") + "*"
            for key in self.client.scan_iter(match=pattern, count=1000, _type="stream"):
                found.add(text(key))
        for kind in SINGLE_TYPES:
            key = f"{self.prefix}:{kind}"
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
        """New entries for this consumer, up to `count` per stream."""
        out: list[Delivery] = []
        for start in range(0, len(self.streams), KEYS_PER_CALL):
            keys = self.streams[start : start + KEYS_PER_CALL]
            try:
                reply: Any = self._read(
                    keys=[*keys, self.seqs_key], args=[self.group, self.consumer, count]
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.regroup()
                return out
            if not reply:
                continue
            streams, prevs = reply
            for (raw_key, raw_entries), prev in zip(streams, prevs, strict=True):
                out.append(Delivery(text(raw_key), _entries(raw_key, raw_entries), _int(prev)))
        return out

    def wait(self, block_ms: int) -> None:
        """Return when any stream gets a new entry, or after `block_ms`."""
        if not self.streams or block_ms <= 0:
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


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
