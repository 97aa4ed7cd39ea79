"""Conformance: for every service, the simulator's frames have the envelope, key set and JSON types
of the matching real frame in tests/fixtures; level one is a snapshot, then deltas.

JSON types: strings, booleans and ints must match the real frame exactly. Fields the Streamer
Guide types as double are "a number": Schwab writes a whole double without ".0" (`"10": 235`,
`"13": 100` in the real frames), so a double may arrive as an int or a float. The doubles below
are transcribed from the Guide's field tables (docs/schwab-protocol.md §9.8), and the first test
checks that every real frame agrees with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig
from schwab_stream.sim.symbols import option_symbol
from tests.conftest import REGULAR_SESSION

from .sim_ws import RawClient, post


def _ints(text: str) -> frozenset[str]:
    return frozenset(text.split())


DOUBLES: dict[str, frozenset[str]] = {
    "LEVELONE_EQUITIES": _ints(
        "1 2 3 10 11 12 17 18 19 20 21 22 23 24 29 31 33 42 43 44 45 47 50 51"
    ),
    "LEVELONE_OPTIONS": _ints(
        "2 3 4 5 6 7 10 11 13 15 19 20 25 28 29 30 31 32 34 35 37 44 45 46 47 50 51 52 53"
    ),
    "LEVELONE_FUTURES": _ints("1 2 3 12 13 14 18 19 20 24 25 26 31 33"),
    "LEVELONE_FUTURES_OPTIONS": _ints("1 2 3 12 13 14 17 18 19 20 21 22 23 25"),
    "LEVELONE_FOREX": _ints("1 2 3 10 11 12 15 16 17 21 22 27 28 29"),
    "CHART_EQUITY": _ints("2 3 4 5 6"),
    "CHART_FUTURES": _ints("2 3 4 5 6"),
    "BOOK_LEVEL": _ints("0"),
    "SCREENER_ITEM": _ints("lastPrice netChange netPercentChange marketShare"),
}
BOOKS = ("NYSE_BOOK", "NASDAQ_BOOK", "OPTIONS_BOOK")
EXTRAS = {"delayed", "assetMainType", "assetSubType", "cusip"}

#: service -> name of the real frame it is held to (the richest capture of that service).
REFERENCE = {
    "LEVELONE_EQUITIES": "LEVELONE_EQUITIES data",
    "LEVELONE_OPTIONS": "LEVELONE_OPTIONS data",
    "LEVELONE_FUTURES": "LEVELONE_FUTURES data",
    "LEVELONE_FUTURES_OPTIONS": "LEVELONE_FUTURES_OPTIONS data",
    "LEVELONE_FOREX": "LEVELONE_FOREX data",
    "NYSE_BOOK": "Schwabdev docs example: NYSE_BOOK",
    "NASDAQ_BOOK": "NASDAQ_BOOK data",
    "OPTIONS_BOOK": "Schwabdev docs example: OPTIONS_BOOK",
    "CHART_EQUITY": "Schwabdev docs example: CHART_EQUITY",
    "CHART_FUTURES": "Schwabdev docs example: CHART_FUTURES",
    "SCREENER_EQUITY": "Schwabdev docs example: SCREENER_EQUITY",
    "SCREENER_OPTION": "Schwabdev docs example: SCREENER_OPTION",
    "ACCT_ACTIVITY": "ACCT_ACTIVITY data",
}


def kind(value: Any, double: bool) -> str:
    if isinstance(value, bool):
        return "bool"
    if double and isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def shape(service: str, value: Any, doubles: frozenset[str] = frozenset()) -> Any:
    """A comparable description of an item: key -> JSON kind, recursing into books/screeners."""
    if isinstance(value, dict):
        return {k: _shape_field(service, k, v, doubles) for k, v in value.items()}
    return kind(value, False)


def _shape_field(service: str, key: str, value: Any, doubles: frozenset[str]) -> Any:
    if isinstance(value, list):  # book levels (and their market makers) or screener items
        inner = DOUBLES["BOOK_LEVEL"] if service in BOOKS else DOUBLES["SCREENER_ITEM"]
        return sorted({json.dumps(shape(service, v, inner), sort_keys=True) for v in value})
    if isinstance(value, dict):
        return shape(service, value)
    return kind(value, key in doubles)


def item_shape(service: str, item: dict[str, Any]) -> Any:
    return shape(service, item, DOUBLES.get(service, frozenset()))


def data_block(message: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = message["data"][0]
    return block


@pytest.fixture(scope="module")
def sim() -> Iterator[SimThread]:
    config = SimConfig(
        heartbeat_interval=1,
        idle_timeout=10,
        rate=200,
        book_interval=0.05,
        time_scale=60,
        market_time=REGULAR_SESSION,
    )
    with SimThread(config) as running:
        yield running


@pytest.fixture
def client(sim: SimThread) -> Iterator[RawClient]:
    raw = RawClient(sim)
    raw.login()
    yield raw
    raw.close()


def test_the_double_table_agrees_with_every_real_frame(frames: list[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], set[str]] = {}
    for frame in frames:
        message = frame.get("message")
        if frame["direction"] != "server->client" or not isinstance(message, dict):
            continue
        for block in message.get("data", []):
            for item in block["content"]:
                for key, kd in item_shape(block["service"], item).items():
                    seen.setdefault((block["service"], key), set()).add(json.dumps(kd))
    disagreements = {k: v for k, v in seen.items() if len(v) > 1}
    assert not disagreements
    assert {service for service, _ in seen} == set(REFERENCE)


@pytest.mark.parametrize("service", list(REFERENCE))
def test_first_frame_matches_the_real_one(
    sim: SimThread, client: RawClient, frames: list[dict[str, Any]], service: str
) -> None:
    real = next(f["message"] for f in frames if f["name"] == REFERENCE[service])
    real_block = data_block(real)
    real_items = real_block["content"]
    keys = ",".join(item["key"] for item in real_items)
    if service == "OPTIONS_BOOK":  # the captured option has expired: no bids any more
        keys = option_symbol("SPY", date.today() + timedelta(days=365), True, 520)
    numeric = sorted({k for item in real_items for k in item if k.isdigit()}, key=int)
    answer = client.command(service, "SUBS", keys=keys, fields=",".join(["0", *numeric]))
    assert answer["content"]["code"] == 0
    if service == "ACCT_ACTIVITY":
        post(sim, "/sim/account/order?symbol=AAPL&spacing=0")
    got = client.wait_for(
        lambda f: any(d.get("service") == service for d in f.get("data", [])), timeout=5
    )

    assert list(got) == list(real) == ["data"]
    block = data_block(got)
    assert set(block) == set(real_block)
    assert (block["service"], block["command"]) == (service, "SUBS")
    assert isinstance(block["timestamp"], int) and isinstance(block["content"], list)

    real_shape = item_shape(service, real_items[0])
    for item in block["content"]:
        assert item["key"] in keys.split(",")
        assert item_shape(service, item) == real_shape, item["key"]


@pytest.mark.parametrize(
    ("service", "keys"),
    [
        ("LEVELONE_EQUITIES", "AAPL,MSFT"),
        ("LEVELONE_OPTIONS", "SPY   240621C00520000"),
        ("LEVELONE_FUTURES", "/ES"),
        ("LEVELONE_FUTURES_OPTIONS", "./OGG26C4240"),
        ("LEVELONE_FOREX", "EUR/USD"),
    ],
)
def test_level_one_is_a_snapshot_then_deltas(client: RawClient, service: str, keys: str) -> None:
    fields = {"1", "2", "3", "4", "5", "8"}
    bid, ask = ("2", "3") if service == "LEVELONE_OPTIONS" else ("1", "2")
    client.command(service, "SUBS", keys=keys, fields="0," + ",".join(sorted(fields, key=int)))
    items: dict[str, list[dict[str, Any]]] = {}
    while min((len(v) for v in items.values()), default=0) < 15 or len(items) < len(
        keys.split(",")
    ):
        for item in client.data(service)["content"]:
            items.setdefault(item["key"], []).append(item)
    for key, sequence in items.items():
        snapshot, deltas = sequence[0], sequence[1:]
        assert {"delayed", "assetMainType"} <= set(snapshot)
        assert set(snapshot) - EXTRAS - {"key"} == fields, key
        state = {k: v for k, v in snapshot.items() if k in fields}
        changed_fields: set[str] = set()
        for delta in deltas:
            changes = set(delta) - {"key"}
            assert changes and changes <= fields and not EXTRAS & set(delta)
            assert all(delta[f] != state[f] for f in changes)  # only what changed
            state.update({f: delta[f] for f in changes})
            changed_fields |= changes
            assert state[bid] < state[ask]  # the merged quote stays sane
        assert len(changed_fields) >= 3  # conflated deltas, not a frozen quote
