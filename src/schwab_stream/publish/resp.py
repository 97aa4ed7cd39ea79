"""RESP packing of the publisher's write commands, done in C by hiredis.

redis-py packs each argument in Python and runs its pipeline machinery per batch; for a batch of
small JSON payloads that was the larger part of a write's CPU (docs/performance.md, "Figures
behind design choices"). Our arguments are already bytes, so a batch is packed into one buffer
and the publisher sends it on a plain redis-py connection and reads the replies.
`hiredis.pack_command` (hiredis is already redis-py's reply parser here) packs in C.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import hiredis

#: hiredis (>= 2.2.1, we need >= 2.3) packs any number of arguments; its stub says one.
_pack = cast(Callable[[tuple[bytes, ...]], bytes], hiredis.pack_command)


class CommandBuffer:
    """Commands packed back to back in RESP, and how many replies they will get."""

    __slots__ = ("_parts", "commands")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.commands = 0

    def add(self, *args: bytes) -> None:
        self._parts.append(_pack(args))
        self.commands += 1

    def add_all(self, args: Sequence[bytes]) -> None:
        """One command whose arguments are `args` (bytes: the caller encodes)."""
        self._parts.append(_pack(tuple(args)))
        self.commands += 1

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
