"""NYSE_BOOK, NASDAQ_BOOK and OPTIONS_BOOK: whole snapshots of an instrument's depth.

A book is drawn afresh around the instrument's current quote from its own RNG; it holds what
clients check in real books: levels best first, each level's size the sum of its makers' sizes,
makers' times in ms since midnight New York.
"""

from __future__ import annotations

from typing import Any

from schwab_stream.sim.clock import et_ms_of_day
from schwab_stream.sim.instruments import Instrument
from schwab_stream.sim.reference import NASDAQ_VENUES, NYSE_VENUES, OPTION_VENUES
from schwab_stream.sim.wire import wire_double


def snapshot(service: str, inst: Instrument, now_ms: int) -> dict[str, Any]:
    """A whole book snapshot: levels best first, aggregate size = sum of the makers' sizes."""
    rng = inst.rng
    venues = {"NYSE_BOOK": NYSE_VENUES, "NASDAQ_BOOK": NASDAQ_VENUES}.get(service, OPTION_VENUES)
    option = inst.kind == "option"
    ms_of_day = et_ms_of_day(now_ms)

    def side(best: float, direction: int) -> list[dict[str, Any]]:
        levels: list[dict[str, Any]] = []
        price = best
        for depth in range(rng.randint(3, 8)):
            if price <= 0:
                break
            makers = rng.sample(venues, rng.randint(1, 4 if depth == 0 else 2))
            quotes: list[tuple[int, str, int]] = []  # (size, maker, ms since midnight ET)
            for venue in makers:
                size = rng.randint(1, 50) if option else 100 * rng.randint(1, 40)
                age = 0 if depth == 0 and not quotes else rng.randint(0, 30_000 * (depth + 1))
                quotes.append((size, venue, max(0, ms_of_day - age)))
            quotes.sort(key=lambda q: -q[0])
            levels.append(
                {
                    "0": wire_double(price, inst.places),
                    "1": sum(q[0] for q in quotes),
                    "2": len(quotes),
                    "3": [{"0": venue, "1": size, "2": at} for size, venue, at in quotes],
                }
            )
            price = round(price + direction * inst.tick * rng.choice((1, 1, 2, 3, 5)), inst.places)
        return levels

    return {"1": now_ms, "2": side(inst.bid, -1), "3": side(inst.ask, 1)}
