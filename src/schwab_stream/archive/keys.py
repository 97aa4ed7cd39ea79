"""Where the archive's keys are on each topology, and which streams one read may name (sans-I/O).

A single Redis (standalone or behind Sentinel) takes any keys in one command: the group's
bookkeeping is `PREFIX:archive:GROUP:...` and one read names up to KEYS_PER_CALL streams with one
`seq` hash. On a cluster every command's keys must share a slot, so the layout follows the
bridge's (docs/events.md, "Redis Cluster"): the group's low-volume bookkeeping (consumers, alive,
dead, intents) sits under the one tag `{PREFIX}:archive:GROUP:...`, and the `seq` record of a
stream sits beside it under the stream's own tag, `PREFIX:archive:GROUP:seq:{SYMBOL}`; one read
names the streams of one tag.
"""

from __future__ import annotations

from schwab_stream.publish.keys import StreamKeys, hash_tag

#: Event types whose streams are per symbol (PREFIX:TYPE:SYMBOL), and the single ones.
SYMBOL_TYPES = ("tick", "level2", "bar", "screener")
SINGLE_TYPES = ("account", "status")
#: Streams per read on a single Redis (one script call names them all)
KEYS_PER_CALL = 1000


class ArchiveKeys:
    def __init__(self, prefix: str, group: str, cluster: bool = False) -> None:
        self.prefix = prefix
        self.group = group
        self.cluster = cluster
        streams = StreamKeys(prefix, cluster)
        #: The streams with one per prefix: `PREFIX:status` (`{PREFIX}:status` on a cluster)
        self.singles = [f"{streams.own}:{kind}" for kind in SINGLE_TYPES]
        self.status = streams.status
        #: The group's bookkeeping: `PREFIX:archive:GROUP` (`{PREFIX}:archive:GROUP`)
        self.base = f"{streams.own}:archive:{group}"
        self.consumers = f"{self.base}:consumers"
        self._seq = f"{prefix}:archive:{group}:seq"

    def alive(self, consumer: str) -> str:
        return f"{self.base}:alive:{consumer}"

    def dead(self, consumer: str) -> str:
        return f"{self.base}:dead:{consumer}"

    def intents(self, consumer: str) -> str:
        return f"{self.base}:intents:{consumer}"

    def symbol_patterns(self) -> list[str]:
        """SCAN patterns of the per-symbol streams (glob characters of the prefix escaped)."""
        return [_escape_glob(f"{self.prefix}:{kind}:") + "*" for kind in SYMBOL_TYPES]

    def seq(self, stream: str) -> str:
        """The hash holding, per stream, the `seq` the group was last handed: one on a single
        Redis, one per hash tag on a cluster (an untagged key is its own tag)."""
        if not self.cluster:
            return self._seq
        tag = hash_tag(stream.encode()).decode() or f"{{{stream}}}"
        return f"{self._seq}:{tag}"

    def batches(self, streams: list[str]) -> list[list[str]]:
        """The streams, in groups that one command may name together."""
        if not self.cluster:
            return [
                streams[start : start + KEYS_PER_CALL]
                for start in range(0, len(streams), KEYS_PER_CALL)
            ]
        by_slot: dict[str, list[str]] = {}
        for stream in streams:
            by_slot.setdefault(self.seq(stream), []).append(stream)
        return list(by_slot.values())


def _escape_glob(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
