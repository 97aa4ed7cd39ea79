"""A write connection's bytes, both ways: a packed flight written to its transport, and its
replies read back in order by one long-lived reader. The standalone path has one such connection,
cluster mode one per primary (`publish/cluster.py`).

The reader takes every reply that has arrived from the connection's own hiredis reader in one
go (no coroutine per reply); a write goes to the transport and is drained only past the
high-water mark (redis-py's send is a coroutine and a drain per call). redis-py's calls remain
the fallback for another parser or transport.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import NoReturn

import hiredis
from redis._parsers.hiredis import NOT_ENOUGH_DATA as _NOT_ENOUGH_DATA
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from schwab_stream.publish.wire import LOAD, ErrorReply

#: The transport is drained past this many buffered bytes (asyncio's default high-water mark);
#: the reader takes up to this much of the socket at a time.
HIGH_WATER = 64 * 1024
_READ_SIZE = 64 * 1024


async def write(conn: AbstractConnection, data: bytes) -> None:
    """Send packed commands. No timer here: a send that cannot drain is the caller's watchdog's
    (it cuts the connection)."""
    writer = getattr(conn, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is None or transport.is_closing():
        await conn.send_packed_command(data, check_health=False)
        return
    transport.write(data)
    if transport.get_write_buffer_size() > HIGH_WATER:
        await conn.send_packed_command(b"", check_health=False)


async def load_script(conn: AbstractConnection) -> None:
    """Load the write script on a new connection, for EVALSHA. An error reply (a user without
    scripting) is left for the flights' own calls to meet, as the refusal they report."""
    await conn.send_command(*LOAD, check_health=False)
    with contextlib.suppress(ResponseError):
        await conn.read_response()


def abort(conn: AbstractConnection | None) -> None:
    """Cut the connection now (a stuck send fails, the reader ends)."""
    writer = getattr(conn, "_writer", None)
    transport = getattr(writer, "transport", None)
    if transport is not None:
        transport.abort()


async def read_replies(
    conn: AbstractConnection,
    deliver: Callable[[object], None],
    lost: tuple[type[ResponseError], ...] = (),
) -> NoReturn:
    """Hand each reply to `deliver`, in order, until the connection ends (raises its error). An
    error reply is an outcome (`ErrorReply`) and leaves the connection in step, except one of
    `lost`, which is raised (cluster mode: a redirection)."""
    parser = getattr(conn, "_parser", None)
    hiredis_reader = getattr(parser, "_reader", None)
    stream = getattr(parser, "_stream", None)
    if not isinstance(hiredis_reader, hiredis.Reader) or stream is None:
        read = conn.read_response  # redis-py's parser, one call per reply
        while True:
            try:
                reply = await read(disable_decoding=True)
            except ResponseError as exc:
                if isinstance(exc, lost):
                    raise
                reply = ErrorReply(str(exc))
            deliver(reply)
    gets, feed, read_some = hiredis_reader.gets, hiredis_reader.feed, stream.read
    while True:
        reply = gets(False)
        if reply is _NOT_ENOUGH_DATA or reply is False:
            data = await read_some(_READ_SIZE)
            if not data:
                raise RedisConnectionError("Connection closed by server.")
            feed(data)
            continue
        if isinstance(reply, BaseException):
            if not isinstance(reply, ResponseError) or isinstance(reply, lost):
                raise reply
            reply = ErrorReply(str(reply))
        deliver(reply)
