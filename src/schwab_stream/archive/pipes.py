"""Many commands in one round trip, on any topology, each reply or error kept apart (Redis edge).

The archive's reads hand entries out: sent twice, the first run's entries would
be pending for this archiver and never seen. So nothing here sends a command again after a
connection error (the caller knows it may have run: `unsure`); only replies that say the command
did not run (NOSCRIPT, MOVED, ASK) are sent again. A `Multi` is several commands run as one
(MULTI/EXEC, all keys in one slot): nothing of another client runs between them.

`OnePipe` is one pipeline on one connection (a single Redis, or the primary behind Sentinel,
where `confirm` appends `WAIT`: what the commands wrote is on that many replicas before it is
trusted, so a failover cannot hand the same entries out twice). `NodePipes` is one pipeline per
cluster node, grouped by the node owning each command's key, with `WAIT` on a node that has a
replica.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis
from redis.client import CaseInsensitiveDict
from redis.cluster import RedisCluster
from redis.exceptions import (
    AskError,
    ConnectionError,
    MovedError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    ResponseError,
    TryAgainError,
)

log = logging.getLogger("schwab_stream.archive")


class Multi(NamedTuple):
    """Commands run as one transaction; its reply is EXEC's (each command's reply or error), or
    the error that kept it from running (MOVED, ASK, EXECABORT)."""

    commands: tuple[tuple[Any, ...], ...]


#: A command: the key that says where it goes (on a cluster), and its words (or a Multi)
Command = tuple[str, tuple[Any, ...] | Multi]
#: How long WAIT gives the replicas (ms)
CONFIRM_MS = 250
#: Replies that say the command did not run where it was sent (AskError covers MOVED too)
_NOT_RUN = (AskError, TryAgainError)


def unsure(reply: object) -> bool:
    """An error after which the command may or may not have run (the connection failed)."""
    return isinstance(reply, RedisError) and not isinstance(reply, ResponseError)


class Confirmation:
    """Whether replicas confirm the archive's writes: said once when none did in time, and
    once when one does again."""

    def __init__(self) -> None:
        self.short = False

    def seen(self, wanted: int, replicas: object) -> None:
        short = not isinstance(replicas, int) or replicas < wanted
        if short and not self.short:
            log.warning(
                "no replica confirmed the archive's writes within %d ms: a failover now could "
                "hand entries out again (archived twice); carrying on",
                CONFIRM_MS,
            )
        elif not short and self.short:
            log.info("a replica confirms the archive's writes again")
        self.short = short


def _pipeline(
    client: redis.Redis, commands: Sequence[Command], confirm: int, confirmation: Confirmation
) -> list[Any]:
    """`commands` in one pipeline on one connection, then with `confirm` WAIT for that many
    replicas (WAIT counts what this connection wrote). Each reply as Redis sent it (no
    redis-py callback: a command queued in a MULTI answers QUEUED), or its error as the value;
    a failed connection is every command's error."""
    spans = []
    try:
        with client.pipeline(transaction=False) as pipe:
            pipe.response_callbacks = CaseInsensitiveDict({})  # (the client's stays whole)
            for _key, words in commands:
                if isinstance(words, Multi):
                    sent = (("MULTI",), *words.commands, ("EXEC",))
                else:
                    sent = (words,)
                for one in sent:
                    pipe.execute_command(*one)  # type: ignore[no-untyped-call]
                spans.append(len(sent))
            if confirm:
                pipe.execute_command("WAIT", confirm, CONFIRM_MS)  # type: ignore[no-untyped-call]
            replies = pipe.execute(raise_on_error=False)
    except RedisError as exc:
        return [exc] * len(commands)
    if confirm:
        confirmation.seen(confirm, replies.pop())
    out, start = [], 0
    for span in spans:
        part = replies[start : start + span]
        start += span
        # a Multi: the first command refused while queueing (MOVED, ASK: nothing ran), or EXEC's
        refused = [r for r in part[1:-1] if isinstance(r, RedisError)]
        out.append(part[0] if span == 1 else refused[0] if refused else part[-1])
    return out


class OnePipe:
    """One pipeline on one connection; with `confirm`, WAIT for that many replicas after it."""

    def __init__(self, client: redis.Redis, confirm: int = 0) -> None:
        self.client = client
        self.confirm = confirm
        self.confirmation = Confirmation()

    def send(self, commands: Sequence[Command]) -> list[Any]:
        if not commands:
            return []
        return _pipeline(self.client, commands, self.confirm, self.confirmation)


class NodePipes:
    """One pipeline per cluster node owning the commands' keys, each followed by WAIT 1 when
    the node has a replica (as behind Sentinel: a promoted replica holds what the archive
    used). A reply that the slot moved refreshes the slot table and the command goes again
    through the cluster client, which follows MOVED and ASK; a failed node refreshes the table
    too (a replica may have taken over) and is the error of its commands."""

    def __init__(self, client: Any) -> None:
        #: A redis.cluster.RedisCluster
        self.client = client
        self.confirmation = Confirmation()

    def send(self, commands: Sequence[Command]) -> list[Any]:
        replies: list[Any] = [None] * len(commands)
        #: node name -> its client, whether it has a replica, the commands' indexes
        by_node: dict[str, tuple[redis.Redis, int, list[int]]] = {}
        try:
            for index, (key, _words) in enumerate(commands):
                node = self.client.get_node_from_key(key)
                if node.name not in by_node:
                    served_by = self.client.nodes_manager.slots_cache.get(self.client.keyslot(key))
                    replica = 1 if served_by and len(served_by) > 1 else 0
                    by_node[node.name] = (self.client.get_redis_connection(node), replica, [])
                by_node[node.name][2].append(index)
        except (RedisError, RedisClusterException) as exc:
            self._refresh()  # (a slot no node serves in the table: learnt again)
            return [_as_redis_error(exc)] * len(commands)
        refresh = False
        for node_client, replica, indexes in by_node.values():
            node_commands = [commands[i] for i in indexes]
            node_replies = _pipeline(node_client, node_commands, replica, self.confirmation)
            for index, reply in zip(indexes, node_replies, strict=True):
                replies[index] = reply
                refresh |= isinstance(reply, _NOT_RUN) or unsure(reply)
        if refresh:
            self._refresh()
        for index, reply in enumerate(replies):
            if isinstance(reply, _NOT_RUN):
                replies[index] = self._one(commands[index], reply)
        return replies

    def _one(self, command: Command, refused: RedisError) -> Any:
        """`command` again where the slot is now: the cluster client follows MOVED and ASK; a
        Multi goes to the slot's node (after ASK, the importing node, with ASKING first)."""
        key, words = command
        try:
            if not isinstance(words, Multi):
                return self.client.execute_command(*words)
            if isinstance(refused, AskError) and not isinstance(refused, MovedError):
                node = self.client.get_node(host=refused.host, port=refused.port)
                sent: list[Command] = [(key, ("ASKING",)), command]
            else:
                node = self.client.get_node_from_key(key)
                sent = [command]
            if node is None:
                return refused
            node_client = self.client.get_redis_connection(node)
            return _pipeline(node_client, sent, 0, self.confirmation)[-1]
        except RedisError as exc:
            return exc
        except RedisClusterException as exc:
            return _as_redis_error(exc)

    def _refresh(self) -> None:
        """Learn the slots again (the next sends go where they are served now)."""
        try:
            self.client.nodes_manager.initialize()
        except (RedisError, RedisClusterException) as exc:
            log.debug("cannot learn the cluster's slots yet: %s", exc)


def _as_redis_error(exc: Exception) -> RedisError:
    """A cluster that cannot be used (slots not covered, no node answers) is a connection error
    like any Redis trouble: the archiver rides it out."""
    if isinstance(exc, RedisError):
        return exc
    return ConnectionError(f"no usable Redis Cluster: {exc}")


class GuardedCluster(RedisCluster):
    """The blocking cluster client whose "no usable cluster" (slots not covered, no node
    answers: redis-py's RedisClusterException, not a RedisError) is a ConnectionError, so the
    archiver rides it out like any Redis trouble."""

    def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().execute_command(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisClusterException as exc:
            raise _as_redis_error(exc) from None


def guarded(client: Any) -> Any:
    """`client` (a RedisCluster from redis_client.sync_redis) as a GuardedCluster."""
    client.__class__ = GuardedCluster
    return client


class Lua:
    """A script sent by EVALSHA through pipes, loaded again where a server does not know it (a
    node restarted or promoted) and sent again there: NOSCRIPT means it did not run."""

    def __init__(self, client: Any, text: str) -> None:
        self.client = client
        self.text = text
        self.sha = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def run(
        self, pipes: OnePipe | NodePipes, calls: Sequence[tuple[Sequence[Any], Sequence[Any]]]
    ) -> list[Any]:
        """Each call's (keys, args) reply, or its error as the value."""
        commands = [
            (keys[0], ("EVALSHA", self.sha, len(keys), *keys, *args)) for keys, args in calls
        ]
        replies = pipes.send(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            try:
                self.client.script_load(self.text)
            except RedisError as exc:
                return [exc if i in missing else r for i, r in enumerate(replies)]
            again = pipes.send([commands[i] for i in missing])
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        return replies
