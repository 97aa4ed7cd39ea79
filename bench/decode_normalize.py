"""Throughput of the hot path: decode_frame + Normalizer.feed + encode_event, per data item.

Compared, in the same process and on the same frames, with schwab-py's own message handler
(`json.loads`, a deep copy of each data message, then relabelling every numeric key through its
field Enums, nested for books). schwab-py lives only in the bench venv (`./dev bench` builds
.venv-bench), never in the project's dependencies. The handler does less than we do: no merge, no
validation, no encoding.

Each case also reports its ceiling: the ratio we would reach if normalizing cost nothing, i.e.
schwab-py's time against msgspec's decode of the frames plus msgspec's encode of the events
alone. A level-one event carries the whole merged quote, so its encode alone is a fixed cost.

    .venv-bench/bin/python bench/decode_normalize.py [--seconds 1.5] [--growth]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schwab_stream.events import encode_event
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


def delta_frames(count: int, symbols: int = 20) -> list[str]:
    """Frames of level-one deltas (20 symbols each unless told), shaped like the live AAPL
    transcript (2-5 fields)."""
    names = (
        SYMBOLS[:symbols] if symbols <= len(SYMBOLS) else [f"SYM{i:02d}" for i in range(symbols)]
    )
    frames = []
    for n in range(count):
        items = []
        for i, symbol in enumerate(names):
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


def full_snapshot_frame() -> str:
    """One frame of all-fields snapshots of the 20 bench symbols: what Schwab sends first when
    every field is subscribed (the MSFT fixture item, 52 fields, each symbol's own key)."""
    template = _fixture_items("LEVELONE_EQUITIES data")[0]
    return _data_frame(
        "LEVELONE_EQUITIES", 1_755_118_704_000, [{**template, "key": s} for s in SYMBOLS]
    )


def book_frames(count: int) -> list[str]:
    """Frames of one NYSE_BOOK snapshot each (the fixture F book: 9 + 14 maker deep levels)."""
    template = _fixture_items("Schwabdev docs example: NYSE_BOOK")[0]
    return [
        _data_frame("NYSE_BOOK", 1_765_306_323_315 + n, [{**template, "key": SYMBOLS[n % 20]}])
        for n in range(count)
    ]


# --- the baseline: schwab-py's own message handler -------------------------------------------


class _Socket:
    """Stands in for schwab-py's websocket: `recv()` returns the frame under test."""

    def __init__(self) -> None:
        self.raw = ""

    async def recv(self) -> str:
        return self.raw


def schwab_py() -> Callable[[str], int]:
    """schwab-py's `StreamClient.handle_message` (json.loads, deep copy, relabel, dispatch) with
    a level-one equity and an NYSE book handler registered; the coroutine is driven by hand
    (it never waits on a socket), so no event loop cost is charged to it."""
    try:
        from schwab.streaming import StreamClient
    except ImportError:
        raise SystemExit(
            "schwab-py is not installed here: run `./dev bench` (it builds .venv-bench)"
        ) from None
    client = StreamClient(object(), account_id=1)
    socket = _Socket()
    client._socket = socket
    handled = [0]

    def handler(message: dict[str, Any]) -> None:
        handled[0] += len(message["content"])

    client.add_level_one_equity_handler(handler)
    client.add_nyse_book_handler(handler)

    def run(raw: str) -> int:
        socket.raw = raw
        before = handled[0]
        step = client.handle_message()
        try:
            step.send(None)
        except StopIteration:
            pass
        else:  # pragma: no cover - only if schwab-py starts waiting inside handle_message
            raise RuntimeError("schwab-py's handle_message suspended")
        return handled[0] - before

    return run


# --- ours ----------------------------------------------------------------------------------


def ours(normalizer: Normalizer, primer: list[str]) -> Callable[[str], int]:
    """Our hot path, after feeding `primer` (untimed): the snapshots a stream starts with."""
    for raw in primer:
        for message in decode_frame(raw).data:
            normalizer.feed(message, 0)

    def run(raw: str) -> int:
        items = 0
        for message in decode_frame(raw).data:
            for event in normalizer.feed(message, time.time_ns()):
                encode_event(event)
                items += 1
        return items

    return run


def _round(step: Callable[[str], int], frames: list[str], seconds: float) -> float:
    """Items per second over at least `seconds` of passes over `frames`."""
    items = 0
    start = time.perf_counter()
    while True:
        for raw in frames:
            items += step(raw)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return items / elapsed


def measure(step: Callable[[str], int], frames: list[str], seconds: float) -> float:
    """Items per second, best of six rounds of `seconds` / 6 each."""
    return max(_round(step, frames, seconds / 6) for _ in range(6))


def measure_pair(
    mine: Callable[[str], int], theirs: Callable[[str], int], frames: list[str], seconds: float
) -> tuple[float, float]:
    """Both, best of six rounds each, the rounds alternating (ours, theirs, ours, ...), so a
    slow spell of a shared machine falls on both sides alike rather than on one."""
    best_mine = best_theirs = 0.0
    for _ in range(6):
        best_mine = max(best_mine, _round(mine, frames, seconds / 6))
        best_theirs = max(best_theirs, _round(theirs, frames, seconds / 6))
    return best_mine, best_theirs


def breakdown(frames: list[str], primer: list[str], rounds: int = 10) -> tuple[float, float, float]:
    """ns per item in decode_frame, Normalizer.feed and encode_event, each timed on its own
    (best of `rounds`), to show where the time goes."""
    normalizer = Normalizer()
    ours(normalizer, primer)
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


@dataclass(frozen=True)
class Comparison:
    case: str
    ours: float  # updates/s
    schwab_py: float  # updates/s
    decode_ns: float
    feed_ns: float
    encode_ns: float

    @property
    def ratio(self) -> float:
        return self.ours / self.schwab_py

    @property
    def ceiling(self) -> float:
        """The ratio if normalizing were free: msgspec's decode + encode alone."""
        return 1e9 / (self.decode_ns + self.encode_ns) / self.schwab_py


# case -> (frames timed, frames fed to our normalizer first, untimed)
CASES: dict[str, Callable[[], tuple[list[str], list[str]]]] = {
    "level-one deltas": lambda: (delta_frames(200), []),
    "level-one deltas, all fields": lambda: (delta_frames(200), [full_snapshot_frame()]),
    "level-one snapshots": lambda: (snapshot_frames(20), []),
    "NYSE books": lambda: (book_frames(40), []),
}


def compare(seconds: float) -> list[Comparison]:
    """Every case, ours and schwab-py's, alternately in this one process."""
    results = []
    for case, make in CASES.items():
        frames, primer = make()
        mine, theirs = measure_pair(ours(Normalizer(), primer), schwab_py(), frames, seconds)
        decode_ns, feed_ns, encode_ns = breakdown(frames, primer)
        results.append(Comparison(case, mine, theirs, decode_ns, feed_ns, encode_ns))
    return results


def synthetic_book_frames(count: int, levels: int, makers: int) -> list[str]:
    """Frames of one NASDAQ_BOOK each: `levels` per side, `makers` market makers per level."""

    def side(best: float, step: float) -> list[dict[str, Any]]:
        return [
            {
                "0": round(best + step * n, 2),
                "1": 100 * makers,
                "2": makers,
                "3": [{"0": f"MM{m}", "1": 100, "2": 34_200_000 + m} for m in range(makers)],
            }
            for n in range(levels)
        ]

    item = {"key": "AAPL", "1": 1_755_118_704_000, "2": side(200.0, -0.01), "3": side(200.01, 0.01)}
    return [_data_frame("NASDAQ_BOOK", 1_755_118_704_000 + n, [item]) for n in range(count)]


def growth(seconds: float) -> list[tuple[str, float]]:
    """ns per update (decode + normalize + encode) as frames, quotes and books get bigger."""
    cases: list[tuple[str, list[str], list[str]]] = [
        (f"deltas, {n} symbol{'s' * (n > 1)} per frame", delta_frames(4000 // n, n), [])
        for n in (1, 20, 100, 500)
    ]
    cases.append(
        ("deltas on all-fields quotes, 20 per frame", *CASES["level-one deltas, all fields"]())
    )
    cases += [
        (f"book, {lv} levels a side x {mk} makers", synthetic_book_frames(40, lv, mk), [])
        for lv, mk in ((5, 1), (10, 2), (25, 2), (50, 3))
    ]
    return [
        (name, 1e9 / measure(ours(Normalizer(), primer), frames, seconds))
        for name, frames, primer in cases
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="time per measurement")
    parser.add_argument(
        "--growth", action="store_true", help="how the cost grows with frame, quote and book size"
    )
    args = parser.parse_args()
    if args.growth:
        for name, ns in growth(args.seconds):
            print(f"{name:<45}{ns:>10,.0f} ns/update")
        return
    print(
        f"{'case':<30}{'ours updates/s':>15}{'schwab-py/s':>12}{'ratio':>7}{'ceiling':>8}"
        f"{'decode':>8}{'feed':>7}{'encode':>8}  ns/update"
    )
    for r in compare(args.seconds):
        print(
            f"{r.case:<30}{r.ours:>15,.0f}{r.schwab_py:>12,.0f}{r.ratio:>6.1f}x{r.ceiling:>7.1f}x"
            f"{r.decode_ns:>8,.0f}{r.feed_ns:>7,.0f}{r.encode_ns:>8,.0f}"
        )


if __name__ == "__main__":
    main()
