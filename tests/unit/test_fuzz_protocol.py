"""Fuzz the streamer input path: only ProtocolError may leave decode_frame, nothing leaves
Normalizer.feed, every item becomes an event or a counted bad item, and every event is valid
under the contract schema (so a wrong type never reaches Redis)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schwab_stream.errors import ProtocolError
from schwab_stream.events import TickEvent, decode_event, encode_event
from schwab_stream.stream.fields import FIELD_NAMES, TICK_CORE_ATTRS, TICK_TIME_ATTRS
from schwab_stream.stream.normalize import Normalizer
from schwab_stream.stream.problems import Problem
from schwab_stream.stream.protocol import BookItem, DataMessage, Frame, decode_frame
from tests.frames import load_frames

SERVER_FRAMES: list[Any] = [
    f["message"]
    for f in load_frames()
    if f["direction"] == "server->client" and f.get("message") is not None
]
DATA_FRAMES = [m for m in SERVER_FRAMES if "data" in m]
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "{", '{"a": 1}', "[1]", "1755118704127", "key"])
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["0", "1", "2", "3", "4", "key", "seq", "symbol"])
            | st.text(max_size=6),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


#: The `frames_bad_total` reasons of a whole frame (docs/operations.md): a closed set.
FRAME_ERROR_KINDS = frozenset(
    {"not_json", "invalid_utf8", "bad_shape", "empty", "bad_notify", "too_deep", "too_large"}
)


def decode_or_protocol_error(raw: bytes | str) -> Frame | None:
    try:
        return decode_frame(raw)
    except ProtocolError as exc:
        assert exc.kind in FRAME_ERROR_KINDS, exc.kind  # a bounded label, never the message
        return None


def check_feed(frame: Frame) -> None:
    """Feed every data message; account for every item; every event must round-trip."""
    normalizer = Normalizer()
    kinds = normalizer.by_kind
    for message in frame.data:
        before = kinds[Problem.ITEM_NO_KEY] + kinds[Problem.ITEM_NOT_OBJECT]
        unknown_before = kinds[Problem.UNKNOWN_SERVICE]
        events = normalizer.feed(message, 1)
        bad_items = kinds[Problem.ITEM_NO_KEY] + kinds[Problem.ITEM_NOT_OBJECT] - before
        if kinds[Problem.UNKNOWN_SERVICE] > unknown_before:
            assert events == []
            continue
        keyed = [
            i
            for i in message.content
            if isinstance(i, BookItem) or (isinstance(i.get("key"), str) and i["key"])
        ]
        assert len(events) == len(keyed)
        assert bad_items == len(message.content) - len(keyed)  # each dropped item counted once
        for event in events:
            # Decoding validates every field against the schema. (No equality check: an int
            # past 2**53 in a float field legitimately comes back rounded.)
            decoded = decode_event(encode_event(event))
            assert (type(decoded), decoded.symbol, decoded.seq) == (
                type(event),
                event.symbol,
                event.seq,
            )
    # Each problem detail is reported exactly once, and every problem is counted by its kind.
    problems = normalizer.new_problems()
    assert sorted(problems) == sorted(normalizer.stats)
    assert normalizer.new_problems() == []
    assert kinds.total() == normalizer.stats.total()
    assert set(kinds) <= set(Problem)


@FUZZ
@given(st.binary(max_size=300))
def test_arbitrary_bytes(raw: bytes) -> None:
    frame = decode_or_protocol_error(raw)
    if frame is not None:
        check_feed(frame)


@FUZZ
@given(st.dictionaries(st.sampled_from(["response", "notify", "data", "x"]), json_values))
def test_arbitrary_json_envelopes(envelope: dict[str, Any]) -> None:
    frame = decode_or_protocol_error(json.dumps(envelope))
    if frame is not None:
        check_feed(frame)


def mutate(data: st.DataObject, node: Any, depth: int = 0) -> Any:
    """Replace, delete, add or recurse into one part of a JSON tree."""
    if isinstance(node, dict) and node:
        key = data.draw(st.sampled_from(sorted(node)))
        action = data.draw(st.sampled_from(["replace", "delete", "add", "recurse"]))
        if action == "replace":
            node[key] = data.draw(json_values)
        elif action == "delete":
            del node[key]
        elif action == "add":
            new_key = data.draw(st.sampled_from(["1", "2", "3", "7", "42", "key", "delayed"]))
            node[new_key] = data.draw(json_values)
        elif depth < 6:
            node[key] = mutate(data, node[key], depth + 1)
        return node
    if isinstance(node, list) and node:
        index = data.draw(st.integers(0, len(node) - 1))
        action = data.draw(st.sampled_from(["replace", "delete", "recurse", "duplicate"]))
        if action == "replace":
            node[index] = data.draw(json_values)
        elif action == "delete":
            del node[index]
        elif action == "duplicate":
            node.append(copy.deepcopy(node[index]))
        elif depth < 6:
            node[index] = mutate(data, node[index], depth + 1)
        return node
    return data.draw(json_values)


@FUZZ
@given(st.data())
def test_mutated_real_data_frames(data: st.DataObject) -> None:
    frame = copy.deepcopy(data.draw(st.sampled_from(DATA_FRAMES)))
    content = frame["data"][0]["content"]
    for _ in range(data.draw(st.integers(1, 4))):
        mutate(data, content)
    decoded = decode_or_protocol_error(json.dumps(frame))
    if decoded is not None:
        check_feed(decoded)


@FUZZ
@given(st.data())
def test_mutated_real_frames_anywhere(data: st.DataObject) -> None:
    frame = mutate(data, copy.deepcopy(data.draw(st.sampled_from(SERVER_FRAMES))))
    decoded = decode_or_protocol_error(json.dumps(frame))
    if decoded is not None:
        check_feed(decoded)


@FUZZ
@given(st.data())
def test_corrupted_bytes_of_real_frames(data: st.DataObject) -> None:
    raw = bytearray(json.dumps(data.draw(st.sampled_from(SERVER_FRAMES))).encode())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    decoded = decode_or_protocol_error(bytes(raw))
    if decoded is not None:
        check_feed(decoded)


BOOK_FRAMES = [m for m in DATA_FRAMES if m["data"][0]["service"].endswith("_BOOK")]


@FUZZ
@given(st.data())
def test_typed_and_checked_book_paths_publish_the_same_json(data: st.DataObject) -> None:
    """A book frame that passes the typed decode must give byte for byte the events the
    key-by-key path gives for the same JSON (prices as floats, sides sorted, seq per symbol)."""
    frame = copy.deepcopy(data.draw(st.sampled_from(BOOK_FRAMES)))
    content = frame["data"][0]["content"]
    for _ in range(data.draw(st.integers(0, 3))):
        mutate(data, content)
    decoded = decode_or_protocol_error(json.dumps(frame))
    if decoded is None:
        return
    (typed,) = decoded.data
    wire = frame["data"][0]
    checked = DataMessage(service=wire["service"], timestamp=wire["timestamp"], content=content)
    fast, slow = Normalizer(), Normalizer()
    fast_json = [encode_event(e) for e in fast.feed(typed, 7)]
    slow_json = [encode_event(e) for e in slow.feed(checked, 7)]
    assert fast_json == slow_json
    if all(isinstance(item, BookItem) for item in typed.content):
        assert fast.stats == slow.stats == {}


# --- level one: both merge paths against a model of the contract ------------------------------

_L1 = "LEVELONE_EQUITIES"
_L1_KEYS = [str(n) for n in range(len(FIELD_NAMES[_L1]))] + [
    "delayed",
    "assetMainType",
    "cusip",
    "99",  # unknown, numeric: kept as f99
    "newThing",  # unknown, camelCase: kept as new_thing
]
_L1_VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**12)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=3)
)


def model_ticks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the contract says each item publishes, written plainly, key by key."""
    names = FIELD_NAMES[_L1]
    state: dict[str, dict[str, Any]] = {}
    out = []
    for item in items:
        symbol = item["key"]
        snapshot = symbol not in state
        quote = state.setdefault(symbol, {"seq": 0, "core": {}, "fields": {}})
        changed = []
        for key, value in item.items():
            if key in ("key", "0"):
                continue
            if key == "delayed":
                if value is not None and type(value) is not bool:
                    continue
                quote["core"]["delayed"] = value
                name = "delayed"
            elif key.isdigit() and int(key) < len(names) and names[int(key)] in TICK_CORE_ATTRS:
                name = names[int(key)]
                accepted = (int,) if name in TICK_TIME_ATTRS else (int, float)
                if value is not None and type(value) not in accepted:
                    continue
                quote["core"][name] = value
            else:
                if key.isdigit():
                    name = names[int(key)] if int(key) < len(names) else f"f{key}"
                else:
                    name = {"assetMainType": "asset_main_type", "cusip": "cusip"}.get(
                        key, "new_thing"
                    )
                quote["fields"][name] = value
            changed.append(name)
        quote["seq"] += 1
        event = dict.fromkeys(TICK_CORE_ATTRS) | {"delayed": None} | quote["core"]
        event |= {"symbol": symbol, "seq": quote["seq"], "snapshot": snapshot}
        event |= {"changed": changed, "fields": dict(quote["fields"])}
        out.append(event)
    return out


@FUZZ
@given(
    st.lists(
        st.fixed_dictionaries(
            {"key": st.sampled_from(["A", "B"])},
            optional={
                key: _L1_VALUES
                for key in _L1_KEYS
                if key != "0"  # field 0 is the symbol again: skipped like `key`
            },
        ),
        min_size=1,
        max_size=12,
    )
)
def test_level_one_merge_matches_the_model(items: list[dict[str, Any]]) -> None:
    """Narrow deltas go key by key, wide items by their shape's plan; a wrong-typed value in
    either is left out and the rest merged. Every event must equal the model's."""
    normalizer = Normalizer()
    events = normalizer.feed(DataMessage(service=_L1, timestamp=1, content=items), 1)
    got = [
        {name: getattr(e, name) for name in (*TICK_CORE_ATTRS, "delayed")}
        | {"symbol": e.symbol, "seq": e.seq, "snapshot": e.snapshot}
        | {"changed": e.changed, "fields": e.fields}
        for e in events
        if isinstance(e, TickEvent)
    ]
    assert got == model_ticks(items)
    bad = sum(n for kind, n in normalizer.stats.items() if kind.startswith("bad_value:"))
    model_skips = sum(
        len(item) - 1 - len(event["changed"]) - ("0" in item)
        for item, event in zip(items, model_ticks(items), strict=True)
    )
    assert bad == model_skips
