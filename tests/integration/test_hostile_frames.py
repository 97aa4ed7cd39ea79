"""Hostile frames end to end (issue #14, item 1): a real bridge on the simulator and Redis takes
frames a hostile or broken server could send, through `POST /sim/fault/raw`, and keeps
streaming. Each is counted under a bounded `frames_bad_total` reason and logged once, never with
a traceback; none ends `run` or the reader.

The frame of the review: ~1,000 brackets in 2 KB, which used to raise RecursionError out of the
decoder (`run` exited 1), or, arriving while a SUBS waited for its answer, killed the reader
without a log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schwab_stream.events import AccountEvent
from schwab_stream.sim.server import SimThread
from tests.unit.test_hostile_frames import SERVICES, data_frame, deep_value, hostile_frames

from .fault_helpers import Bridge, Bridges
from .pipeline_helpers import stream, wait_for

QUOTES = {"LEVELONE_EQUITIES": ["AAPL"]}
DEEP = "[" * 1_000 + "]" * 1_000
#: The review's frame: a level-one item with a field nested 1,000 deep (2 KB)
DEEP_FRAME = json.dumps(
    {
        "data": [
            {
                "service": "LEVELONE_EQUITIES",
                "timestamp": 1,
                "command": "SUBS",
                "content": [{"key": "AAPL", "1": 1.5, "99": "X"}],
            }
        ]
    }
).replace('"X"', DEEP)


@pytest.fixture(autouse=True)
def _info_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")


@pytest.fixture
def sim(sim_factory: Callable[..., SimThread]) -> SimThread:
    """A simulator quoting briskly, with heartbeats twice a second."""
    return sim_factory(rate=40, heartbeat_interval=0.5)


async def quoting(bridges: Bridges, sim: SimThread, subs: dict[str, list[str]] = QUOTES) -> Bridge:
    """A bridge on `sim` once AAPL's quotes reach Redis."""
    bridge = await bridges.start(sim, subs)
    await wait_for(lambda: bridge.ticks("AAPL"))
    return bridge


async def post_raw(sim: SimThread, text: str, on: str | None = None) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=sim.base_url) as http:
        response = await http.post(
            "/sim/fault/raw", content=text.encode(), params={"on": on} if on else {}
        )
        response.raise_for_status()
        answer: dict[str, Any] = response.json()
        return answer


def lines(caplog: pytest.LogCaptureFixture, needle: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if needle in r.getMessage()]


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.exc_info or "Traceback" in r.getMessage()]
    assert not bad, [r.getMessage() for r in bad]


async def ticks_keep_coming(bridge: Bridge, more: int = 3) -> None:
    before = len(await bridge.ticks("AAPL"))

    async def grown() -> bool:
        return len(await bridge.ticks("AAPL")) >= before + more

    await wait_for(grown)
    assert not bridge.task.done()


def reconnects(bridge: Bridge) -> int:
    return sum(bridge.pipeline.client.stats.reconnects.values())


async def test_a_deeply_nested_frame_is_counted_logged_once_and_streaming_goes_on(
    sim: SimThread,
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = await quoting(bridges, sim, {**QUOTES, "ACCT_ACTIVITY": ["x"]})
    assert len(DEEP_FRAME) < 2_200
    assert (await post_raw(sim, DEEP_FRAME))["connections"] == 1
    await wait_for(lambda: bridge.pipeline.client.stats.bad_frames["too_deep"] == 1)
    await ticks_keep_coming(bridge)
    await post_raw(sim, DEEP_FRAME)
    await wait_for(lambda: bridge.pipeline.client.stats.bad_frames["too_deep"] == 2)
    await ticks_keep_coming(bridge)

    # An order event whose message (ACCT_ACTIVITY field 3, JSON text) is nested 1,000 deep:
    # published with the message as the text it came as, the problem counted under the reason.
    message = "{" + '"a":{' * 999 + "}" * 1_000
    account = {"key": "x", "seq": 1, "1": "123", "2": "OrderCreated", "3": message}
    frame = {"data": [{"service": "ACCT_ACTIVITY", "timestamp": 1, "command": "SUBS"}]}
    frame["data"][0]["content"] = [account]  # type: ignore[index]
    await post_raw(sim, json.dumps(frame))

    async def account_events() -> list[AccountEvent]:
        events = await stream(bridge.redis, "schwab:account")
        return [e for e in events if isinstance(e, AccountEvent)]

    (event,) = await wait_for(account_events)
    assert event.message_type == "OrderCreated" and event.data == message
    await ticks_keep_coming(bridge)

    assert bridge.metric("frames_bad_total", reason="too_deep") == 3
    assert reconnects(bridge) == 0
    assert len(lines(caplog, "malformed frame")) == 1  # once, for the first
    assert "too_deep" in lines(caplog, "malformed frame")[0]
    assert lines(caplog, "stream data problem") == [
        "stream data problem (reported once per kind): too_deep:ACCT_ACTIVITY:3"
    ]
    assert not any("[[" in r.getMessage() for r in caplog.records)  # never the frame
    assert_no_traceback(caplog)


async def test_a_deeply_nested_frame_while_a_subs_waits_for_its_answer(
    sim: SimThread,
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The frame goes out just before the SUBS answer: the reader must live to read it, or the
    session would end with "no response to SUBS" and loop."""
    assert (await post_raw(sim, DEEP_FRAME, on="SUBS"))["armed"] == "SUBS"
    bridge = await bridges.start(sim, QUOTES, command_timeout=3)
    await wait_for(lambda: bridge.has_state("subscribed"))
    await ticks_keep_coming(bridge)
    assert bridge.pipeline.client.stats.bad_frames["too_deep"] == 1
    assert bridge.metric("frames_bad_total", reason="too_deep") == 1
    assert reconnects(bridge) == 0
    assert (await bridge.states()).count("subscribed") == 1
    assert len(lines(caplog, "malformed frame")) == 1
    assert not lines(caplog, "no response to")
    assert_no_traceback(caplog)


async def test_a_bug_handling_one_frame_is_counted_and_skipped(
    sim: SimThread,
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Whatever one frame makes our code raise ends neither the reader nor the session."""
    bridge = await quoting(bridges, sim)
    normalizer = bridge.pipeline.client.normalizer
    feed = normalizer.feed
    failures = 3

    def failing_feed(*args: Any) -> Any:
        nonlocal failures
        if failures:
            failures -= 1
            raise RecursionError("secret frame content")
        return feed(*args)

    normalizer.feed = failing_feed  # type: ignore[method-assign]
    await wait_for(lambda: failures == 0)
    await ticks_keep_coming(bridge)
    assert bridge.metric("frames_bad_total", reason="internal") == 3
    assert reconnects(bridge) == 0
    (line,) = lines(caplog, "malformed frame")
    assert "internal" in line and "RecursionError" in line and "secret" not in line
    assert_no_traceback(caplog)


async def test_a_frame_over_the_size_bound_is_a_reconnect_said_once(
    sim: SimThread,
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = await bridges.start(sim, QUOTES)
    bridge.pipeline.client.max_frame_bytes = 64 * 1024  # before it connects: the task waits
    await wait_for(lambda: bridge.ticks("AAPL"))
    big = DEEP_FRAME.replace(DEEP, json.dumps("x" * 100_000))
    for n in (1, 2):
        await post_raw(sim, big)
        await wait_for(lambda n=n: bridge.has_state("subscribed", n + 1), timeout=15)
    await ticks_keep_coming(bridge)
    assert bridge.metric("frames_bad_total", reason="too_large") == 2
    assert bridge.metric("reconnects_total", reason="closed") == 2
    (line,) = lines(caplog, "malformed frame")
    assert "too_large" in line and "65536 bytes" in line
    details = [r.getMessage() for r in caplog.records if getattr(r, "state", "") == "disconnected"]
    assert len(details) == 2 and all("(1009)" in d for d in details)
    assert_no_traceback(caplog)


async def test_generated_hostile_frames_through_a_real_bridge(
    sim: SimThread,
    bridges: Bridges,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A handful of the unit property test's frames, each with one of its deeply nested values
    in a data item, sent by the simulator: the bridge keeps streaming and logs no traceback.
    (Notifies and responses are left out: a generated code 12 or 30 is obeyed, rightly.)"""
    frames: list[str] = []

    @settings(
        max_examples=6,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(hostile_frames(), deep_value(), st.sampled_from(SERVICES))
    def collect(raw: str | bytes, deep: str, service: str) -> None:
        text = raw.decode() if isinstance(raw, bytes) else raw
        if text and "notify" not in text and "response" not in text:
            frames.append(text)
        frames.append(data_frame(service, f'{{"key":"AAPL","3":{deep},"99":{deep}}}'))

    collect()
    assert len(frames) >= 6
    bridge = await quoting(bridges, sim, {**QUOTES, "ACCT_ACTIVITY": ["x"]})
    for text in frames:
        await post_raw(sim, text)
    await asyncio.sleep(0.2)
    await ticks_keep_coming(bridge)
    assert reconnects(bridge) == 0
    bad = bridge.pipeline.client.stats.bad_frames
    assert bad["too_deep"] >= 1 and bad["internal"] == 0
    assert_no_traceback(caplog)
