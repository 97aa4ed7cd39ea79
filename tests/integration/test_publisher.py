"""The publisher against a real redis-server: keys, batching, and a Redis outage. The sequences
of its rules (which flight may overtake which, what a refusal holds) are unit tests of its core,
tests/unit/test_publisher_core.py; here they are proven on the wire."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import replace

import pytest
import redis.asyncio as aioredis

from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    Event,
    Level2Event,
    StatusEvent,
    TickEvent,
    decode_event,
)
from schwab_stream.publish import wire
from schwab_stream.publish.core import PublisherCore
from schwab_stream.publish.keys import StreamKeys
from schwab_stream.publish.redis import TradingEventPublisher

from .pipeline_helpers import wait_for, xlen_at_least


def tick(symbol: str, seq: int, last: float) -> TickEvent:
    return TickEvent(
        service="LEVELONE_EQUITIES",
        symbol=symbol,
        seq=seq,
        recv_ns=time.time_ns(),
        last=last,
        changed=["last"],
    )


def bar(symbol: str, seq: int) -> BarEvent:
    return BarEvent(service="CHART_EQUITY", symbol=symbol, seq=seq, recv_ns=time.time_ns())


async def read_seqs(client: aioredis.Redis, key: str) -> list[int]:
    return [e.seq for e in await read_stream(client, key)]  # type: ignore[attr-defined]


async def read_stream(client: aioredis.Redis, key: str) -> list[object]:
    entries = await client.xrange(key)
    return [decode_event(fields[b"data"]) for _, fields in entries]


async def test_events_reach_their_streams_and_latest_keys(redis_url: str) -> None:
    pub = TradingEventPublisher(redis_url, prefix="t", maxlen=1000)
    task = asyncio.create_task(pub.run())
    pub.submit([tick("AAPL", 1, 1.0), tick("AAPL", 2, 2.0), tick("/ESZ24", 1, 5.0)])
    pub.submit([Level2Event(service="NASDAQ_BOOK", symbol="MSFT", seq=1, venue="NASDAQ")])
    pub.submit([AccountEvent(service="ACCT_ACTIVITY", symbol="k", seq=1, message_type="X")])
    pub.status("connected", "hello")
    assert await pub.flush(5)
    await pub.close()
    await task

    client = aioredis.Redis.from_url(redis_url)
    ticks = await read_stream(client, "t:tick:AAPL")
    assert [e.seq for e in ticks] == [1, 2]  # type: ignore[attr-defined]
    assert len(await read_stream(client, "t:tick:/ESZ24")) == 1
    assert len(await read_stream(client, "t:level2:MSFT")) == 1
    assert len(await read_stream(client, "t:account")) == 1
    status = await read_stream(client, "t:status")
    assert isinstance(status[0], StatusEvent) and status[0].state == "connected"
    latest = decode_event(await client.get("t:latest:tick:AAPL"))
    assert isinstance(latest, TickEvent) and latest.last == 2.0
    assert await client.get("t:latest:level2:MSFT") is not None
    assert await client.pttl("t:heartbeat") > 0
    assert pub.stats.published["tick"] == 3
    await client.aclose()


async def test_streams_are_capped(redis_url: str) -> None:
    pub = TradingEventPublisher(redis_url, prefix="cap", maxlen=100)
    task = asyncio.create_task(pub.run())
    for i in range(20):
        pub.submit([tick("AAPL", i * 100 + j, float(j)) for j in range(100)])
        await asyncio.sleep(0)
    await pub.close()
    await task
    client = aioredis.Redis.from_url(redis_url)
    length = await client.xlen("cap:tick:AAPL")
    assert 100 <= length < 2000  # MAXLEN ~ trims whole macro nodes
    await client.aclose()


async def test_redis_outage_conflates_quotes_keeps_bars_and_marks_the_gap(
    redis_server: EmbeddedRedis, redis_url: str
) -> None:
    pub = TradingEventPublisher(redis_url, prefix="g", maxlen=10_000, queue_size=100)
    task = asyncio.create_task(pub.run())
    pub.submit([tick("AAPL", 1, 1.0)])
    assert await pub.flush(5)

    redis_server.kill()
    seq = 1
    for round_ in range(30):
        seq += 1
        pub.submit([tick("AAPL", seq, float(seq)), tick("MSFT", seq, float(seq))])
        pub.submit([bar("AAPL", round_ + 1)])
        await asyncio.sleep(0.01)
    assert not await pub.flush(0.2)  # nothing can be written now
    redis_server.start()
    assert await pub.flush(15)
    await pub.close()
    await task

    client = aioredis.Redis.from_url(redis_url)
    ticks = await read_stream(client, "g:tick:AAPL")
    bars = await read_stream(client, "g:bar:AAPL")
    assert [b.seq for b in bars] == list(range(1, 31))  # type: ignore[attr-defined]
    # quotes: in order, ending with the latest value, the rest conflated and counted
    seqs = [t.seq for t in ticks]  # type: ignore[attr-defined]
    assert seqs == sorted(seqs) and seqs[-1] == seq
    assert pub.stats.conflated["tick"] > 0
    status = await read_stream(client, "g:status")
    gaps = [s for s in status if isinstance(s, StatusEvent) and s.state == "gap"]
    assert len(gaps) == 1 and gaps[0].info["conflated"] == pub.stats.conflated["tick"]
    await client.aclose()


async def test_a_full_queue_conflates_quotes_says_so_once_and_keeps_bars(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    pub = TradingEventPublisher(redis_url, prefix="p", maxlen=10_000, queue_size=100)
    for i in range(1, 301):  # a burst the reader hands over before the publisher runs at all
        pub.submit([tick("AAPL", i, float(i)), tick("MSFT", i, float(i)), bar("AAPL", i)])
    task = asyncio.create_task(pub.run())
    assert await pub.flush(10)
    await pub.close()
    await task

    full = [r for r in caplog.records if "publish queue full" in r.getMessage()]
    drained = [r for r in caplog.records if "publish queue drained" in r.getMessage()]
    assert len(full) == 1 and len(drained) == 1
    assert drained[0].conflated == sum(pub.stats.conflated.values()) > 0  # type: ignore[attr-defined]
    client = aioredis.Redis.from_url(redis_url)
    bars = await read_stream(client, "p:bar:AAPL")
    assert [b.seq for b in bars] == list(range(1, 301))  # type: ignore[attr-defined]
    ticks = await read_stream(client, "p:tick:AAPL")
    assert ticks[-1].seq == 300 and len(ticks) < 300  # type: ignore[attr-defined]
    await client.aclose()


@pytest.mark.parametrize("batch", [1, 50])  # plain XADDs, then the script call
async def test_a_key_of_the_wrong_type_holds_its_stream_and_every_bar_arrives_once_fixed(
    redis_url: str, batch: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis refuses the entries of a key of the wrong type: that stream alone is held (Redis is
    not treated as down), it is tried again, backing off, and once the key is fixed every bar
    arrives, in order (bars are never conflated), then a `gap` status event naming the stream."""
    prefix = f"err{batch}"
    client = aioredis.Redis.from_url(redis_url)
    await client.set(f"{prefix}:bar:AAPL", "not a stream")
    pub = TradingEventPublisher(redis_url, prefix=prefix, maxlen=1000)
    task = asyncio.create_task(pub.run())
    pub.submit([bar("AAPL", i) for i in range(1, batch + 1)])
    deadline = time.monotonic() + 5
    while pub.stats.redis_errors < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert pub.stats.redis_errors >= 2  # tried again, refused again
    assert pub.redis_ok and pub.held_streams == [f"{prefix}:bar:AAPL"]
    pub.submit([tick("MSFT", 1, 1.0)])
    await wait_for(lambda: xlen_at_least(client, f"{prefix}:tick:MSFT", 1), timeout=5)
    await client.delete(f"{prefix}:bar:AAPL")
    assert await pub.flush(10)
    await pub.close()
    await task
    bars = await read_stream(client, f"{prefix}:bar:AAPL")
    assert [e.seq for e in bars] == list(range(1, batch + 1))  # type: ignore[attr-defined]
    status = await read_stream(client, f"{prefix}:status")
    gaps = [e for e in status if isinstance(e, StatusEvent) and e.state == "gap"]
    assert len(gaps) == 1 and gaps[0].info["stream"] == f"{prefix}:bar:AAPL"
    assert gaps[0].info["reason"].startswith("WRONGTYPE")
    assert pub.held_streams == []
    held = [r for r in caplog.records if "refused writes to" in r.getMessage()]
    assert len(held) == 1  # said once, however many tries
    await client.aclose()


async def test_a_refused_key_does_not_slow_the_other_streams(redis_url: str) -> None:
    """While one stream's key is refused, every other stream keeps getting every quote (none
    conflated, no back-off); the refused one's quotes are conflated to its newest, which
    arrives once the key is fixed."""
    client = aioredis.Redis.from_url(redis_url)
    await client.set("slow:tick:BAD", "not a stream")
    pub = TradingEventPublisher(redis_url, prefix="slow", maxlen=1000)
    task = asyncio.create_task(pub.run())
    for seq in range(1, 41):
        pub.submit([tick("GOOD", seq, float(seq)), tick("BAD", seq, float(seq))])
        await asyncio.sleep(0.005)
    await wait_for(lambda: xlen_at_least(client, "slow:tick:GOOD", 40), timeout=5)
    assert pub.redis_ok and pub.held_streams == ["slow:tick:BAD"]
    await client.delete("slow:tick:BAD")
    assert await pub.flush(10)
    await pub.close()
    await task
    assert await read_seqs(client, "slow:tick:GOOD") == list(range(1, 41))
    bad = await read_seqs(client, "slow:tick:BAD")
    assert bad[-1] == 40 and bad == sorted(bad) and len(bad) < 40
    assert pub.stats.conflated["tick"] == 40 - len(bad)
    latest = decode_event(await client.get("slow:latest:tick:BAD"))
    assert isinstance(latest, TickEvent) and latest.seq == 40
    await client.aclose()


async def _user_without(admin: aioredis.Redis, server: EmbeddedRedis, command: str) -> str:
    """The URL of a Redis user that may run every command but `command` (user `no<command>`)."""
    await admin.execute_command(
        "ACL", "SETUSER", f"no{command}", "on", ">pw", "~*", "&*", "+@all", f"-{command}"
    )
    return f"redis://no{command}:pw@127.0.0.1:{server.port}/0"


async def test_a_refusal_of_every_key_is_a_gap_for_every_stream(
    redis_server: EmbeddedRedis, redis_url: str
) -> None:
    """A refusal that is not about one key (here NOPERM: the user may not XADD at all) is
    treated as Redis failing: a gap for every stream, not a hold of one."""
    admin = aioredis.Redis.from_url(redis_url)
    url = await _user_without(admin, redis_server, "xadd")
    pub = TradingEventPublisher(url, prefix="nx", maxlen=1000)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit([bar("AAPL", 1)])
        deadline = time.monotonic() + 5
        while pub.stats.redis_errors == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not pub.redis_ok and pub.held_streams == []
        await admin.execute_command("ACL", "SETUSER", "noxadd", "+xadd")
        assert await pub.flush(10)
        assert await read_seqs(admin, "nx:bar:AAPL") == [1]
        status = await read_stream(admin, "nx:status")
        gaps = [e for e in status if isinstance(e, StatusEvent) and e.state == "gap"]
        assert len(gaps) == 1 and "stream" not in gaps[0].info
    finally:
        await pub.close()
        await task
        await admin.execute_command("ACL", "DELUSER", "noxadd")
        await admin.aclose()


async def test_close_counts_the_events_of_a_held_stream_as_not_written(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing while a stream's key is still refused: one last try, then its events are
    counted as not written, without waiting out the close timeout."""
    client = aioredis.Redis.from_url(redis_url)
    await client.set("hc:bar:AAPL", "not a stream")
    pub = TradingEventPublisher(redis_url, prefix="hc", maxlen=1000)
    task = asyncio.create_task(pub.run())
    pub.submit([bar("AAPL", i) for i in range(1, 4)])
    await wait_for(lambda: pub.held_streams == ["hc:bar:AAPL"], timeout=5)
    await asyncio.wait_for(pub.close(timeout=600), 10)
    await asyncio.wait_for(task, 5)
    lines = [r.getMessage() for r in caplog.records if "closing with" in r.getMessage()]
    assert lines == ["closing with 3 events not written to redis"]
    await client.aclose()


async def _submit_until_in_flight(pub: TradingEventPublisher, batches: list[list[Event]]) -> None:
    """Submit each batch once the publisher has taken the previous one off its queue."""
    for batch in batches:
        pub.submit(list(batch))
        deadline = time.monotonic() + 5
        while pub.depth and pub.core.in_flight < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.005)


def _quotes(first: int) -> list[Event]:
    return [tick(f"S{i}", 1, float(i)) for i in range(first, first + 3)]


async def test_two_batches_go_out_before_the_first_reply_and_a_third_waits(
    redis_url: str,
) -> None:
    """With Redis holding writes, two batches of quotes are sent (off the queue) and the third
    waits for a slot; once writes resume every quote arrives once."""
    client = aioredis.Redis.from_url(redis_url)
    pub = TradingEventPublisher(redis_url, prefix="fly", maxlen=1000)
    task = asyncio.create_task(pub.run())
    pub.submit([bar("WARM", 1)])  # connect before writes are held
    assert await pub.flush(5)
    await client.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        await _submit_until_in_flight(pub, [_quotes(1), _quotes(4), _quotes(7)])
        await asyncio.sleep(0.05)
        assert pub.stats.batches == 1  # the warm-up only: nothing answered while held
        assert pub.depth == 3  # two batches in flight, the third still queued
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")
    assert await pub.flush(5)
    await pub.close()
    await task
    for i in range(1, 10):
        assert await read_seqs(client, f"fly:tick:S{i}") == [1]
    assert pub.stats.batches == 4 and pub.stats.redis_errors == 0
    await client.aclose()


async def test_a_connection_lost_with_two_batches_in_flight_sends_both_again_in_order(
    redis_url: str,
) -> None:
    """Both flights die with their connection: both go back in front of the queue, oldest
    first, ahead of what was submitted meanwhile, so the newest quote of a stream wins."""
    client = aioredis.Redis.from_url(redis_url)
    pub = TradingEventPublisher(redis_url, prefix="lost", maxlen=1000)
    task = asyncio.create_task(pub.run())
    pub.submit([bar("WARM", 1)])
    assert await pub.flush(5)
    await client.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        await _submit_until_in_flight(
            pub, [[tick("AAPL", 1, 1.0)], [tick("AAPL", 2, 2.0)], [bar("AAPL", 1)]]
        )
        assert pub.depth == 1 and pub.core.in_flight == 2
        # Held commands of a killed client are dropped, never run: nothing was written yet.
        await client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        deadline = time.monotonic() + 5
        while pub.stats.redis_errors == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert pub.stats.redis_errors == 1 and not pub.redis_ok
    finally:
        await client.execute_command("CLIENT", "UNPAUSE")
    assert await pub.flush(10)
    await pub.close()
    await task
    # under the gap the two quotes were conflated to the newer, which alone was written
    assert await read_seqs(client, "lost:tick:AAPL") == [2]
    latest = decode_event(await client.get("lost:latest:tick:AAPL"))
    assert isinstance(latest, TickEvent) and latest.last == 2.0
    assert pub.stats.conflated["tick"] == 1
    assert await read_seqs(client, "lost:bar:AAPL") == [1]
    states = [e.state for e in await read_stream(client, "lost:status")]  # type: ignore[attr-defined]
    assert states.count("gap") == 1
    await client.aclose()


@pytest.mark.parametrize("pairs", [2, 30])  # plain XADDs, then the script call
async def test_a_refused_key_holds_only_its_own_entries_and_nothing_is_written_twice(
    redis_url: str, pairs: int
) -> None:
    """Redis refuses the entries of a key of the wrong type: the other stream's entries of the
    same batches are written once, however many times the refused ones are tried again, and
    once the key is fixed the refused ones arrive, in order."""
    prefix = f"ref{pairs}"
    client = aioredis.Redis.from_url(redis_url)
    await client.set(f"{prefix}:bar:BAD", "not a stream")
    pub = TradingEventPublisher(redis_url, prefix=prefix, maxlen=1000)
    task = asyncio.create_task(pub.run())
    pub.submit([e for i in range(1, pairs + 1) for e in (bar("GOOD", i), bar("BAD", i))])
    deadline = time.monotonic() + 5
    while pub.stats.redis_errors < 3 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert pub.stats.redis_errors >= 3 and pub.redis_ok  # tried again, refused again
    pub.submit([bar("GOOD", pairs + 1)])
    await asyncio.sleep(0.3)
    await client.delete(f"{prefix}:bar:BAD")
    assert await pub.flush(10)
    await pub.close()
    await task
    good = await read_stream(client, f"{prefix}:bar:GOOD")
    bad = await read_stream(client, f"{prefix}:bar:BAD")
    assert [e.seq for e in good] == list(range(1, pairs + 2))  # type: ignore[attr-defined]
    assert [e.seq for e in bad] == list(range(1, pairs + 1))  # type: ignore[attr-defined]
    assert pub.stats.published["bar"] == 2 * pairs + 1
    states = [e.state for e in await read_stream(client, f"{prefix}:status")]  # type: ignore[attr-defined]
    assert states.count("gap") == 1
    await client.aclose()


async def test_a_refused_latest_key_write_is_tried_again_without_going_back_in_time(
    redis_server: EmbeddedRedis, redis_url: str
) -> None:
    """A user that may XADD but not MSET: stream entries are written once, the latest keys wait,
    and once MSET is allowed they hold the newest value, even with no new event to carry it."""
    admin = aioredis.Redis.from_url(redis_url)
    url = await _user_without(admin, redis_server, "mset")
    pub = TradingEventPublisher(url, prefix="nm", maxlen=1000)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit([tick("AAPL", 1, 1.0)])
        deadline = time.monotonic() + 5
        while pub.stats.redis_errors == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        pub.submit([tick("AAPL", 2, 2.0), tick("MSFT", 1, 7.0)])
        await asyncio.sleep(0.3)
        assert not pub.redis_ok
        assert await admin.get("nm:latest:tick:AAPL") is None
        await admin.execute_command("ACL", "SETUSER", "nomset", "+mset")
        assert await pub.flush(10)
        latest = decode_event(await admin.get("nm:latest:tick:AAPL"))
        assert isinstance(latest, TickEvent) and latest.last == 2.0
        assert decode_event(await admin.get("nm:latest:tick:MSFT")).last == 7.0  # type: ignore[attr-defined]
        ticks = await read_stream(admin, "nm:tick:AAPL")
        assert [e.seq for e in ticks] == [1, 2]  # type: ignore[attr-defined]
        assert pub.redis_ok
    finally:
        await pub.close()
        await task
        await admin.execute_command("ACL", "DELUSER", "nomset")
        await admin.aclose()


async def test_close_counts_batches_in_flight_as_not_written(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis holds writes and close() gives up: the log counts the events in flight too."""
    admin = aioredis.Redis.from_url(redis_url)
    pub = TradingEventPublisher(redis_url, prefix="cl", maxlen=1000)
    task = asyncio.create_task(pub.run())
    pub.submit([bar("WARM", 1)])
    assert await pub.flush(5)
    await admin.execute_command("CLIENT", "PAUSE", 5000, "WRITE")
    try:
        pub.submit([bar("AAPL", i) for i in range(1, 4)])
        await wait_for(lambda: not pub.depth and pub.core.in_flight == 1, timeout=5)
        await pub.close(timeout=0.3)
        await asyncio.wait_for(task, 5)
    finally:
        await admin.execute_command("CLIENT", "UNPAUSE")
        await admin.aclose()
    lines = [r.getMessage() for r in caplog.records if "closing with" in r.getMessage()]
    assert lines == ["closing with 3 events not written to redis"]


async def _kill_publisher_connection(admin: aioredis.Redis) -> None:
    await admin.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")


@pytest.mark.parametrize("held", ["bar:BAD", "status"])
async def test_a_connection_blip_while_a_stream_is_held_is_a_short_gap_and_keeps_the_hold(
    redis_url: str, held: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection drops while one stream is held (a bar stream, or the status stream
    itself, with no other traffic): Redis is marked up again as soon as it answers, the global
    gap covers the blip only, and the hold goes on (said once), ending in its own gap event."""
    prefix = "blip" + held.split(":")[0]
    key = f"{prefix}:{held}"
    admin = aioredis.Redis.from_url(redis_url)
    await admin.set(key, "not a stream")
    pub = TradingEventPublisher(redis_url, prefix=prefix, maxlen=1000)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit([bar("WARM", 1)])
        assert await pub.flush(5)
        if held == "bar:BAD":
            pub.submit([bar("BAD", 1)])
        else:
            pub.status("connected", "hello")
        await wait_for(lambda: pub.held_streams == [key], timeout=5)
        await _kill_publisher_connection(admin)

        def said_unavailable() -> bool:  # the next try found the socket dead (a gap of
            # milliseconds: polling redis_ok could miss it, the log line cannot)
            return any("redis unavailable" in r.getMessage() for r in caplog.records)

        await wait_for(said_unavailable, timeout=5)
        await wait_for(lambda: pub.redis_ok, timeout=5)  # answered: up, the key still held
        assert pub.held_streams == [key]
        await admin.delete(key)
        assert await pub.flush(10)
    finally:
        await pub.close()
        await task
    gaps = [e for e in await read_stream(admin, f"{prefix}:status") if e.state == "gap"]  # type: ignore[attr-defined]
    outage = [g for g in gaps if "stream" not in g.info]
    assert len(outage) == 1 and outage[0].info["end_ns"] - outage[0].info["start_ns"] < 1e9
    assert [g.info["stream"] for g in gaps if "stream" in g.info] == [key]
    said = [r for r in caplog.records if f"refused writes to {key}" in r.getMessage()]
    assert len(said) == 1
    await admin.aclose()


async def test_a_hold_outlives_a_lost_connection_and_its_gap_counts_what_it_conflated(
    redis_url: str,
) -> None:
    """A quote stream is held and its quotes conflated; the key is fixed and the connection
    drops before the next try: the stream's own gap event still comes, with its count."""
    admin = aioredis.Redis.from_url(redis_url)
    await admin.set("hv:tick:BAD", "not a stream")
    pub = TradingEventPublisher(redis_url, prefix="hv", maxlen=1000)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit([tick("BAD", 1, 1.0)])
        # Held, and no try of it out (one is, now and then, until its refusal comes back):
        # the ten quotes below then all land in the hold, each replacing the one before.
        await wait_for(
            lambda: pub.held_streams == ["hv:tick:BAD"] and not pub.core.in_flight,
            timeout=5,
            interval=0.001,
        )
        for seq in range(2, 12):
            pub.submit([tick("BAD", seq, float(seq))])  # conflated in the hold
        assert pub.stats.conflated["tick"] == 10
        await admin.delete("hv:tick:BAD")
        await _kill_publisher_connection(admin)
        assert await pub.flush(10)
    finally:
        await pub.close()
        await task
    assert await read_seqs(admin, "hv:tick:BAD") == [11]
    gaps = [e for e in await read_stream(admin, "hv:status") if e.state == "gap"]  # type: ignore[attr-defined]
    held = [g for g in gaps if g.info.get("stream") == "hv:tick:BAD"]
    assert len(held) == 1 and held[0].info["conflated"] == 10
    await admin.aclose()


async def test_refused_tries_record_no_latency_sample(redis_url: str) -> None:
    """Latency is receive-to-written: a held stream's refused tries are not samples (they would
    report seconds while every written event takes a millisecond)."""
    admin = aioredis.Redis.from_url(redis_url)
    await admin.set("lat:bar:BAD", "not a stream")
    pub = TradingEventPublisher(redis_url, prefix="lat", maxlen=1000)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit([bar("BAD", 1)])
        await wait_for(lambda: pub.stats.redis_errors >= 4, timeout=5)
        pub.submit([bar("GOOD", 1)])
        await wait_for(lambda: pub.stats.published["bar"] == 1, timeout=5)
    finally:
        await pub.close(timeout=0.1)
        await task
    assert len(pub.stats.latencies_ns) == 1 and pub.stats.latencies_ns[0][0] < 500e6
    await admin.aclose()


_BREAK = """
if redis.call('TYPE', KEYS[1]).ok == 'stream' then redis.call('RENAME', KEYS[1], KEYS[2]) end
redis.call('SET', KEYS[1], 'not a stream')
"""
_FIX = """
redis.call('DEL', KEYS[1])
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('RENAME', KEYS[2], KEYS[1]) end
"""


@pytest.mark.parametrize("kills", [False, True])
@pytest.mark.parametrize("seed", range(2))  # 40 more seeds run on the core alone (unit tests)
async def test_keys_broken_and_fixed_at_random_lose_nothing_and_never_go_back(
    redis_url: str, seed: int, kills: bool
) -> None:
    """Quotes, bars and status events on several streams while their keys are made the wrong
    type and fixed again at random (the entries kept aside meanwhile), and with `kills` the
    connection dropped now and then. Bars all arrive, in order (a dropped connection may
    repeat some); quotes are in order and end with the newest, as does the latest key; with
    no kills, every event is written or counted as conflated, once."""
    rnd = random.Random(seed + 1000 * kills)
    prefix = f"fz{seed}{int(kills)}"
    admin = aioredis.Redis.from_url(redis_url)
    pub = TradingEventPublisher(redis_url, prefix=prefix, maxlen=100_000, queue_size=50)
    task = asyncio.create_task(pub.run())
    symbols = ["A", "B", "C"]
    keys = [f"{prefix}:{kind}:{s}" for kind in ("tick", "bar") for s in symbols]
    keys.append(f"{prefix}:status")
    ticks = dict.fromkeys(symbols, 0)
    bars = dict.fromkeys(symbols, 0)
    broken: set[str] = set()
    for _ in range(300):
        events: list[Event] = []
        for _ in range(rnd.randint(1, 8)):
            s = rnd.choice(symbols)
            if rnd.random() < 0.7:
                ticks[s] += 1
                events.append(tick(s, ticks[s], float(ticks[s])))
            else:
                bars[s] += 1
                events.append(bar(s, bars[s]))
        pub.submit(events)
        if rnd.random() < 0.02:
            pub.status("note", "fuzz")
        if rnd.random() < 0.05:
            key = rnd.choice(keys)
            await admin.eval(_FIX if key in broken else _BREAK, 2, key, f"{key}:kept")  # type: ignore[misc]
            broken ^= {key}
        if kills and rnd.random() < 0.02:
            await _kill_publisher_connection(admin)
        await asyncio.sleep(rnd.choice([0, 0, 0.001, 0.003]))
    for key in broken:
        await admin.eval(_FIX, 2, key, f"{key}:kept")  # type: ignore[misc]
    assert await pub.flush(20), (pub.held_streams, pub.depth)
    await pub.close()
    await task
    written = 0
    for s in symbols:
        bar_seqs = list(dict.fromkeys(await read_seqs(admin, f"{prefix}:bar:{s}")))
        assert bar_seqs == list(range(1, bars[s] + 1))
        tick_seqs = await read_seqs(admin, f"{prefix}:tick:{s}")
        firsts = list(dict.fromkeys(tick_seqs))
        assert firsts == sorted(firsts) and (not ticks[s] or firsts[-1] == ticks[s])
        if ticks[s]:
            latest = decode_event(await admin.get(f"{prefix}:latest:tick:{s}"))
            assert isinstance(latest, TickEvent) and latest.seq == ticks[s]
        written += len(tick_seqs)
    assert pub.redis_ok and pub.held_streams == []
    if not kills:
        assert pub.stats.published["tick"] == written
        assert written + pub.stats.conflated["tick"] == sum(ticks.values())
        assert pub.stats.published["status"] == await admin.xlen(f"{prefix}:status")
    await admin.aclose()


async def test_a_quiet_publisher_finds_redis_back_with_its_heartbeat() -> None:
    """No event flows: the heartbeat write is what notices Redis going and coming back, so
    `redis_ok` (and /healthz, `redis_up`) does not wait for the next quote, and the gap event
    comes at once."""
    server = EmbeddedRedis().start()
    pub = TradingEventPublisher(server.url, prefix="quiet", maxlen=1000, heartbeat_ttl=0.3)
    task = asyncio.create_task(pub.run())
    try:
        pub.submit([bar("AAPL", 1)])
        assert await pub.flush(5)
        server.stop()
        await wait_for(lambda: not pub.redis_ok, timeout=5)  # a heartbeat write failed
        server.start()
        await wait_for(lambda: pub.redis_ok, timeout=10)  # and a later one got its answer
        assert pub.stats.published["bar"] == 1  # no event carried it
        assert await pub.flush(5)
        client = aioredis.Redis.from_url(server.url)
        gaps = [e for e in await read_stream(client, "quiet:status") if e.state == "gap"]  # type: ignore[attr-defined]
        assert len(gaps) == 1 and "stream" not in gaps[0].info  # type: ignore[attr-defined]
        await client.aclose()
    finally:
        await pub.close(timeout=0.5)
        await task
        server.stop()


async def test_a_stall_longer_than_the_write_timeout_writes_nothing_twice() -> None:
    """Redis stops (SIGSTOP) past the write timeout with batches on the wire: the publisher
    gives up on them and sends them again once Redis is back, while Redis, resumed, runs the
    first copies from its socket buffer too. Bars, account and status events arrive exactly
    once, in order (before the watermark they were written twice: 4 of 4 tries in a review)."""
    server = EmbeddedRedis().start()
    assert server.proc is not None
    pub = TradingEventPublisher(server.url, prefix="stall", maxlen=100_000)
    pub.write_timeout = 0.3
    task = asyncio.create_task(pub.run())
    bars = accounts = 0
    try:
        pub.submit([bar("WARM", 1)])
        assert await pub.flush(5)
        for round_ in range(3):
            for _ in range(20):
                bars += 1
                accounts += 1
                pub.submit([bar("AAPL", bars), AccountEvent(seq=accounts, recv_ns=time.time_ns())])
                await asyncio.sleep(0.002)
            server.proc.send_signal(signal.SIGSTOP)
            bars += 1
            pub.submit([bar("AAPL", bars)])  # on the wire when Redis stops
            await asyncio.sleep(0.8)  # the write times out, the publisher backs off
            server.proc.send_signal(signal.SIGCONT)
            pub.status("note", f"round {round_}")
            assert await pub.flush(10)
        client = aioredis.Redis.from_url(server.url)
        assert await read_seqs(client, "stall:bar:AAPL") == list(range(1, bars + 1))
        assert await read_seqs(client, "stall:account") == list(range(1, accounts + 1))
        notes = [e for e in await read_stream(client, "stall:status") if e.state == "note"]  # type: ignore[attr-defined]
        assert [e.detail for e in notes] == [f"round {n}" for n in range(3)]  # type: ignore[attr-defined]
        assert pub.stats.redis_errors >= 1  # the stall was seen
        await client.aclose()
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        await pub.close(timeout=1)
        await task
        server.stop()


async def test_the_write_script_skips_its_own_entries_sent_again_but_not_another_writers(
    redis_url: str,
) -> None:
    """The same packed flight sent twice adds its entries once; another writer's flight (a
    standby that took over, its seq back at 1) is written even below the stream's last seq."""
    keys = StreamKeys("once")
    core = PublisherCore(keys)
    core.submit([bar("AAPL", 1), bar("AAPL", 2), AccountEvent(seq=1, recv_ns=1)])
    flight = core.next_flight(time.monotonic())
    assert flight is not None
    flight = replace(flight, check=True)  # as a flight sent again after a lost answer is
    settings = wire.WriteSettings(b"1000", b"once:heartbeat", b"15000", b"once:written", b"w1")
    data, _ = wire.pack(flight, settings)
    client = aioredis.Redis.from_url(redis_url)
    await client.execute_command(*wire.LOAD)  # as the publisher does on each connection
    host, port = redis_url.split("//")[1].split("/")[0].split(":")
    for writer_data in (data, data, wire.pack(flight, replace(settings, writer=b"w2"))[0]):
        reader_, writer = await asyncio.open_connection(host, int(port))
        writer.write(writer_data)
        await writer.drain()
        await reader_.read(65536)
        writer.close()
        await writer.wait_closed()
    assert await read_seqs(client, "once:bar:AAPL") == [1, 2, 1, 2]  # w1 once, then w2
    assert await read_seqs(client, "once:account") == [1, 1]
    await client.aclose()


async def test_a_script_flush_mid_stream_reloads_it_and_loses_nothing(redis_url: str) -> None:
    """The write script goes as EVALSHA, loaded as the connection is made: a SCRIPT FLUSH while
    flights are in flight (NOSCRIPT) ends the connection, the next one loads it again, and the
    flights go again: every bar once and in order, the newest quote in the latest key."""
    admin = aioredis.Redis.from_url(redis_url)
    loads = (await admin.info("commandstats")).get("cmdstat_eval", {}).get("calls", 0)
    pub = TradingEventPublisher(redis_url, prefix="flush", maxlen=100_000)
    task = asyncio.create_task(pub.run())
    rounds = 0
    for flush_at in (50, 120):
        while rounds < flush_at + 30:
            rounds += 1
            pub.submit([e for s in ("A", "B") for e in (tick(s, rounds, rounds), bar(s, rounds))])
            if rounds == flush_at:
                await admin.script_flush()
            await asyncio.sleep(0.002)
    assert await pub.flush(20)
    await pub.close()
    await task
    for symbol in ("A", "B"):
        assert await read_seqs(admin, f"flush:bar:{symbol}") == list(range(1, rounds + 1))
        ticks = await read_seqs(admin, f"flush:tick:{symbol}")
        assert ticks == sorted(set(ticks)) and ticks[-1] == rounds
        latest = decode_event(await admin.get(f"flush:latest:tick:{symbol}"))
        assert isinstance(latest, TickEvent) and latest.seq == rounds
    # loaded at the first connect and again after each flush, which cost a short gap each
    assert (await admin.info("commandstats"))["cmdstat_eval"]["calls"] - loads >= 3
    gaps = [e for e in await read_stream(admin, "flush:status") if e.state == "gap"]  # type: ignore[attr-defined]
    assert [g.info["reason"].split(":")[0] for g in gaps] == ["NoScriptError"] * 2  # type: ignore[attr-defined]
    await admin.aclose()
