"""A bulk ADD's new instruments are made a few at a time, with the event loop running between
(the streamer's `Connection.warm`, a task of its own), so other connections and /sim/stats are
answered meanwhile."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast
from zoneinfo import ZoneInfo

from schwab_stream.sim.hub import Hub
from schwab_stream.sim.state import SimConfig, SimState
from schwab_stream.sim.streamer import WARM_BATCH, Connection
from schwab_stream.sim.subscriptions import apply

T0 = datetime(2025, 6, 10, 10, 30, tzinfo=ZoneInfo("America/New_York"))


def test_a_bulk_add_makes_its_instruments_a_few_at_a_time() -> None:
    hub = Hub(SimState(SimConfig(market_time=T0, symbol_limit=10_000)), clock=T0.timestamp)
    keys = [f"QW{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(10 * WARM_BATCH)]
    seen: list[int] = []

    async def main() -> None:
        ws, request = SimpleNamespace(closed=False), SimpleNamespace(transport=None)
        conn = Connection(cast(Any, ws), cast(Any, request), hub, 0.0)
        subs = conn.session.subs
        apply(subs, "LEVELONE_EQUITIES", "ADD", {"keys": ",".join(keys)}, 0.0, 10_000)
        apply(subs, "LEVELONE_OPTIONS", "ADD", {"keys": "QWAA  250620C00010000"}, 0.0, 10_000)
        apply(subs, "SCREENER_EQUITY", "SUBS", {"keys": "NASDAQ_VOLUME_5"}, 0.0, 10_000)
        done = asyncio.Event()

        async def watch() -> None:  # another task on the simulator's loop
            while not done.is_set():
                seen.append(len(hub.market.instruments))
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        conn.subscribed()
        conn.subscribed()  # a second frame while it runs: the same task goes on
        task = conn.warm_task
        assert conn.warming and task is not None
        await task
        assert not conn.warming and conn.event.is_set()  # the pump polls again
        done.set()
        await watcher

    asyncio.run(main())
    made = hub.market.instruments
    assert set(keys) <= set(made) and "QWAA  250620C00010000" in made
    assert "NASDAQ_VOLUME_5" not in made  # a screener's key is no instrument
    between = [n for n in seen if 0 < n < len(keys)]
    assert len(set(between)) >= len(keys) // WARM_BATCH - 1  # the loop ran between batches


def test_a_feed_taking_keys_in_turn_makes_them_in_turn() -> None:
    """With symbols_per_frame set, a frame makes at most that many instruments: no warm-up."""
    hub = Hub(SimState(SimConfig(market_time=T0, symbols_per_frame=20)), clock=T0.timestamp)

    async def main() -> None:
        ws, request = SimpleNamespace(closed=False), SimpleNamespace(transport=None)
        conn = Connection(cast(Any, ws), cast(Any, request), hub, 0.0)
        apply(conn.session.subs, "LEVELONE_EQUITIES", "ADD", {"keys": "QWXA,QWXB"}, 0.0, 500)
        conn.subscribed()
        assert conn.warm_task is None and not conn.warming

    asyncio.run(main())
    assert not hub.market.instruments


def test_a_poll_yields_after_the_frame_that_made_new_instruments() -> None:
    """Keys taken in turn, 19 frames due (0 to 0.9 s): each poll makes one frame while its keys
    are new (20 instruments), then the rest of what is due at once, as before."""
    config = SimConfig(market_time=T0, rate=20, symbols_per_frame=20, symbol_limit=10_000)
    hub = Hub(SimState(config), clock=T0.timestamp)
    session = hub.connect(0.0)
    session.logged_in = True
    keys = [f"QV{chr(65 + i // 26)}{chr(65 + i % 26)}" for i in range(100)]
    apply(session.subs, "LEVELONE_EQUITIES", "ADD", {"keys": ",".join(keys)}, 0.0, 10_000)
    for polls in range(1, 6):
        session.poll(0.92)
        assert (len(session.outbox), len(hub.market.instruments)) == (polls, 20 * polls)
    session.poll(0.92)
    assert len(session.outbox) == 19 and len(hub.market.instruments) == 100
