"""The market-data answers decoded from Schwab's real shapes (../shared/schwab-api.md §6.2, §7, §8,
copied below with their origins), and every malformed answer a RestError `bad_answer`, never a
msgspec exception."""

from __future__ import annotations

import datetime as dt

import pytest

from schwab_stream.errors import RestError, RestReason
from schwab_stream.rest.models import (
    Candle,
    decode_candles,
    decode_market_hours,
    decode_quotes,
)

#: z-Wind/schwab_api tests/model/MarketData (captured May 2024): AAPL, a default request, the first
#: and last of 7,291 candles. Whole prices come without a decimal point ("high":190).
PRICE_HISTORY_AAPL = b"""{"candles":[
  {"open":183.71,"high":183.79,"low":183.55,"close":183.6,"volume":25283,"datetime":1714734000000},
  {"open":189.9994,"high":190,"low":189.9994,"close":190,"volume":2397,"datetime":1715903940000}],
 "previousClose":173.03,"previousCloseDate":1714626000000,"symbol":"AAPL","empty":false}"""

#: The empty answer seen only in mocks (UNVERIFIED from Schwab), with no previousClose keys.
PRICE_HISTORY_EMPTY = b'{"candles":[],"symbol":"X","empty":true}'

#: z-Wind (captured May 2024, after 20:00 ET on a Friday): an AAPL quote, plus the sibling
#: invalidSymbols list of the capture-like z-Wind file.
QUOTES_AAPL = b"""{"AAPL":{"assetMainType":"EQUITY","assetSubType":"COE","quoteType":"NBBO",
 "realtime":true,"ssid":1973757747,"symbol":"AAPL",
 "quote":{"askPrice":189.92,"askSize":1,"askTime":1715990363904,"bidPrice":189.9,"bidSize":6,
          "closePrice":189.84,"lastPrice":189.9,"lastSize":2,"mark":189.9,"netChange":0.06,
          "quoteTime":1715990363904,"securityStatus":"Normal","totalVolume":41282925,
          "tradeTime":1715990395834,"52WeekHigh":199.62,"askMICId":"ARCX","postMarketChange":0.03},
 "regular":{"regularMarketLastPrice":189.87,"regularMarketLastSize":200,
            "regularMarketTradeTime":1715976000211},
 "fundamental":{"avg10DaysVolume":53009180,"divYield":0.52},
 "reference":{"cusip":"037833100","description":"Apple Inc"}},
 "errors":{"invalidSymbols":["^IRX","/ESZ21","ESM24.CME","AMZN  220617C03170000"]}}"""

#: Schwabdev API docs (captured Oct 2024): an open day of the equity market.
HOURS_OPEN = b"""{"equity":{"EQ":{"date":"2024-10-18","marketType":"EQUITY","product":"EQ",
  "productName":"equity","isOpen":true,
  "sessionHours":{
    "preMarket":[{"start":"2024-10-18T07:00:00-04:00","end":"2024-10-18T09:30:00-04:00"}],
    "regularMarket":[{"start":"2024-10-18T09:30:00-04:00","end":"2024-10-18T16:00:00-04:00"}],
    "postMarket":[{"start":"2024-10-18T16:00:00-04:00","end":"2024-10-18T20:00:00-04:00"}]}}}}"""

#: z-Wind (captured May 2024, a Saturday): the product key becomes the market's name, no sessions.
HOURS_CLOSED = (
    b'{"equity":{"equity":{"date":"2024-05-18","marketType":"EQUITY","product":"equity",'
    b'"isOpen":false}}}'
)

NEW_YORK = dt.timezone(dt.timedelta(hours=-4))


def test_price_history_capture() -> None:
    answer = decode_candles(PRICE_HISTORY_AAPL)
    assert answer.symbol == "AAPL"
    assert answer.empty is False
    assert answer.previous_close == 173.03
    assert answer.previous_close_date == 1714626000000
    assert answer.candles == [
        Candle(183.71, 183.79, 183.55, 183.6, 25283, 1714734000000),
        Candle(189.9994, 190.0, 189.9994, 190.0, 2397, 1715903940000),
    ]
    assert all(isinstance(c.high, float) and isinstance(c.close, float) for c in answer.candles)


def test_price_history_empty_answer_without_previous_close() -> None:
    answer = decode_candles(PRICE_HISTORY_EMPTY)
    assert (answer.candles, answer.empty, answer.previous_close) == ([], True, None)


def test_a_volume_written_as_a_whole_float_is_still_an_int() -> None:
    body = b'{"candles":[{"open":1,"high":1,"low":1,"close":1,"volume":26.0,"datetime":0}]}'
    assert decode_candles(body).candles[0].volume == 26


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>Whitelabel Error Page (status=500)</html>",
        b"[]",
        b"null",
        b'{"symbol":"AAPL","empty":true}',
        b'{"errors":[{"status":"400","title":"Bad Request"}]}',
        b'{"candles":[{"open":"x","high":1,"low":1,"close":1,"volume":1,"datetime":0}]}',
        b'{"candles":[{"open":1,"high":1,"low":1,"close":1,"volume":1.5,"datetime":0}]}',
        b'{"candles":[{"open":1,"high":1,"low":1,"close":1,"volume":1}]}',
        b'{"candles":[1, 2]}',
        b'{"candles":[' + b"[" * 5000 + b"]" * 5000 + b"]}",
    ],
)
def test_a_malformed_price_history_is_a_bad_answer(body: bytes) -> None:
    with pytest.raises(RestError) as caught:
        decode_candles(body)
    assert caught.value.reason is RestReason.BAD_ANSWER
    assert caught.value.kind == "rest"


def test_quotes_capture_with_invalid_symbols() -> None:
    asked = ["AAPL", "^IRX", "/ESZ21", "ESM24.CME", "AMZN  220617C03170000", "MSFT"]
    answer = decode_quotes(QUOTES_AAPL, asked)
    assert list(answer.quotes) == ["AAPL"]
    aapl = answer.quotes["AAPL"]
    assert (aapl.symbol, aapl.asset_main_type, aapl.asset_sub_type) == ("AAPL", "EQUITY", "COE")
    assert (aapl.quote_type, aapl.realtime, aapl.ssid) == ("NBBO", True, 1973757747)
    assert aapl.quote is not None
    assert (aapl.quote.bid_price, aapl.quote.bid_size) == (189.9, 6)
    assert (aapl.quote.ask_price, aapl.quote.ask_size, aapl.quote.ask_mic_id) == (
        189.92,
        1,
        "ARCX",
    )
    assert (aapl.quote.last_price, aapl.quote.close_price, aapl.quote.mark) == (
        189.9,
        189.84,
        189.9,
    )
    assert aapl.quote.total_volume == 41282925
    assert aapl.quote.trade_time == 1715990395834
    assert aapl.quote.security_status == "Normal"
    assert aapl.quote.week_52_high == 199.62
    assert aapl.quote.post_market_change == 0.03
    assert aapl.regular is not None
    assert aapl.regular.regular_market_last_price == 189.87
    assert aapl.regular.regular_market_trade_time == 1715976000211
    assert answer.invalid_symbols == ("^IRX", "/ESZ21", "ESM24.CME", "AMZN  220617C03170000")
    assert answer.missing == ("MSFT",)
    assert answer.unreadable == ()


def test_one_unreadable_quote_does_not_lose_the_others() -> None:
    body = (
        b'{"AAPL":{"symbol":"AAPL","quote":{"bidPrice":1}},'
        b'"BAD":{"quote":{"bidPrice":"x"}},"ODD":7}'
    )
    answer = decode_quotes(body, ["AAPL", "BAD", "ODD"])
    assert list(answer.quotes) == ["AAPL"]
    assert answer.unreadable == ("BAD", "ODD")
    assert answer.missing == ()


def test_an_index_quote_without_bid_and_ask() -> None:
    body = (
        b'{"$SPX":{"assetMainType":"INDEX","symbol":"$SPX",'
        b'"quote":{"lastPrice":5000,"totalVolume":0}}}'
    )
    quote = decode_quotes(body, ["$SPX"]).quotes["$SPX"].quote
    assert quote is not None
    assert (quote.last_price, quote.bid_price, quote.ask_price) == (5000.0, None, None)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]",
        b"not json",
        b'{"errors":[{"status":"400","title":"Bad Request"}]}',
        b'{"errors":{"invalidSymbols":"AAPL"}}',
    ],
)
def test_a_malformed_quotes_answer_is_a_bad_answer(body: bytes) -> None:
    with pytest.raises(RestError) as caught:
        decode_quotes(body, ["AAPL"])
    assert caught.value.reason is RestReason.BAD_ANSWER


def test_market_hours_open_day_capture() -> None:
    hours = decode_market_hours(HOURS_OPEN)
    eq = hours["equity"]["EQ"]
    assert eq.is_open is True
    assert eq.date == dt.date(2024, 10, 18)
    assert (eq.market_type, eq.product, eq.product_name) == ("EQUITY", "EQ", "equity")
    assert eq.session_hours is not None
    regular = eq.session_hours.regular_market[0]
    assert regular.start == dt.datetime(2024, 10, 18, 9, 30, tzinfo=NEW_YORK)
    assert regular.end == dt.datetime(2024, 10, 18, 16, 0, tzinfo=NEW_YORK)
    assert eq.session_hours.pre_market[0].start == dt.datetime(2024, 10, 18, 7, tzinfo=NEW_YORK)
    assert eq.session_hours.post_market[0].end == dt.datetime(2024, 10, 18, 20, tzinfo=NEW_YORK)


def test_market_hours_closed_day_capture() -> None:
    hours = decode_market_hours(HOURS_CLOSED)
    day = hours["equity"]["equity"]
    assert (day.is_open, day.date, day.session_hours) == (False, dt.date(2024, 5, 18), None)


def test_a_session_we_do_not_model_is_ignored() -> None:
    body = (
        b'{"future":{"ES":{"isOpen":true,"sessionHours":{"outcryMarket":[],"regularMarket":'
        b'[{"start":"2024-10-18T18:00:00-04:00","end":"2024-10-19T17:00:00-04:00"}]}}}}'
    )
    sessions = decode_market_hours(body)["future"]["ES"].session_hours
    assert sessions is not None
    assert len(sessions.regular_market) == 1
    assert sessions.pre_market == []


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b'{"equity":[]}',
        b'{"equity":{"EQ":{"date":"2024-10-18"}}}',
        b'{"equity":{"EQ":{"isOpen":true,"sessionHours":{"regularMarket":[{"start":"9:30"}]}}}}',
    ],
)
def test_a_malformed_market_hours_answer_is_a_bad_answer(body: bytes) -> None:
    with pytest.raises(RestError) as caught:
        decode_market_hours(body)
    assert caught.value.reason is RestReason.BAD_ANSWER
