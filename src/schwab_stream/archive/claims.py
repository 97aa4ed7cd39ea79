"""Who in the group holds what, and the steps that make acknowledging exactly once (Redis edge).

Each archiver is a consumer of the group with a name of its own (`host-pid-random`), listed in
the group's consumers hash and kept alive by a key with a TTL (SCHWAB_ARCHIVE_DEAD_SECONDS); the
keys are in keys.py. A file is made in steps: written aside and fsynced; its name added to the
archiver's intents (only while the group still counts it alive); renamed into place; its
entries acknowledged; then, once every acknowledgement is confirmed, the intent removed. A
file's entries span slots on a cluster, so the last two cannot be one MULTI; they need not be:
until the intent is gone, whoever settles it acknowledges the file's entries again, and XACK of
an acknowledged entry does nothing. An archiver whose key has expired is declared dead
(atomically, so it cannot add an intent after that), and another takes its work over: each
intent whose file is in place is acknowledged from the file, each temp file is taken away
(files.fence) so the dead one's late rename fails, and its pending entries are claimed and
archived again. Nothing durable is written twice, nothing pending is lost.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import redis
from redis.exceptions import ResponseError

from schwab_stream.archive import files
from schwab_stream.archive.keys import ArchiveKeys
from schwab_stream.archive.pipes import Lua, NodePipes, OnePipe
from schwab_stream.archive.rows import Entry
from schwab_stream.archive.source import Handed, field_of, text

#: KEYS: the consumers hash, the consumer's alive key, its dead mark (kept a week, so one that
#: was only paused never comes back to life), its intents. Scripts, so each check and write is
#: one step no other archiver can come between.
#: Stay alive; 0 when declared dead. Not listed (Redis restarted empty): listed again.
HEARTBEAT = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'alive')
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return 1
"""
#: Add an intent (and stay alive), unless declared dead.
INTEND = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'alive')
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[4], ARGV[3])
return 1
"""
#: 1 when the consumer is dead: its alive key gone (declared now) or declared before.
DECLARE = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('SET', KEYS[3], '1', 'EX', 604800)
redis.call('HSET', KEYS[1], ARGV[1], 'dead')
return 1
"""


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Claims:
    def __init__(
        self,
        client: redis.Redis,
        keys: ArchiveKeys,
        consumer: str,
        root: Path,
        dead_seconds: float,
        pipes: OnePipe | NodePipes,
        handed: Handed,
    ) -> None:
        self.client = client
        self.keys = keys
        self.group = keys.group
        self.consumer = consumer
        self.root = root
        self.dead_ms = max(1, int(dead_seconds * 1000))
        self.pipes = pipes
        #: What the source must not read again as its own (entries claimed here)
        self.handed = handed
        self._heartbeat = client.register_script(HEARTBEAT)
        self._intend = Lua(client, INTEND)
        self._declare = client.register_script(DECLARE)

    def script_keys(self, consumer: str) -> list[str]:
        """The script keys of `consumer` (see HEARTBEAT); one slot on a cluster."""
        return [
            self.keys.consumers,
            self.keys.alive(consumer),
            self.keys.dead(consumer),
            self.keys.intents(consumer),
        ]

    def register(self) -> None:
        """Listed in the group and alive (a new name, never declared dead)."""
        self.heartbeat()

    def heartbeat(self) -> bool:
        """Stay alive; False when the group has already declared this archiver dead."""
        keys = self.script_keys(self.consumer)
        return bool(self._heartbeat(keys=keys, args=[self.consumer, self.dead_ms]))

    def intend(self, relative: str) -> bool:
        """Note that the file `relative` (under the root) is about to be renamed into place;
        False when this archiver was declared dead (it must not rename). Behind Sentinel the
        intent is on a replica before this returns (pipes.OnePipe)."""
        keys = self.script_keys(self.consumer)
        [reply] = self._intend.run(self.pipes, [(keys, [self.consumer, self.dead_ms, relative])])
        if isinstance(reply, Exception):
            raise reply
        return bool(reply)

    def done(self, ids: dict[str, list[str]], relative: str, consumer: str | None = None) -> None:
        """The file is in place: acknowledge its entries (one pipeline, one per node on a
        cluster), then, all confirmed, drop the intent. A stream without the group any more
        (Redis restarted empty) has nothing to acknowledge."""
        commands = [
            (stream, ("XACK", stream, self.group, *entry_ids[start : start + 10_000]))
            for stream, entry_ids in ids.items()
            for start in range(0, len(entry_ids), 10_000)
        ]
        for reply in self.pipes.send(commands):
            if isinstance(reply, Exception) and not (
                isinstance(reply, ResponseError) and "NOGROUP" in str(reply)
            ):
                raise reply
        self.client.srem(self.keys.intents(consumer or self.consumer), relative)

    def leave(self, streams: Iterable[str]) -> None:
        """At a clean stop, with nothing pending: this consumer is gone from the group."""
        self._forget(self.consumer, streams)

    def dead(self) -> list[str]:
        """Consumers of the group whose alive key is gone, declared dead now if not yet."""
        names = [text(raw) for raw in self.client.hkeys(self.keys.consumers)]
        return [
            name
            for name in names
            if name != self.consumer and self._declare(keys=self.script_keys(name), args=[name])
        ]

    def settle_intents(self, consumer: str) -> int:
        """A dead consumer's files: those in place are acknowledged, those not yet renamed are
        taken away (its rename would fail). Returns how many were in place."""
        in_place = 0
        for raw in self.client.smembers(self.keys.intents(consumer)):
            relative = text(raw)
            final = self.root / relative
            files.fence(files.temp_dir(self.root, consumer) / final.name)
            if final.exists():
                self.done(files.entry_ids(final), relative, consumer)
                in_place += 1
            else:
                self.client.srem(self.keys.intents(consumer), relative)
        files.clear_temp(self.root, consumer)
        return in_place

    def claim(self, consumer: str, streams: Iterable[str], count: int) -> list[Entry]:
        """Up to `count` entries per stream still pending for a dead consumer, now this one's.
        Entries trimmed from the stream meanwhile are acknowledged (there is nothing to keep)."""
        out: list[Entry] = []
        min_idle = self.dead_ms // 2
        for stream in streams:
            pending: Any = self.client.xpending_range(
                stream, self.group, min="-", max="+", count=count, consumername=consumer
            )
            ids = [p["message_id"] for p in pending]
            if not ids:
                continue
            # Claimed in two steps: JUSTID says which became ours (an entry another archiver
            # claimed a moment ago is not idle enough), then claiming those again to ourselves
            # returns them in order, None for an entry trimmed since.
            mine: Any = self.client.xclaim(
                stream, self.group, self.consumer, min_idle, ids, justid=True
            )
            if not mine:
                continue
            claimed: Any = self.client.xclaim(stream, self.group, self.consumer, 0, mine)
            gone = []
            for entry_id, (raw_id, fields) in zip(mine, claimed, strict=True):
                if raw_id is None or fields is None:
                    gone.append(entry_id)
                else:
                    out.append(Entry(stream, text(raw_id), field_of(fields, b"data") or b""))
            self.handed.claim(stream, [text(entry_id) for entry_id in mine])
            if gone:
                self.client.xack(stream, self.group, *gone)
        return out

    def forget_if_empty(self, consumer: str, streams: list[str]) -> bool:
        """Remove a dead consumer that holds nothing any more."""
        if self.client.scard(self.keys.intents(consumer)):
            return False
        for stream in streams:
            info: Any = self.client.xpending_range(
                stream, self.group, min="-", max="+", count=1, consumername=consumer
            )
            if info:
                return False
        self._forget(consumer, streams)
        return True

    def _forget(self, consumer: str, streams: Iterable[str]) -> None:
        """Out of the group: its consumer in every stream, its listing and keys (what fails is
        forgotten by a later takeover)."""
        keys = self.keys
        self.pipes.send(
            [
                *((s, ("XGROUP", "DELCONSUMER", s, self.group, consumer)) for s in streams),
                (keys.consumers, ("HDEL", keys.consumers, consumer)),
                (keys.alive(consumer), ("DEL", keys.alive(consumer))),
                (keys.intents(consumer), ("DEL", keys.intents(consumer))),
            ]
        )
