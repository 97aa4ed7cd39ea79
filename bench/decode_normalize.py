"""Throughput of the hot path: decode_frame + Normalizer.feed + encode_event, per data item.

Compared, in the same run and on the same frames, with what schwab-py's handler does per frame:
`json.loads`, a deep copy of each data message, then relabelling every numeric key through an
Enum-derived mapping (nested for books). The baseline is re-implemented here so schwab-py is not
a dependency; it does less work than we do (no merge, no validation, no encoding).

    .venv/bin/python bench/decode_normalize.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import copy
import enum
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from schwab_stream.events import encode_event
from schwab_stream.stream.fields import FIELD_NAMES
from schwab_stream.stream.normalize import Normalizer
from schwab_stream.stream.protocol import decode_frame

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "schwab_frames.json"
SYMBOLS = [f"SYM{i:02d}" for i in range(20)]


def _fixture_items(name: str) -> list[dict[str, Any]]:
    for frame in json.loads(FIXTURES.read_text()):
        if frame["name"] == name:
            items: list[dict[str, Any]] = frame["message"]["data"][0]["content"]
            return items
    raise SystemExit(f"fixture {name!r} not found")


def _data_frame(service: str, ts: int, items: list[dict[str, Any]]) -> str:
    return json.dumps(
        {"data": [{"service": service, "timestamp": ts, "command": "SUBS", "content": items}]}
    )


def delta_frames(count: int) -> list[str]:
    """Frames of 20 level-one deltas each, shaped like the live AAPL transcript (2-5 fields)."""
    frames = []
    for n in range(count):
        items = []
        for i, symbol in enumerate(SYMBOLS):
            item: dict[str, Any] = {"key": symbol, "3": 100.0 + i + n / 100, "8": 1_000_000 + n}
            if (n + i) % 3 == 0:
                item.update({"1": 99.5 + i + n / 100, "2": 100.5 + i + n / 100, "5": n % 7})
            items.append(item)
        frames.append(_data_frame("LEVELONE_EQUITIES", 1_755_118_704_147 + n, items))
    return frames


def snapshot_frames(count: int) -> list[str]:
    """Frames of 20 full 52-field LEVELONE_EQUITIES snapshots (the MSFT fixture item)."""
    template = _fixture_items("LEVELONE_EQUITIES data")[0]
    return [
        _data_frame(
            "LEVELONE_EQUITIES",
            1_715_777_956_144 + n,
            [{**template, "key": symbol, "3": 417.0 + n / 100} for symbol in SYMBOLS],
        )
        for n in range(count)
    ]


def book_frames(count: int) -> list[str]:
    """Frames of one NYSE_BOOK snapshot each (the fixture F book: 9 + 14 maker deep levels)."""
    template = _fixture_items("Schwabdev docs example: NYSE_BOOK")[0]
    return [
        _data_frame("NYSE_BOOK", 1_765_306_323_315 + n, [{**template, "key": SYMBOLS[n % 20]}])
        for n in range(count)
    ]


# --- the baseline: schwab-py's per-frame work, re-implemented --------------------------------


class _FieldEnum(enum.Enum):
    @classmethod
    def key_mapping(cls) -> dict[str, str]:
        try:
            mapping: dict[str, str] = cls._mapping  # type: ignore[attr-defined]
        except AttributeError:
            mapping = {str(member.value): name for name, member in cls.__members__.items()}
            cls._mapping = mapping  # type: ignore[attr-defined]
        return mapping

    @classmethod
    def relabel(cls, old: dict[str, Any], new: dict[str, Any]) -> None:
        for key in list(old):
            if key in cls.key_mapping():
                new[cls.key_mapping()[key]] = new.pop(key)


def _enum(name: str, names: tuple[str, ...]) -> type[_FieldEnum]:
    members = {field.upper(): number for number, field in enumerate(names)}
    return cast("type[_FieldEnum]", _FieldEnum(name, members))  # type: ignore[call-arg]


_EQUITY_ENUM = _enum("LevelOneEquityFields", FIELD_NAMES["LEVELONE_EQUITIES"])
_BOOK_ENUM = _enum("BookFields", FIELD_NAMES["NYSE_BOOK"])
_LEVEL_ENUM = _enum("BidFields", ("bid_price", "total_volume", "num_bids", "bids"))
_MAKER_ENUM = _enum("PerExchangeBidFields", ("exchange", "bid_volume", "sequence"))


def _label(message: dict[str, Any], fields: type[_FieldEnum]) -> dict[str, Any]:
    new = copy.deepcopy(message)
    for old_item, new_item in zip(message["content"], new["content"], strict=True):
        fields.relabel(old_item, new_item)
    return new


def baseline_level_one(raw: str) -> int:
    items = 0
    for message in json.loads(raw)["data"]:
        items += len(_label(message, _EQUITY_ENUM)["content"])
    return items


def baseline_book(raw: str) -> int:
    items = 0
    for message in json.loads(raw)["data"]:
        labelled = _label(message, _BOOK_ENUM)
        for item in labelled["content"]:
            for side in ("BIDS", "ASKS"):
                for level in item.get(side, ()):
                    _LEVEL_ENUM.relabel(level, level)
                    for maker in level.get("BIDS", ()):
                        _MAKER_ENUM.relabel(maker, maker)
            items += 1
    return items


# --- ours ----------------------------------------------------------------------------------


def ours(normalizer: Normalizer) -> Callable[[str], int]:
    def run(raw: str) -> int:
        items = 0
        for message in decode_frame(raw).data:
            for event in normalizer.feed(message, time.time_ns()):
                encode_event(event)
                items += 1
        return items

    return run


def measure(step: Callable[[str], int], frames: list[str], seconds: float) -> float:
    """Items per second, best of three rounds of at least `seconds` / 3 each."""
    best = 0.0
    for _ in range(3):
        items = 0
        start = time.perf_counter()
        while True:
            for raw in frames:
                items += step(raw)
            elapsed = time.perf_counter() - start
            if elapsed >= seconds / 3:
                break
        best = max(best, items / elapsed)
    return best


def breakdown(frames: list[str], rounds: int = 10) -> tuple[float, float, float]:
    """ns per item in decode_frame, Normalizer.feed and encode_event, each timed on its own
    (best of `rounds`), to show where the time goes."""
    normalizer = Normalizer()
    best = [float("inf")] * 3
    for _ in range(rounds):
        start = time.perf_counter()
        decoded = [decode_frame(raw) for raw in frames]
        decoded_at = time.perf_counter()
        events = [e for frame in decoded for m in frame.data for e in normalizer.feed(m, 1)]
        fed_at = time.perf_counter()
        for event in events:
            encode_event(event)
        encoded_at = time.perf_counter()
        spans = (decoded_at - start, fed_at - decoded_at, encoded_at - fed_at)
        best = [min(b, span * 1e9 / len(events)) for b, span in zip(best, spans, strict=True)]
    return best[0], best[1], best[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    args = parser.parse_args()
    cases: list[tuple[str, list[str], Callable[[str], int]]] = [
        ("level-one deltas (20 symbols/frame)", delta_frames(200), baseline_level_one),
        ("level-one snapshots (52 fields)", snapshot_frames(20), baseline_level_one),
        ("NYSE book snapshots", book_frames(40), baseline_book),
    ]
    print(
        f"{'case':<38}{'ours updates/s':>16}{'baseline/s':>12}{'ratio':>8}"
        f"{'decode':>9}{'feed':>7}{'encode':>8}  ns/update"
    )
    for name, frames, baseline in cases:
        mine = measure(ours(Normalizer()), frames, args.seconds)
        theirs = measure(baseline, frames, args.seconds)
        decode_ns, feed_ns, encode_ns = breakdown(frames)
        print(
            f"{name:<38}{mine:>16,.0f}{theirs:>12,.0f}{mine / theirs:>7.1f}x"
            f"{decode_ns:>9,.0f}{feed_ns:>7,.0f}{encode_ns:>8,.0f}"
        )


if __name__ == "__main__":
    main()
