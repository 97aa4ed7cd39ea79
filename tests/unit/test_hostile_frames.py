"""Hostile frames (issue #14, item 1): nothing the server sends may end the process.

A 2 KB frame of JSON nested ~1,000 deep made msgspec raise RecursionError out of `decode_frame`
(in the frame, in a data item, in a book) and out of the normalizer's ACCT_ACTIVITY message
decode, and the simulator's `--replay` on the same line. Each is now a counted, bounded kind.
The property tests feed nested, huge, wrong-typed, truncated and unknown-shaped frames and raw
bytes straight to `decode_frame` + `Normalizer.feed`: only ProtocolError may come out, and every
event they make must encode (the publisher encodes it later, where a failure would be fatal).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schwab_stream.errors import ProtocolError
from schwab_stream.events import AccountEvent, TickEvent, decode_event, encode_event
from schwab_stream.sim.replay import load_replay, parse_frame
from schwab_stream.stream.normalize import Normalizer
from schwab_stream.stream.problems import MAX_VALUE_DEPTH, Problem, too_deep
from schwab_stream.stream.protocol import DataMessage, Frame, decode_frame

#: The `frames_bad_total` reasons a whole frame can have (docs/operations.md).
FRAME_KINDS = frozenset(
    {"not_json", "invalid_utf8", "bad_shape", "empty", "bad_notify", "too_deep", "too_large"}
)


def nested(depth: int, opener: str = "[") -> str:
    """JSON nested `depth` deep: `[[[...]]]` or `{"a":{"a":...{}}}`."""
    if opener == "[":
        return "[" * depth + "]" * depth
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def data_frame(service: str, item: str) -> str:
    head = f'{{"data":[{{"service":"{service}","timestamp":1,"command":"SUBS","content":['
    return f"{head}{item}]}}]}}"


def deep_frames(depth: int, opener: str) -> dict[str, str]:
    deep = nested(depth, opener)
    return {
        "frame": deep,
        "envelope": f'{{"data":{deep}}}',
        "unknown envelope key": f'{{"x":{deep}}}',
        "level one item": data_frame("LEVELONE_EQUITIES", f'{{"key":"AAPL","99":{deep}}}'),
        "level one content": data_frame("LEVELONE_EQUITIES", deep),
        "book side": data_frame("NASDAQ_BOOK", f'{{"key":"AAPL","2":{deep}}}'),
        "book maker": data_frame(
            "NYSE_BOOK", f'{{"key":"AAPL","2":[{{"0":1.5,"1":100,"2":1,"3":{deep}}}]}}'
        ),
        "account item": data_frame("ACCT_ACTIVITY", f'{{"key":"k","3":{deep}}}'),
        "notify": f'{{"notify":[{{"heartbeat":{deep}}}]}}',
        "response": f'{{"response":[{{"service":"ADMIN","command":"LOGIN","requestid":"1",'
        f'"content":{deep}}}]}}',
    }


#: Where the typed decode refuses the first bracket for its type before any depth is reached
#: (a data block must be an object, a heartbeat a number, ...): `bad_shape`, also fine.
REFUSED_FOR_SHAPE = {
    "[": {"frame", "envelope", "level one content", "notify", "response"},
    "{": {"envelope", "notify"},
}


@pytest.mark.parametrize("where", sorted(deep_frames(1, "[")))
@pytest.mark.parametrize("opener", ["[", "{"])
@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize("as_bytes", [False, True])
def test_deep_nesting_is_a_too_deep_protocol_error(
    where: str, opener: str, depth: int, as_bytes: bool
) -> None:
    text = deep_frames(depth, opener)[where]
    raw: bytes | str = text.encode() if as_bytes else text
    with pytest.raises(ProtocolError) as caught:  # not RecursionError
        decode_frame(raw)
    expected = "bad_shape" if where in REFUSED_FOR_SHAPE[opener] else "too_deep"
    assert caught.value.kind == expected
    assert "[[" not in str(caught.value) and '{"a"' not in str(caught.value)  # never echoed


def test_the_2kb_frame_of_the_review() -> None:
    """~1,000 brackets in a level-one item: 2 KB that used to end `run` with exit 1."""
    raw = data_frame("LEVELONE_EQUITIES", f'{{"key":"AAPL","1":1.5,"99":{nested(1_000)}}}')
    assert len(raw) < 2_200
    with pytest.raises(ProtocolError) as caught:
        decode_frame(raw)
    assert caught.value.kind == "too_deep"


def stack_depth() -> int:
    frame, depth = sys._getframe(1), 1
    while frame.f_back is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def _at_stack_depth(frames: int, call: Any) -> Any:
    """Run `call` with about `frames` more Python frames on the stack (as in the reader task,
    whose stack is deeper than a test's)."""
    if frames <= 0:
        return call()
    return _at_stack_depth(frames - 1, call)


def test_moderate_nesting_deep_in_the_stack_is_still_a_protocol_error() -> None:
    """What fits the recursion limit depends on how deep the caller already is: the same frame
    may decode at the top and not deeper down. Either way, never a RecursionError."""
    raw = data_frame("LEVELONE_EQUITIES", f'{{"key":"AAPL","99":{nested(400)}}}')
    decode_frame(raw)  # fine from a shallow stack
    room = sys.getrecursionlimit() - stack_depth()
    with pytest.raises(ProtocolError) as caught:
        _at_stack_depth(room - 350, lambda: decode_frame(raw))  # 350 frames left: too few
    assert caught.value.kind == "too_deep"


# --- the normalizer -----------------------------------------------------------------------------


def account(*items: dict[str, Any]) -> DataMessage[Any]:
    return DataMessage(service="ACCT_ACTIVITY", timestamp=1, content=list(items))


@pytest.mark.parametrize("depth", [MAX_VALUE_DEPTH + 1, 1_000, 50_000])
def test_a_nested_account_message_is_counted_and_the_feed_goes_on(depth: int) -> None:
    normalizer = Normalizer()
    text = nested(depth, "{")
    events = normalizer.feed(
        account(
            {"key": "k", "1": "123", "2": "OrderCreated", "3": text},
            {"key": "k", "1": "123", "2": "OrderAccepted", "3": '{"orderId": 7}'},
        ),
        1,
    )
    first, second = events
    assert isinstance(first, AccountEvent) and isinstance(second, AccountEvent)
    assert first.data == text  # kept as the text it came as, like text that is not JSON
    assert second.data == {"orderId": 7}
    assert normalizer.by_kind == {Problem.TOO_DEEP: 1}
    assert normalizer.new_problems() == ["too_deep:ACCT_ACTIVITY:3"]
    for event in events:
        encode_event(event)


def test_an_account_message_within_the_bound_is_decoded() -> None:
    normalizer = Normalizer()
    text = nested(MAX_VALUE_DEPTH, "{")
    (event,) = normalizer.feed(account({"key": "k", "3": text}), 1)
    assert isinstance(event, AccountEvent) and event.data == json.loads(text)
    assert normalizer.by_kind == {}
    assert decode_event(encode_event(event)) == event


def test_an_account_message_sent_as_nested_json_not_text_is_left_out() -> None:
    normalizer = Normalizer()
    (event,) = normalizer.feed(account({"key": "k", "3": json.loads(nested(100, "{"))}), 1)
    assert isinstance(event, AccountEvent) and event.data is None
    assert normalizer.by_kind == {Problem.TOO_DEEP: 1}


@pytest.mark.parametrize("wide", [False, True], ids=["delta", "snapshot"])
def test_a_nested_level_one_field_is_left_out_of_its_event(wide: bool) -> None:
    """Both merge paths: a narrow delta key by key, a wide item by its shape's plan."""
    deep = json.loads(nested(MAX_VALUE_DEPTH + 1))
    item: dict[str, Any] = {"key": "AAPL", "1": 1.5, "2": 1.6, "99": deep, "cusip": [[1]]}
    if wide:
        item.update({str(n): 1.0 for n in range(3, 12)})
    normalizer = Normalizer()
    (event,) = normalizer.feed(
        DataMessage(service="LEVELONE_EQUITIES", timestamp=1, content=[item]), 1
    )
    assert isinstance(event, TickEvent)
    assert event.bid == 1.5 and event.ask == 1.6
    assert "f99" not in event.fields and event.fields["cusip"] == [[1]]
    assert "f99" not in event.changed
    assert normalizer.by_kind[Problem.TOO_DEEP] == 1
    assert "too_deep:LEVELONE_EQUITIES:99" in normalizer.new_problems()
    encode_event(event)


def test_too_deep_is_iterative_and_exact() -> None:
    assert not too_deep(1) and not too_deep("[[[")
    assert not too_deep([]) and not too_deep({}, limit=1)
    assert too_deep([[]], limit=1) and not too_deep([[]], limit=2)
    assert too_deep({"a": [1, {"b": []}]}, limit=2) and not too_deep({"a": [1, {"b": 2}]}, 3)
    value: list[Any] = []
    for _ in range(200_000):  # far past the recursion limit: a recursive walk would fail
        value = [value]
    assert too_deep(value)


# --- the simulator's replay ---------------------------------------------------------------------


def test_replay_survives_a_line_nested_too_deep(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    deep = data_frame("LEVELONE_EQUITIES", f'{{"key":"AAPL","99":{nested(100_000)}}}')
    good = data_frame("LEVELONE_EQUITIES", '{"key":"AAPL","1":1.5}')
    path = tmp_path / "hostile.jsonl"
    path.write_text(f"{good}\n{deep}\n{deep}\n{good}\n")
    assert parse_frame(deep).services == frozenset()
    with caplog.at_level(logging.WARNING, logger="schwab_stream.sim.replay"):
        frames = load_replay(path)
    assert [f.text for f in frames] == [good, deep, deep, good]  # sent as written
    assert frames[0].services == frames[3].services == {"LEVELONE_EQUITIES"}
    (line,) = [r.getMessage() for r in caplog.records]
    assert "2 line(s) could not be parsed" in line and "first at line 2" in line


# --- properties ---------------------------------------------------------------------------------

HOSTILE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SERVICES = [
    "LEVELONE_EQUITIES",
    "LEVELONE_FUTURES",
    "NASDAQ_BOOK",
    "NYSE_BOOK",
    "OPTIONS_BOOK",
    "CHART_EQUITY",
    "SCREENER_EQUITY",
    "ACCT_ACTIVITY",
    "NO_SUCH_SERVICE",
]
KEYS = ["0", "1", "2", "3", "4", "7", "42", "key", "seq", "symbol", "service", "content", "data"]

scalars = (
    st.none()
    | st.booleans()
    | st.integers()  # past 64 bits too
    | st.floats()  # nan and infinity are written as JSON's invalid tokens
    | st.text(max_size=8)
    | st.sampled_from(["", "{", '{"a": 1}', "[[[", "1755118704127", "AAPL", "\u0000"])
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=16,
)


@st.composite
def deep_value(draw: st.DrawFn) -> str:
    """A JSON value nested anywhere from a few to many thousand levels, of arrays, objects or
    both, sometimes as the JSON text of an account message."""
    depth = draw(st.integers(1, 3_000) | st.sampled_from([63, 64, 65, 999, 1_000, 20_000]))
    openers = draw(st.lists(st.sampled_from(["[", '{"a":', '{"3":', "[1,"]), min_size=1))
    closers = {"[": "]", '{"a":': "}", '{"3":': "}", "[1,": "]"}
    chosen = [openers[i % len(openers)] for i in range(depth)]
    head = "".join(chosen)
    tail = "".join(closers[o] for o in reversed(chosen))
    text = head + "0" + tail
    return json.dumps(text) if draw(st.booleans()) else text


@st.composite
def hostile_frames(draw: st.DrawFn) -> str | bytes:
    """A server frame with something wrong anywhere: nesting, size, types, shape, truncation."""
    service = draw(st.sampled_from(SERVICES))
    value = draw(deep_value() | json_values.map(json.dumps) | st.just("9" * 5_000))
    key = draw(st.sampled_from(KEYS))
    shape = draw(st.integers(0, 5))
    if shape == 0:  # the value in an item's field
        text = data_frame(service, f'{{"key":"AAPL","{key}":{value}}}')
    elif shape == 1:  # the value as an item, or as the content
        text = data_frame(service, value)
    elif shape == 2:  # in a book level
        text = data_frame(service, f'{{"key":"A","2":[{{"0":1,"1":2,"2":3,"{key}":{value}}}]}}')
    elif shape == 3:  # in a notify or a response
        text = draw(
            st.sampled_from(
                [
                    f'{{"notify":[{{"heartbeat":{value}}}]}}',
                    f'{{"notify":[{{"service":"ADMIN","content":{{"code":{value}}}}}]}}',
                    f'{{"response":[{{"service":"ADMIN","command":"SUBS","requestid":{value},'
                    f'"content":{{"code":0}}}}]}}',
                ]
            )
        )
    elif shape == 4:  # an envelope of anything
        text = json.dumps(draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=3)))
    else:  # a whole item of anything
        item = draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=6))
        text = data_frame(service, json.dumps(item))
    if draw(st.integers(0, 5)) == 0:  # truncated
        text = text[: draw(st.integers(0, len(text)))]
    return text.encode() if draw(st.booleans()) else text


def decode_and_feed(raw: str | bytes) -> None:
    """Only ProtocolError may leave decode_frame, nothing may leave Normalizer.feed, and every
    event must encode (a value too deep for the encoder must never reach an event)."""
    try:
        frame: Frame = decode_frame(raw)
    except ProtocolError as exc:
        assert exc.kind in FRAME_KINDS, exc.kind
        return
    normalizer = Normalizer()
    for message in frame.data:
        for event in normalizer.feed(message, 1):
            _at_stack_depth(100, lambda event=event: encode_event(event))
    assert set(normalizer.by_kind) <= set(Problem)


@HOSTILE
@given(hostile_frames())
def test_hostile_frames_raise_nothing_but_protocol_error(raw: str | bytes) -> None:
    decode_and_feed(raw)


@HOSTILE
@given(st.binary(max_size=2_000))
def test_byte_garbage_raises_nothing_but_protocol_error(raw: bytes) -> None:
    decode_and_feed(raw)


@HOSTILE
@given(deep_value(), st.sampled_from(SERVICES))
def test_deep_values_in_the_stack_of_a_busy_reader(value: str, service: str) -> None:
    """The same, called from deeper in the stack, where the recursion limit is closer."""
    raw = data_frame(service, f'{{"key":"AAPL","3":{value},"99":{value}}}')
    _at_stack_depth(300, lambda: decode_and_feed(raw))


def test_problem_details_named_by_the_server_stay_bounded() -> None:
    """A frame of 100,000 distinct unknown fields is counted in full, but it cannot grow the
    detail counter (or the once-per-detail log lines) without bound."""
    item = {"key": "AAPL", **{f"x{n}": 1 for n in range(100_000)}}
    normalizer = Normalizer()
    normalizer.feed(DataMessage(service="LEVELONE_EQUITIES", timestamp=1, content=[item]), 1)
    assert normalizer.by_kind == {Problem.UNKNOWN_FIELD: 100_000}
    assert normalizer.stats.total() == 100_000
    assert len(normalizer.stats) <= 257
    assert normalizer.stats["unknown_field:(more)"] == 100_000 - (len(normalizer.stats) - 1)
    assert len(normalizer.new_problems()) == len(normalizer.stats)
