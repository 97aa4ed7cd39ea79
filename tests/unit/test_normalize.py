"""Normalizer on the real captured frames of every service: merged ticks, books, bars, screeners,
account activity, reset, seq, and problems counted instead of raised."""

from __future__ import annotations

import json
import random
from collections import Counter
from typing import Any

import pytest

from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    Event,
    Level,
    Level2Event,
    Maker,
    ScreenerEvent,
    ScreenerItem,
    TickEvent,
    decode_event,
    encode_event,
)
from schwab_stream.stream.fields import TICK_CORE_ATTRS
from schwab_stream.stream.normalize import Normalizer
from schwab_stream.stream.problems import Problem
from schwab_stream.stream.protocol import BookItem, DataMessage, decode_frame
from tests.frames import load_frames

ALL_FRAMES: list[dict[str, Any]] = load_frames()
DATA_FRAMES = [
    f for f in ALL_FRAMES if isinstance(f.get("message"), dict) and "data" in f["message"]
]
EVENT_CLASS = {
    "LEVELONE_EQUITIES": TickEvent,
    "LEVELONE_OPTIONS": TickEvent,
    "LEVELONE_FUTURES": TickEvent,
    "LEVELONE_FUTURES_OPTIONS": TickEvent,
    "LEVELONE_FOREX": TickEvent,
    "NYSE_BOOK": Level2Event,
    "NASDAQ_BOOK": Level2Event,
    "OPTIONS_BOOK": Level2Event,
    "CHART_EQUITY": BarEvent,
    "CHART_FUTURES": BarEvent,
    "SCREENER_EQUITY": ScreenerEvent,
    "SCREENER_OPTION": ScreenerEvent,
    "ACCT_ACTIVITY": AccountEvent,
}


def messages(name: str) -> list[DataMessage[Any]]:
    """The data messages of the fixture frame whose name starts with `name`, decoded."""
    for frame in ALL_FRAMES:
        if frame["name"].startswith(name):
            return decode_frame(json.dumps(frame["message"])).data
    raise LookupError(name)


def raw_items(name: str) -> list[dict[str, Any]]:
    """The items of the fixture frame's first data message, as plain JSON."""
    for frame in ALL_FRAMES:
        if frame["name"].startswith(name):
            items: list[dict[str, Any]] = frame["message"]["data"][0]["content"]
            return items
    raise LookupError(name)


def feed(normalizer: Normalizer, name: str, recv_ns: int = 1) -> list[Event]:
    return [event for m in messages(name) for event in normalizer.feed(m, recv_ns)]


def message(service: str, *items: Any, timestamp: int = 1) -> DataMessage[Any]:
    return DataMessage(service=service, timestamp=timestamp, content=list(items))


def core(event: TickEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in TICK_CORE_ATTRS}


# --- every service ----------------------------------------------------------------------------


@pytest.mark.parametrize("frame", DATA_FRAMES, ids=[f["name"] for f in DATA_FRAMES])
def test_every_captured_data_frame_normalizes_cleanly(frame: dict[str, Any]) -> None:
    normalizer = Normalizer()
    (data,) = decode_frame(json.dumps(frame["message"])).data
    events = normalizer.feed(data, 42)
    assert len(events) == len(data.content)
    for event, item in zip(events, data.content, strict=True):
        assert type(event) is EVENT_CLASS[data.service]
        key = item.key if isinstance(item, BookItem) else item["key"]
        assert (event.service, event.symbol, event.seq) == (data.service, key, 1)
        assert (event.schwab_ts, event.recv_ns) == (data.timestamp, 42)
        assert decode_event(encode_event(event)) == event
    assert normalizer.stats == {}
    assert normalizer.new_problems() == []


# --- level one --------------------------------------------------------------------------------


def test_live_aapl_transcript_snapshot_then_deltas() -> None:
    normalizer = Normalizer()
    events: list[TickEvent] = []
    for n in range(4, 10):
        (event,) = feed(normalizer, f"live transcript #{n}", recv_ns=n)
        assert isinstance(event, TickEvent)
        events.append(event)

    first = events[0]
    assert first.snapshot is True
    assert first.delayed is False
    assert first.changed == [
        "delayed",
        "asset_main_type",
        "asset_sub_type",
        "cusip",
        "bid",
        "ask",
        "last",
        "bid_size",
        "ask_size",
        "volume",
        "high",
    ]
    assert first.fields == {
        "asset_main_type": "EQUITY",
        "asset_sub_type": "COE",
        "cusip": "037833100",
    }
    assert core(first) == {
        "bid": 233.22,
        "ask": 233.33,
        "last": 233.3,
        "bid_size": 1,
        "ask_size": 3,
        "last_size": None,
        "volume": 69783235,
        "open": None,
        "high": 235,
        "low": None,
        "close": None,
        "mark": None,
        "net_change": None,
        "quote_time": None,
        "trade_time": None,
    }

    expected: list[tuple[list[str], dict[str, Any]]] = [
        (["last", "volume"], {"last": 233.31, "volume": 69783236}),
        (
            ["bid", "ask", "last", "ask_size", "volume"],
            {"bid": 233.33, "ask": 233.39, "last": 233.34, "ask_size": 1, "volume": 69784498},
        ),
        (["last", "volume"], {"last": 233.35, "volume": 69784508}),
        (["last", "volume"], {"last": 233.36, "volume": 69784619}),
        (["volume"], {"volume": 69784645}),
    ]
    merged = core(first)
    for event, (changed, update) in zip(events[1:], expected, strict=True):
        merged.update(update)
        assert event.changed == changed
        assert core(event) == merged
        assert event.snapshot is False
        assert event.delayed is False  # from the snapshot, kept
        assert event.fields == first.fields
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [e.recv_ns for e in events] == [4, 5, 6, 7, 8, 9]
    assert [e.schwab_ts for e in events] == [
        1755118704147,
        1755118706289,
        1755118712559,
        1755118714580,
        1755118715590,
        1755118716611,
    ]
    assert core(events[-1]) == {
        **core(first),
        "bid": 233.33,
        "ask": 233.39,
        "last": 233.36,
        "ask_size": 1,
        "volume": 69784645,
    }


def test_events_are_snapshots_of_state_not_views() -> None:
    normalizer = Normalizer()
    (first,) = normalizer.feed(message("LEVELONE_EQUITIES", {"key": "A", "1": 1.0, "15": "x"}), 1)
    normalizer.feed(message("LEVELONE_EQUITIES", {"key": "A", "1": 2.0, "15": "y"}), 2)
    assert isinstance(first, TickEvent)
    assert (first.bid, first.fields) == (1.0, {"description": "x"})
    assert first.changed == ["bid", "description"]


def test_full_equity_snapshot_maps_all_52_fields() -> None:
    msft = feed(Normalizer(), "LEVELONE_EQUITIES data")[0]
    assert isinstance(msft, TickEvent)
    assert core(msft) == {
        "bid": 417.01,
        "ask": 417.08,
        "last": 417.09,
        "bid_size": 1,
        "ask_size": 0,
        "last_size": 10,
        "volume": 162750,
        "open": 0,
        "high": 0,
        "low": 0,
        "close": 415.81,
        "mark": 417.01,
        "net_change": 1.28,
        "quote_time": 1715777955574,
        "trade_time": 1715777953982,
    }
    assert msft.delayed is True
    # 51 numbered fields - 15 core + 3 extras (asset_main_type, asset_sub_type, cusip)
    assert len(msft.fields) == 39
    assert msft.fields["description"] == "Microsoft Corp"
    assert msft.fields["regular_market_trade_time"] == 1715716801392
    assert msft.fields["ask_mic_id"] == "BATS"
    assert msft.fields["post_market_percent_change"] == 0.3078329
    assert len(msft.changed) == 51 + 4  # every field, delayed and the three extras


def test_option_snapshot_uses_strike_price_and_option_times() -> None:
    goog = feed(Normalizer(), "LEVELONE_OPTIONS data")[0]
    assert isinstance(goog, TickEvent)
    assert goog.symbol == "GOOG  240517C00070000"
    assert (goog.bid, goog.ask, goog.last, goog.mark) == (102.15, 103.75, 103.07, 102.95)
    assert (goog.bid_size, goog.ask_size, goog.last_size) == (20, 20, 1)
    assert (goog.quote_time, goog.trade_time) == (1715786878997, 1714140219464)
    assert goog.fields["strike_price"] == 70
    assert goog.fields["delta"] == 0.99961827
    assert goog.fields["contract_type"] == "C"


def test_futures_forex_and_futures_options_core_fields() -> None:
    normalizer = Normalizer()
    cl = feed(normalizer, "LEVELONE_FUTURES data")[0]
    assert isinstance(cl, TickEvent)
    assert (cl.quote_time, cl.trade_time, cl.mark, cl.open) == (
        1719002948817,
        1719002944037,
        80.61,
        81.27,
    )
    assert cl.fields["future_active_symbol"] == "/CLQ24"
    eur = feed(normalizer, "LEVELONE_FOREX data")[1]
    assert isinstance(eur, TickEvent)
    assert (eur.symbol, eur.quote_time, eur.net_change, eur.mark) == (
        "EUR/USD",
        1718811581092,
        0.00393,
        1.074415,
    )
    fop = feed(normalizer, "LEVELONE_FUTURES_OPTIONS data")[0]
    assert isinstance(fop, TickEvent)
    assert (fop.net_change, fop.mark, fop.volume) == (None, 9.65, 959)
    assert fop.fields["strike_price"] == 5490
    assert fop.fields["underlying_symbol"] == "/ESM24"


def test_reset_makes_the_next_event_a_snapshot_and_seq_continues() -> None:
    normalizer = Normalizer()
    feed(normalizer, "live transcript #4")
    feed(normalizer, "live transcript #5")
    normalizer.reset("LEVELONE_EQUITIES")
    (after,) = feed(normalizer, "live transcript #6")
    assert isinstance(after, TickEvent)
    assert after.snapshot is True
    assert after.seq == 3
    # State was forgotten: only what this message carried is known.
    assert (after.bid, after.high, after.delayed, after.fields) == (233.33, None, None, {})
    (next_one,) = feed(normalizer, "live transcript #7")
    assert isinstance(next_one, TickEvent)
    assert (next_one.snapshot, next_one.seq, next_one.bid) == (False, 4, 233.33)


def test_reset_of_some_keys_only() -> None:
    normalizer = Normalizer()
    feed(normalizer, "official LEVELONE_EQUITIES data example")  # SCHW, AAPL, SPY
    normalizer.reset("LEVELONE_EQUITIES", ["AAPL"])
    normalizer.reset("NYSE_BOOK")  # stateless services: nothing to forget
    normalizer.reset("NOT_A_SERVICE", ["X"])
    events = feed(normalizer, "official LEVELONE_EQUITIES data example")
    assert [(e.symbol, e.snapshot, e.seq) for e in events if isinstance(e, TickEvent)] == [
        ("SCHW", False, 2),
        ("AAPL", True, 2),
        ("SPY", False, 2),
    ]


def test_seq_is_per_symbol() -> None:
    normalizer = Normalizer()
    feed(normalizer, "LEVELONE_EQUITIES data")  # MSFT, GOOG
    events = feed(normalizer, "Schwabdev docs example: LEVELONE_EQUITIES")  # AMD, INTC
    events += feed(normalizer, "LEVELONE_EQUITIES snapshot, 4 symbols")  # QQQ, AMD, SPY, CAVA
    assert [(e.symbol, e.seq) for e in events] == [
        ("AMD", 1),
        ("INTC", 1),
        ("QQQ", 1),
        ("AMD", 2),
        ("SPY", 1),
        ("CAVA", 1),
    ]


# --- books ----------------------------------------------------------------------------------


def test_nasdaq_book_levels_makers_and_order() -> None:
    msft, goog = feed(Normalizer(), "NASDAQ_BOOK data")
    assert isinstance(msft, Level2Event)
    assert (msft.venue, msft.book_time, msft.symbol) == ("NASDAQ", 1590532442608, "MSFT")
    assert [level.price for level in msft.bids] == [181.77, 181.75, 157.0]
    assert [level.price for level in msft.asks] == [181.95, 181.98, 182.3, 186.8]
    assert msft.bids[1] == Level(
        price=181.75,
        size=545,
        count=2,
        makers=[
            Maker(id="NSDQ", size=345, time_ms=62685730),
            Maker(id="arcx", size=200, time_ms=63242588),
        ],
    )
    assert isinstance(goog, Level2Event)
    assert goog.asks[0] == Level(
        price=1421.0,
        size=300,
        count=2,
        makers=[
            Maker(id="edgx", size=200, time_ms=56723908),
            Maker(id="arcx", size=100, time_ms=62709059),
        ],
    )


def test_options_book_maker_times_are_ms_since_midnight_new_york() -> None:
    (book,) = feed(Normalizer(), "Schwabdev docs example: OPTIONS_BOOK")
    assert isinstance(book, Level2Event)
    assert book.venue == "OPTIONS"
    best = book.bids[0]
    assert (best.price, best.size, best.count, len(best.makers)) == (5.45, 146, 16, 16)
    assert sum(m.size for m in best.makers) == best.size  # aggregate size, not the count
    assert best.makers[0] == Maker(id="S", size=24, time_ms=50714236)  # 14:05:14.236 ET
    assert all((m.time_ms or 0) <= 50714236 for m in best.makers)


def test_nyse_book_venue_and_aggregate_sizes() -> None:
    (book,) = feed(Normalizer(), "Schwabdev docs example: NYSE_BOOK")
    assert isinstance(book, Level2Event)
    assert (book.venue, book.symbol) == ("NYSE", "F")
    for level in book.bids + book.asks:
        assert level.size == sum(m.size for m in level.makers)
        assert level.count == len(level.makers)


def test_book_sides_are_sorted_best_first_whatever_the_input_order() -> None:
    item = dict(raw_items("Schwabdev docs example: NASDAQ_BOOK")[0])
    rng = random.Random(7)
    item["2"] = rng.sample(item["2"], len(item["2"]))
    item["3"] = rng.sample(item["3"], len(item["3"]))
    (book,) = Normalizer().feed(message("NASDAQ_BOOK", item), 1)
    assert isinstance(book, Level2Event)
    bid_prices = [level.price for level in book.bids]
    ask_prices = [level.price for level in book.asks]
    assert bid_prices == sorted(bid_prices, reverse=True)
    assert ask_prices == sorted(ask_prices)
    assert bid_prices[0] < ask_prices[0]


def test_books_of_two_venues_share_the_symbols_level2_seq() -> None:
    normalizer = Normalizer()
    book = {"key": "AMD", "1": 1, "2": [], "3": []}
    events = normalizer.feed(message("NYSE_BOOK", book), 1)
    events += normalizer.feed(message("NASDAQ_BOOK", book), 1)
    events += normalizer.feed(message("NASDAQ_BOOK", {**book, "key": "F"}), 1)
    assert [(e.symbol, e.seq) for e in events] == [("AMD", 1), ("AMD", 2), ("F", 1)]


# --- bars, screeners, account activity ------------------------------------------------------------


def test_chart_equity_bar_uses_the_real_field_order() -> None:
    msft, _ = feed(Normalizer(), "CHART_EQUITY data")
    assert msft == BarEvent(
        service="CHART_EQUITY",
        symbol="MSFT",
        seq=1,
        schwab_ts=1715908546054,
        recv_ns=1,
        start=1715903940000,
        open=421.65,
        high=421.79,
        low=421.65,
        close=421.755,
        volume=26.0,
        sequence=779,
    )


def test_chart_futures_bar_has_no_sequence() -> None:
    es, cl = feed(Normalizer(), "CHART_FUTURES data")
    assert es == BarEvent(
        service="CHART_FUTURES",
        symbol="/ES",
        seq=1,
        schwab_ts=1590597913941,
        recv_ns=1,
        start=1590597840000,
        open=2996.25,
        high=2997.25,
        low=2995.25,
        close=2997.25,
        volume=1501.0,
        sequence=None,
    )
    assert isinstance(cl, BarEvent)
    assert (cl.symbol, cl.close) == ("/CL", 33.35)


def test_screener_equity() -> None:
    nyse, _ = feed(Normalizer(), "SCREENER_EQUITY data")
    assert isinstance(nyse, ScreenerEvent)
    assert (nyse.symbol, nyse.screener_ts, nyse.sort_field, nyse.frequency) == (
        "NYSE_VOLUME_5",
        1718996308700,
        "VOLUME",
        5,
    )
    assert nyse.items[0] == ScreenerItem(
        symbol="XLF",
        description="SELECT STR FINANCIAL SELECT SPDR ETF",
        last_price=41.305,
        net_change=41.305,
        net_percent_change=1,
        market_share=3.40228332,
        total_volume=51730877,
        volume=1760031,
        trades=644,
    )


def test_screener_option_keeps_item_order() -> None:
    (screener,) = feed(Normalizer(), "Schwabdev docs example: SCREENER_OPTION")
    assert isinstance(screener, ScreenerEvent)
    assert (screener.sort_field, screener.frequency) == ("TRADES", 30)
    trades = [item.trades for item in screener.items]
    assert trades == sorted(trades, key=lambda t: -(t or 0))
    assert screener.items[0].symbol == "SPXW  251209C06855000"


def test_account_activity_with_empty_data() -> None:
    (event,) = feed(Normalizer(), "ACCT_ACTIVITY data")
    assert event == AccountEvent(
        service="ACCT_ACTIVITY",
        symbol="client-correlation-id",
        seq=1,
        schwab_ts=1591754497594,
        recv_ns=1,
        account="1001",
        message_type="OrderEntryRequest",
        data=None,
        item_seq=1,
    )


def test_account_activity_json_data_is_decoded_and_seq_is_one_stream() -> None:
    normalizer = Normalizer()
    order = {"SchwabOrderID": "1", "LimitPrice": {"lo": "220470000", "signScale": 12}}
    events = normalizer.feed(
        message(
            "ACCT_ACTIVITY",
            {"seq": 5, "key": "k", "1": "1001", "2": "OrderCreated", "3": json.dumps(order)},
            {"seq": 6, "key": "other", "1": 1001, "2": "Note", "3": "plain text"},
        ),
        1,
    )
    assert [(e.seq, getattr(e, "item_seq", None)) for e in events] == [(1, 5), (2, 6)]
    first, second = events
    assert isinstance(first, AccountEvent)
    assert isinstance(second, AccountEvent)
    assert first.data == order
    assert (second.account, second.data) == ("1001", "plain text")
    broken = normalizer.feed(message("ACCT_ACTIVITY", {"key": "k", "3": "{not json"}), 1)
    assert isinstance(broken[0], AccountEvent)
    assert broken[0].data == "{not json"


# --- problems are counted, never raised -----------------------------------------------------------


def test_unknown_service_is_counted_once_as_a_new_problem() -> None:
    normalizer = Normalizer()
    assert normalizer.feed(message("TIMESALE_EQUITY", {"key": "A"}), 1) == []
    assert normalizer.feed(message("TIMESALE_EQUITY", {"key": "A"}), 1) == []
    assert normalizer.stats["unknown_service:TIMESALE_EQUITY"] == 2
    assert normalizer.new_problems() == ["unknown_service:TIMESALE_EQUITY"]
    assert normalizer.new_problems() == []
    assert normalizer.by_kind == {"unknown_service": 2}


def test_unknown_fields_are_kept_and_counted() -> None:
    normalizer = Normalizer()
    (event,) = normalizer.feed(
        message("LEVELONE_EQUITIES", {"key": "AAPL", "1": 1.5, "99": 7, "newThing": "x"}), 1
    )
    assert isinstance(event, TickEvent)
    assert event.fields == {"f99": 7, "new_thing": "x"}
    assert event.changed == ["bid", "f99", "new_thing"]
    assert normalizer.stats == {
        "unknown_field:LEVELONE_EQUITIES:99": 1,
        "unknown_field:LEVELONE_EQUITIES:newThing": 1,
    }
    normalizer.feed(message("CHART_FUTURES", {"key": "/ES", "9": 1}), 1)
    normalizer.feed(message("NYSE_BOOK", {"key": "F", "4": 1}), 1)
    assert normalizer.new_problems() == [
        "unknown_field:LEVELONE_EQUITIES:99",
        "unknown_field:LEVELONE_EQUITIES:newThing",
        "unknown_field:CHART_FUTURES:9",
        "unknown_field:NYSE_BOOK:4",
    ]
    assert normalizer.by_kind == {"unknown_field": 4}


def test_items_without_a_key_and_wrong_types_are_counted() -> None:
    normalizer = Normalizer()
    events = normalizer.feed(
        message(
            "LEVELONE_EQUITIES",
            {"1": 1.0},
            {"key": 5, "1": 1.0},
            {"key": "A", "1": "abc", "2": True, "34": 1.5, "delayed": "no", "3": 9.5},
        ),
        1,
    )
    (event,) = events
    assert isinstance(event, TickEvent)
    assert (event.bid, event.ask, event.quote_time, event.delayed, event.last) == (
        None,
        None,
        None,
        None,
        9.5,
    )
    assert event.changed == ["last"]
    assert normalizer.stats == {
        "item_no_key:LEVELONE_EQUITIES": 2,
        "bad_value:LEVELONE_EQUITIES:1": 1,
        "bad_value:LEVELONE_EQUITIES:2": 1,
        "bad_value:LEVELONE_EQUITIES:34": 1,
        "bad_value:LEVELONE_EQUITIES:delayed": 1,
    }
    assert normalizer.by_kind == {"item_no_key": 2, "bad_value": 4}


def test_malformed_book_levels_and_makers_are_dropped_and_counted() -> None:
    normalizer = Normalizer()
    good_maker = {"0": "NSDQ", "1": 100, "2": 5}
    (book,) = normalizer.feed(
        message(
            "NASDAQ_BOOK",
            {
                "key": "X",
                "1": "later",
                "2": [
                    {"0": 10.0, "1": 100, "2": 1, "3": [good_maker, {"0": 1, "1": 1}, "junk"]},
                    {"0": "ten", "1": 100, "2": 1, "3": []},
                    7,
                    {"0": 9.0, "1": 100.0, "2": 1, "3": [{"0": "A", "1": 100, "2": 5.0}]},
                ],
                "3": {"not": "a list"},
            },
        ),
        1,
    )
    assert isinstance(book, Level2Event)
    assert book.book_time is None
    assert book.asks == []
    assert book.bids == [
        Level(price=10.0, size=100, count=1, makers=[Maker(id="NSDQ", size=100, time_ms=5)]),
        Level(price=9.0, size=100, count=1, makers=[Maker(id="A", size=100, time_ms=5)]),
    ]
    assert normalizer.stats == {
        "bad_value:NASDAQ_BOOK:1": 1,
        "bad_maker:NASDAQ_BOOK": 2,
        "bad_level:NASDAQ_BOOK": 2,
        "bad_value:NASDAQ_BOOK:3": 1,
    }
    assert normalizer.by_kind == {"bad_value": 2, "bad_maker": 2, "bad_level": 2}


def test_bad_bar_screener_and_account_values_are_counted() -> None:
    normalizer = Normalizer()
    (bar,) = normalizer.feed(message("CHART_EQUITY", {"key": "A", "2": "x", "7": 1.5}), 1)
    assert isinstance(bar, BarEvent)
    assert (bar.open, bar.start) == (None, None)
    (screener,) = normalizer.feed(
        message(
            "SCREENER_EQUITY",
            {
                "key": "K",
                "1": "x",
                "2": 3,
                "4": [{"symbol": "A", "lastPrice": "1", "description": 2, "foo": 1}, {"x": 1}],
            },
        ),
        1,
    )
    assert isinstance(screener, ScreenerEvent)
    assert (screener.screener_ts, screener.sort_field) == (None, None)
    assert screener.items == [ScreenerItem(symbol="A")]
    (account,) = normalizer.feed(message("ACCT_ACTIVITY", {"key": "k", "1": [], "seq": "1"}), 1)
    assert isinstance(account, AccountEvent)
    assert (account.account, account.item_seq) == (None, None)
    assert normalizer.stats == {
        "bad_value:CHART_EQUITY:2": 1,
        "bad_value:CHART_EQUITY:7": 1,
        "bad_value:SCREENER_EQUITY:1": 1,
        "bad_value:SCREENER_EQUITY:2": 1,
        "bad_value:SCREENER_EQUITY:item.lastPrice": 1,
        "bad_value:SCREENER_EQUITY:item.description": 1,
        "unknown_field:SCREENER_EQUITY:item.foo": 1,
        "bad_screener_item:SCREENER_EQUITY": 1,
        "bad_value:ACCT_ACTIVITY:1": 1,
        "bad_value:ACCT_ACTIVITY:seq": 1,
    }
    assert normalizer.by_kind == {"bad_value": 8, "unknown_field": 1, "bad_screener_item": 1}


def test_problem_names_are_bounded() -> None:
    normalizer = Normalizer()
    normalizer.feed(message("X" * 500), 1)
    normalizer.feed(message("CHART_FUTURES", {"key": "A", "y" * 500: 1}), 1)
    assert all(len(kind) < 100 for kind in normalizer.stats)
    assert set(normalizer.by_kind) <= set(Problem)


def test_problems_are_counted_by_kind_into_the_counter_given() -> None:
    """The client hands its `bad_frames` counter in: every problem lands there by kind, next to
    the frame-level reasons already in it, whether the item took the fast or the checked path."""
    bad_frames: Counter[str] = Counter({"not_json": 1})
    normalizer = Normalizer(bad_frames)
    wide = {"key": "A", **{str(n): 1.0 for n in range(1, 10)}, "1": "x", "77": 1}
    normalizer.feed(message("LEVELONE_EQUITIES", {"1": 1.0}, 3, wide), 1)
    normalizer.feed(message("LEVELONE_EQUITIES", {"key": "A", "77": 2}), 1)
    normalizer.feed(message("TIMESALE_EQUITY", {"key": "A"}), 1)
    assert normalizer.by_kind is bad_frames
    assert bad_frames == {
        "not_json": 1,
        "item_no_key": 1,
        "item_not_object": 1,
        "bad_value": 1,
        "unknown_field": 2,
        "unknown_service": 1,
    }
    assert all(type(kind) is Problem for kind in bad_frames if kind != "not_json")
