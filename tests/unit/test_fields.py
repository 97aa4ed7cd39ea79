"""Field tables: sizes from the Streamer Guide, the corrections real frames demand, the tick map."""

from __future__ import annotations

import re

import pytest

from schwab_stream.events import TickEvent
from schwab_stream.stream.fields import (
    BOOK_LEVEL_FIELDS,
    BOOK_MAKER_FIELDS,
    BOOK_VENUES,
    EVENT_TYPES,
    FIELD_NAMES,
    LEVELONE_SERVICES,
    SERVICES,
    TICK_CORE,
    TICK_CORE_ATTRS,
    all_fields,
)
from tests.frames import load_frames

# Highest field number per service (docs/schwab-protocol.md §9.1).
LAST_FIELD = {
    "LEVELONE_EQUITIES": 51,
    "LEVELONE_OPTIONS": 55,
    "LEVELONE_FUTURES": 40,
    "LEVELONE_FUTURES_OPTIONS": 31,
    "LEVELONE_FOREX": 29,
    "NYSE_BOOK": 3,
    "NASDAQ_BOOK": 3,
    "OPTIONS_BOOK": 3,
    "CHART_EQUITY": 8,
    "CHART_FUTURES": 6,
    "SCREENER_EQUITY": 4,
    "SCREENER_OPTION": 4,
    "ACCT_ACTIVITY": 3,
}


def test_all_thirteen_services_have_tables_of_the_documented_size() -> None:
    assert set(SERVICES) == set(LAST_FIELD) == set(EVENT_TYPES)
    for service, last in LAST_FIELD.items():
        assert len(FIELD_NAMES[service]) == last + 1, service
        assert FIELD_NAMES[service][0] == "symbol"


@pytest.mark.parametrize("service", sorted(LAST_FIELD))
def test_names_are_unique_snake_case(service: str) -> None:
    names = FIELD_NAMES[service]
    assert len(set(names)) == len(names)
    for name in names:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name


def test_corrections_over_the_guide_and_schwab_py() -> None:
    chart = FIELD_NAMES["CHART_EQUITY"]
    assert chart[1:8] == ("sequence", "open", "high", "low", "close", "volume", "start")
    assert FIELD_NAMES["CHART_FUTURES"][1] == "start"
    assert FIELD_NAMES["LEVELONE_OPTIONS"][20] == "strike_price"
    assert BOOK_MAKER_FIELDS[2] == "time_ms"
    assert BOOK_LEVEL_FIELDS == ("price", "size", "count", "makers")


@pytest.mark.parametrize(
    ("service", "quote_time", "trade_time"),
    [
        ("LEVELONE_EQUITIES", 34, 35),
        ("LEVELONE_OPTIONS", 38, 39),
        ("LEVELONE_FUTURES", 10, 11),
        ("LEVELONE_FUTURES_OPTIONS", 10, 11),
        ("LEVELONE_FOREX", 8, 9),
    ],
)
def test_tick_core_times(service: str, quote_time: int, trade_time: int) -> None:
    core = TICK_CORE[service]
    assert core[quote_time] == "quote_time"
    assert core[trade_time] == "trade_time"


def test_tick_core_maps_per_service() -> None:
    assert dict(TICK_CORE["LEVELONE_EQUITIES"]) == {
        1: "bid",
        2: "ask",
        3: "last",
        4: "bid_size",
        5: "ask_size",
        8: "volume",
        9: "last_size",
        10: "high",
        11: "low",
        12: "close",
        17: "open",
        18: "net_change",
        33: "mark",
        34: "quote_time",
        35: "trade_time",
    }
    options = TICK_CORE["LEVELONE_OPTIONS"]
    assert (options[2], options[3], options[4], options[37]) == ("bid", "ask", "last", "mark")
    assert (options[16], options[17], options[18]) == ("bid_size", "ask_size", "last_size")
    assert TICK_CORE["LEVELONE_FUTURES"][24] == "mark"
    assert TICK_CORE["LEVELONE_FOREX"][29] == "mark"
    # Futures options have no net change field: it stays null in their events.
    assert "net_change" not in TICK_CORE["LEVELONE_FUTURES_OPTIONS"].values()
    for service in LEVELONE_SERVICES:
        names = list(TICK_CORE[service].values())
        assert len(names) == len(set(names))
        assert set(names) <= set(TICK_CORE_ATTRS)


def test_core_attrs_are_tick_event_attributes() -> None:
    fields = TickEvent.__struct_fields__
    assert set(TICK_CORE_ATTRS) <= set(fields)
    assert len(TICK_CORE_ATTRS) == 15


def test_all_fields() -> None:
    assert all_fields("LEVELONE_EQUITIES") == ",".join(str(n) for n in range(52))
    assert all_fields("NYSE_BOOK") == "0,1,2,3"
    assert all_fields("ACCT_ACTIVITY") == "0,1,2,3"
    assert all_fields("CHART_FUTURES") == "0,1,2,3,4,5,6"
    with pytest.raises(KeyError):
        all_fields("TIMESALE_EQUITY")


def test_book_venues() -> None:
    assert dict(BOOK_VENUES) == {
        "NYSE_BOOK": "NYSE",
        "NASDAQ_BOOK": "NASDAQ",
        "OPTIONS_BOOK": "OPTIONS",
    }
    assert {service for service, kind in EVENT_TYPES.items() if kind == "level2"} == set(
        BOOK_VENUES
    )


def test_every_numeric_key_in_the_real_frames_is_in_its_table() -> None:
    seen = 0
    for frame in load_frames():
        message = frame.get("message")
        if not isinstance(message, dict) or "data" not in message:
            continue
        for data in message["data"]:
            names = FIELD_NAMES[data["service"]]
            for item in data["content"]:
                for key in item:
                    if key.isdigit():
                        assert int(key) < len(names), (data["service"], key)
                        seen += 1
    assert seen > 500
