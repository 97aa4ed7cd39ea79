"""Hostile requests to /metrics, /healthz and /livez: what is not HTTP the server serves (a header
or URL past aiohttp's limits, too many headers, a broken chunk) is one log line per kind, never a
traceback, and the endpoints keep answering."""

from __future__ import annotations

import asyncio
import logging

import pytest

from schwab_stream.telemetry.health import Health
from schwab_stream.telemetry.metrics import Metrics
from schwab_stream.telemetry.server import start_metrics_server

HOSTILE = [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"a" * 20000 + b"\r\n\r\n",
    b"GET /livez HTTP/1.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(300)) + b"\r\n",
    b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"\x00\x01 not http\r\n\r\n",
    b"TRACE /livez HTTP/1.1\r\nHost: x\r\n\r\n",
]


async def _exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(200), 10)
    writer.close()
    return answer


async def test_bad_requests_are_one_line_each_kind_and_the_endpoints_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    server = await start_metrics_server("127.0.0.1", 0, Metrics(), Health(), 30.0)
    try:
        for _ in range(2):
            for data in HOSTILE:
                answer = await _exchange(server.port, data)
                assert answer.split(b"\r\n")[0].split(b" ")[1] in (b"400", b"405"), answer
        _reader, slow = await asyncio.open_connection("127.0.0.1", server.port)
        slow.write(b"GET /livez HTTP/1.1\r\nHost")  # and never the rest
        live = await _exchange(server.port, b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
        assert live.startswith(b"HTTP/1.1 200"), live
        slow.close()
    finally:
        await server.stop()
    said = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert not [r for r in said if r.exc_info or r.exc_text], [r.getMessage() for r in said]
    lines = [r.getMessage() for r in said]
    assert all("\n" not in line for line in lines), lines
    assert len(lines) == len(set(lines)) <= 3, lines  # LineTooLong, BadHttpMessage, ...
