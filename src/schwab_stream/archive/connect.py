"""The archive's Redis parts for one topology: the group reader and the claims, on one client.

A single Redis and a Sentinel-managed primary take one pipeline on one connection; behind
Sentinel what the reads and intents write is confirmed on a replica (WAIT) before it is used,
so a failover cannot hand the same entries out twice. A cluster gets the cluster layout of the
keys (keys.py), one pipeline per node (confirmed the same way on a node with a replica), and a
client whose "no usable cluster" is a Redis error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from schwab_stream.archive.claims import Claims
from schwab_stream.archive.keys import ArchiveKeys
from schwab_stream.archive.pipes import NodePipes, OnePipe, guarded
from schwab_stream.archive.source import GroupSource
from schwab_stream.redis_topology import Kind

#: Replicas that must hold the archive's writes behind Sentinel
SENTINEL_CONFIRM = 1


def redis_parts(
    client: Any,
    kind: Kind,
    prefix: str,
    group: str,
    consumer: str,
    root: Path,
    dead_seconds: float,
) -> tuple[GroupSource, Claims]:
    cluster = kind is Kind.CLUSTER
    keys = ArchiveKeys(prefix, group, cluster)
    if cluster:
        client = guarded(client)
    pipes = (
        NodePipes(client)
        if cluster
        else OnePipe(client, SENTINEL_CONFIRM if kind is Kind.SENTINEL else 0)
    )
    source = GroupSource(client, keys, consumer, pipes)
    claims = Claims(client, keys, consumer, root, dead_seconds, pipes, source.handed)
    return source, claims
