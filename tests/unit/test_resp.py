"""The publisher's RESP packing must produce exactly what redis-py would send."""

from __future__ import annotations

from redis.asyncio.connection import Connection

from schwab_stream.publish.resp import CommandBuffer


def redis_py_bytes(*args: bytes) -> bytes:
    return b"".join(Connection().pack_command(*args))


def test_commands_pack_byte_for_byte_as_redis_py_does() -> None:
    payload = b'{"type":"tick","symbol":"BRK/B","note":"\\r\\n in JSON"}' + bytes(range(256))
    commands = [
        (b"XADD", b"schwab:tick:BRK/B", b"MAXLEN", b"~", b"100000", b"*", b"data", payload),
        (b"MSET", b"schwab:latest:tick:A", b"", b"schwab:latest:tick:B", payload * 100),
        (b"SET", b"schwab:heartbeat", b"1755118704147", b"PX", b"15000"),
    ]
    buffer = CommandBuffer()
    for command in commands:
        buffer.add(*command)
    assert buffer.commands == 3
    assert buffer.getvalue() == b"".join(redis_py_bytes(*command) for command in commands)


def test_an_empty_buffer_has_no_commands() -> None:
    buffer = CommandBuffer()
    assert (buffer.commands, buffer.getvalue()) == (0, b"")
