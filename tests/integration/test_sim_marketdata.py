"""The simulator's market-data REST (#17): pricehistory, quotes and markets against the shapes
captured from Schwab (../shared/schwab-api.md Part II §6-§9, transcribed below) at several market
times; the error envelope, 401, 404, the per-minute limit (429) and the REST faults; and the point
of it all: a bar a client received over CHART_EQUITY is the candle pricehistory serves for that
minute, for minutes no client was connected for and minutes before the simulator started too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig

from .sim_ws import RawClient, post

ET = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")

#: The captured pricehistory answer (schwab-api.md §6.2, ZW AAPL, default request), two candles.
REAL_HISTORY = {
    "candles": [
        {"open": 183.71, "high": 183.79, "low": 183.55, "close": 183.6, "volume": 25283,
         "datetime": 1714734000000},
        {"open": 189.9994, "high": 190, "low": 189.9994, "close": 190, "volume": 2397,
         "datetime": 1715903940000},
    ],
    "previousClose": 173.03,
    "previousCloseDate": 1714626000000,
    "symbol": "AAPL",
    "empty": False,
}  # fmt: skip
#: The captured quote excerpt (§7, ZW AAPL after 20:00 ET on a Friday).
REAL_QUOTE = {
    "assetMainType": "EQUITY", "assetSubType": "COE", "quoteType": "NBBO", "realtime": True,
    "ssid": 1973757747, "symbol": "AAPL",
    "quote": {"askPrice": 189.92, "askSize": 1, "askTime": 1715990363904, "bidPrice": 189.9,
              "bidSize": 6, "closePrice": 189.84, "lastPrice": 189.9, "lastSize": 2,
              "mark": 189.9, "netChange": 0.06, "quoteTime": 1715990363904,
              "securityStatus": "Normal", "totalVolume": 41282925, "tradeTime": 1715990395834},
    "regular": {"regularMarketLastPrice": 189.87, "regularMarketLastSize": 200,
                "regularMarketTradeTime": 1715976000211},
}  # fmt: skip
#: The EQUITY quote fields the reference lists (§7), beyond the excerpt's.
EQUITY_QUOTE_FIELDS = {
    "52WeekHigh", "52WeekLow", "askPrice", "askSize", "askTime", "askMICId", "bidPrice",
    "bidSize", "bidTime", "bidMICId", "lastPrice", "lastSize", "lastMICId", "openPrice",
    "highPrice", "lowPrice", "closePrice", "mark", "markChange", "markPercentChange",
    "netChange", "netPercentChange", "quoteTime", "tradeTime", "securityStatus", "totalVolume",
}  # fmt: skip
REGULAR_FIELDS = {
    "regularMarketLastPrice", "regularMarketLastSize", "regularMarketNetChange",
    "regularMarketPercentChange", "regularMarketTradeTime",
}  # fmt: skip
#: The captured /markets answers (§8): an open day (SD-API 2024-10-18) and a Saturday (ZW).
REAL_OPEN_DAY = {"equity": {"EQ": {
    "date": "2024-10-18", "marketType": "EQUITY", "product": "EQ", "productName": "equity",
    "isOpen": True,
    "sessionHours": {
        "preMarket": [{"start": "2024-10-18T07:00:00-04:00", "end": "2024-10-18T09:30:00-04:00"}],
        "regularMarket": [{"start": "2024-10-18T09:30:00-04:00",
                           "end": "2024-10-18T16:00:00-04:00"}],
        "postMarket": [{"start": "2024-10-18T16:00:00-04:00", "end": "2024-10-18T20:00:00-04:00"}],
    }}}}  # fmt: skip
REAL_CLOSED_DAY = {"equity": {"equity": {
    "date": "2024-05-18", "marketType": "EQUITY", "product": "equity", "productName": "equity",
    "isOpen": False}}}  # fmt: skip

MOMENTS = {
    "pre-market": "2025-06-10T08:00",
    "regular": "2025-06-10T10:30",
    "post-market": "2025-06-10T17:20",
    "night": "2025-06-10T23:00",
    "weekend": "2025-06-14T12:00",
}


def kinds(value: Any) -> Any:
    """Key order and JSON kind ("number" for int or float: whole doubles come without .0)."""
    if isinstance(value, dict):
        return [(k, kinds(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [kinds(v) for v in value[:1]]
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def start(moment: str, **config: Any) -> SimThread:
    settings: dict[str, Any] = {
        "market_time": datetime.fromisoformat(moment).replace(tzinfo=ET),
        "heartbeat_interval": 0.5,
        "rate": 100,
        **config,
    }
    return SimThread(SimConfig(**settings)).start()


def authed(sim: SimThread) -> httpx.Client:
    token, _ = sim.state.tokens.login()
    return httpx.Client(
        base_url=sim.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def ms(moment: str) -> int:
    return int(datetime.fromisoformat(moment).replace(tzinfo=ET).timestamp() * 1000)


@pytest.fixture(params=list(MOMENTS))
def at_moment(request: pytest.FixtureRequest) -> Iterator[tuple[str, SimThread, httpx.Client]]:
    sim = start(MOMENTS[request.param])
    http = authed(sim)
    try:
        yield request.param, sim, http
    finally:
        http.close()
        sim.stop()


def sim_now(sim: SimThread) -> int:
    return int(sim.call(_now(sim)))


async def _now(sim: SimThread) -> int:
    from schwab_stream.sim.streamer import HUB_KEY

    return sim._sim.runner.app[HUB_KEY].market.now_ms()  # type: ignore[union-attr]


# ---- shapes at every hour ---------------------------------------------------------------------


def test_pricehistory_matches_the_capture_at_every_hour(
    at_moment: tuple[str, SimThread, httpx.Client],
) -> None:
    name, sim, http = at_moment
    day = MOMENTS[name][:10]
    params = {"symbol": "AAPL", "periodType": "day", "frequencyType": "minute", "frequency": 1,
              "startDate": ms(f"{day}T00:00") - 3 * 86_400_000, "endDate": ms(f"{day}T23:59"),
              "needPreviousClose": "true"}  # fmt: skip
    answer = http.get("/marketdata/v1/pricehistory", params=params)
    assert answer.status_code == 200
    body = answer.json()
    assert kinds(body) == kinds(REAL_HISTORY)
    candles = body["candles"]
    assert isinstance(candles[0]["volume"], int) and candles[0]["volume"] > 0
    now = sim_now(sim)
    starts = [c["datetime"] for c in candles]
    assert starts == sorted(set(starts))  # in order, no minute twice
    assert params["startDate"] <= starts[0] and starts[-1] <= params["endDate"]
    assert starts[-1] + 60_000 <= now  # finished minutes only, never the future
    for candle in candles:
        stamp = datetime.fromtimestamp(candle["datetime"] / 1000, ET)
        assert stamp.second == 0 and stamp.weekday() < 5
        assert time_of(stamp) >= (7, 0) and time_of(stamp) <= (19, 59)  # 07:00..19:59 bars
        assert candle["low"] <= min(candle["open"], candle["close"])
        assert candle["high"] >= max(candle["open"], candle["close"])
    close_day = datetime.fromtimestamp(body["previousCloseDate"] / 1000, CHICAGO)
    assert (close_day.hour, close_day.minute) == (0, 0)  # 00:00 America/Chicago, as captured
    without = http.get(
        "/marketdata/v1/pricehistory", params={**params, "needPreviousClose": "false"}
    )
    assert list(without.json()) == ["candles", "symbol", "empty"]


def time_of(stamp: datetime) -> tuple[int, int]:
    return stamp.hour, stamp.minute


def test_quotes_and_markets_match_the_captures_at_every_hour(
    at_moment: tuple[str, SimThread, httpx.Client],
) -> None:
    name, sim, http = at_moment
    answer = http.get(
        "/marketdata/v1/quotes", params={"symbols": "AAPL,$SPX,/ES,EUR/USD,NOPE^X,/ESZ21"}
    )
    assert answer.status_code == 200
    body = answer.json()
    assert list(body) == ["AAPL", "$SPX", "/ES", "EUR/USD", "errors"]
    assert body["errors"] == {"invalidSymbols": ["NOPE^X", "/ESZ21"]}  # expired contracts too
    aapl = body["AAPL"]
    assert list(aapl)[:6] == list(REAL_QUOTE)[:6]
    assert {k: kinds(v) for k, v in aapl["quote"].items() if k in REAL_QUOTE["quote"]} == {
        k: kinds(v) for k, v in REAL_QUOTE["quote"].items()
    }
    assert set(aapl["quote"]) >= EQUITY_QUOTE_FIELDS and set(aapl["regular"]) == REGULAR_FIELDS
    quote = aapl["quote"]
    assert 0 < quote["bidPrice"] <= quote["lastPrice"] <= quote["askPrice"]
    assert quote["tradeTime"] <= sim_now(sim) and quote["securityStatus"] == "Normal"
    assert {"assetMainType", "symbol", "realtime", "quote"} <= set(body["EUR/USD"])
    assert "ssid" not in body["EUR/USD"]  # as captured
    assert "bidPrice" not in body["$SPX"]["quote"]  # an index has no bid/ask
    future = body["/ES"]["quote"]
    assert {"futurePercentChange", "openInterest", "quotedInSession", "settleTime", "tick",
            "tickAmount"} <= set(future)  # fmt: skip
    assert future["quotedInSession"] is (name not in ("post-market", "weekend"))
    only = http.get("/marketdata/v1/quotes", params={"symbols": "AAPL", "fields": "quote"})
    assert set(only.json()["AAPL"]) == {
        "assetMainType", "assetSubType", "quoteType", "realtime", "ssid", "symbol", "quote"
    }  # fmt: skip

    day = MOMENTS[name][:10]
    hours = http.get("/marketdata/v1/markets", params={"markets": "equity", "date": day}).json()
    if name == "weekend":
        real = REAL_CLOSED_DAY["equity"]["equity"]
        assert kinds(hours) == kinds({"equity": {"equity": real}})
        assert hours["equity"]["equity"] == {**real, "date": day}
    else:
        real_open = REAL_OPEN_DAY["equity"]["EQ"]
        assert kinds(hours) == kinds(REAL_OPEN_DAY)
        offset = "-04:00"
        sessions = hours["equity"]["EQ"]["sessionHours"]
        assert sessions["preMarket"][0]["start"] == f"{day}T07:00:00{offset}"
        assert sessions["regularMarket"][0] == {
            "start": f"{day}T09:30:00{offset}", "end": f"{day}T16:00:00{offset}"
        }  # fmt: skip
        assert sessions["postMarket"][0]["end"] == f"{day}T20:00:00{offset}"
        assert hours["equity"]["EQ"]["isOpen"] is real_open["isOpen"]


def test_markets_knows_the_calendar() -> None:
    sim = start("2025-11-26T12:00")
    try:
        with authed(sim) as http:
            thanksgiving = http.get(
                "/marketdata/v1/markets", params={"markets": "equity,option", "date": "2025-11-27"}
            ).json()
            assert thanksgiving["equity"]["equity"]["isOpen"] is False
            assert thanksgiving["option"]["option"]["isOpen"] is False
            friday = http.get(
                "/marketdata/v1/markets", params={"markets": "equity", "date": "2025-11-28"}
            ).json()["equity"]["EQ"]["sessionHours"]
            assert friday["regularMarket"][0]["end"] == "2025-11-28T13:00:00-05:00"  # early close
            past = http.get(
                "/marketdata/v1/markets", params={"markets": "equity", "date": "2025-11-01"}
            )
            assert past.status_code == 400
    finally:
        sim.stop()


# ---- parameters, errors, limits, faults -------------------------------------------------------


def errors_of(answer: httpx.Response) -> dict[str, Any]:
    body = answer.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1
    error: dict[str, Any] = body["errors"][0]
    assert {"id", "status", "title", "detail"} <= set(error)
    assert int(error["status"]) == answer.status_code
    assert answer.headers["Schwab-Client-CorrelId"]
    return error


def test_bad_parameters_are_400_with_schwabs_envelope() -> None:
    sim = start(MOMENTS["regular"])
    try:
        with authed(sim) as http:
            bad = [
                ({}, "symbol"),
                ({"symbol": "AAPL", "periodType": "week"}, "periodType"),
                ({"symbol": "AAPL", "periodType": "day", "period": 7}, "period"),
                ({"symbol": "AAPL", "periodType": "month", "frequencyType": "minute"},
                 "frequencyType"),
                ({"symbol": "AAPL", "frequencyType": "minute", "frequency": 2}, "frequency"),
                ({"symbol": "AAPL", "startDate": "yesterday"}, "startDate"),
                ({"symbol": "AAPL", "startDate": 2, "endDate": 1}, "startDate"),
                ({"symbol": "AAPL", "needExtendedHoursData": "maybe"}, "needExtendedHoursData"),
                ({"symbol": "NOT A SYMBOL"}, "symbol"),
            ]  # fmt: skip
            for params, parameter in bad:
                answer = http.get("/marketdata/v1/pricehistory", params=params)
                assert answer.status_code == 400, params
                assert errors_of(answer)["source"] == {"parameter": parameter}
            none = http.get("/marketdata/v1/quotes", params={"symbols": ""})
            assert errors_of(none)["detail"] == "Search combination should have min of 1."
            fields = http.get("/marketdata/v1/quotes", params={"symbols": "AAPL", "fields": "x"})
            assert fields.status_code == 400 and "quote" in errors_of(fields)["detail"]
            assert http.get("/marketdata/v1/markets").status_code == 400
            unknown = http.get("/marketdata/v1/nothing")
            assert unknown.status_code == 404 and errors_of(unknown)["title"] == "Not Found"
            single = http.get("/marketdata/v1/NOPE^X/quotes")
            assert single.status_code == 404
            assert list(http.get("/marketdata/v1/AAPL/quotes").json()) == ["AAPL"]
            # no history for options; none for futures unless futures_history
            for symbol in ("AAPL  250620C00200000", "/ES", "EUR/USD"):
                empty = http.get("/marketdata/v1/pricehistory", params={"symbol": symbol})
                assert empty.json() == {"candles": [], "symbol": symbol, "empty": True}
    finally:
        sim.stop()


def test_a_missing_expired_or_revoked_token_is_401() -> None:
    sim = start(MOMENTS["regular"])
    try:
        http = authed(sim)
        assert http.get("/marketdata/v1/quotes", params={"symbols": "AAPL"}).status_code == 200
        bare = httpx.get(sim.base_url + "/marketdata/v1/quotes", params={"symbols": "AAPL"})
        assert bare.status_code == 401
        assert errors_of(bare) | {"id": ""} == {
            "id": "", "status": 401, "title": "Unauthorized", "detail": "Client not authorized"
        }  # fmt: skip
        post(sim, "/sim/tokens/expire-access")
        assert http.get("/marketdata/v1/markets", params={"markets": "equity"}).status_code == 401
        http.close()
        http = authed(sim)
        post(sim, "/sim/tokens/revoke")
        answer = http.get("/marketdata/v1/pricehistory", params={"symbol": "AAPL"})
        assert answer.status_code == 401
        http.close()
    finally:
        sim.stop()


def test_the_per_minute_limit_answers_429_and_faults_fail_the_next_calls() -> None:
    sim = start(MOMENTS["regular"], rest_limit_per_minute=5)
    try:
        with authed(sim) as http:
            statuses = [
                http.get("/marketdata/v1/quotes", params={"symbols": "AAPL"}).status_code
                for _ in range(7)
            ]
            assert statuses == [200] * 5 + [429] * 2
            limited = http.get("/marketdata/v1/markets", params={"markets": "equity"})
            assert limited.status_code == 429
            assert 1 <= int(limited.headers["Retry-After"]) <= 60
            assert errors_of(limited)["title"] == "Too Many Requests"
            stats = httpx.get(sim.base_url + "/sim/stats").json()["rest"]
            assert stats == {"quotes": 7, "markets": 1, "status_429": 3}
    finally:
        sim.stop()
    sim = start(MOMENTS["regular"])
    try:
        with authed(sim) as http:
            assert post(sim, "/sim/fault/rest?status=500&count=2") == {
                "fault": "rest", "status": 500, "count": 2
            }  # fmt: skip
            history = {"symbol": "AAPL"}
            answers = [
                http.get("/marketdata/v1/pricehistory", params=history).status_code
                for _ in range(3)
            ]
            assert answers == [500, 500, 200]
            post(sim, "/sim/fault/rest?status=429&count=1")
            throttled = http.get("/marketdata/v1/quotes", params={"symbols": "AAPL"})
            assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
            stats = httpx.get(sim.base_url + "/sim/stats").json()
            assert stats["rest"] == {
                "pricehistory": 3, "quotes": 1, "status_500": 2, "status_429": 1
            }  # fmt: skip
            assert stats["fault_rest"] == 2
    finally:
        sim.stop()


# ---- one market: the bars that streamed are the bars history serves ---------------------------


def chart_bars(client: RawClient, seconds: float) -> dict[int, dict[str, Any]]:
    """CHART_EQUITY items received for `seconds`, by (key, chart time)."""
    bars: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            frame = client.recv(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        for block in frame.get("data", []):
            if block["service"] == "CHART_EQUITY":
                for item in block["content"]:
                    assert item["7"] not in bars  # no bar twice
                    bars[item["7"]] = item
    return bars


def subscribe_charts(sim: SimThread) -> RawClient:
    client = RawClient(sim)
    client.login()
    answer = client.command("CHART_EQUITY", "SUBS", keys="AAPL", fields="0,1,2,3,4,5,6,7,8")
    assert answer["content"]["code"] == 0
    return client


def history(
    sim: SimThread, start_ms: int, end_ms: int, http: httpx.Client | None = None
) -> dict[int, dict[str, Any]]:
    """AAPL's one-minute candles, by start (with a token of its own unless given a client: a
    login ends the older tokens)."""
    params = {"symbol": "AAPL", "periodType": "day", "frequencyType": "minute", "frequency": 1,
              "startDate": start_ms, "endDate": end_ms}  # fmt: skip
    if http is None:
        with authed(sim) as own:
            answer = own.get("/marketdata/v1/pricehistory", params=params)
    else:
        answer = http.get("/marketdata/v1/pricehistory", params=params)
    assert answer.status_code == 200
    return {c["datetime"]: c for c in answer.json()["candles"]}


def same_bar(item: dict[str, Any], candle: dict[str, Any]) -> bool:
    return (item["2"], item["3"], item["4"], item["5"], item["6"], item["7"]) == (
        candle["open"], candle["high"], candle["low"], candle["close"], candle["volume"],
        candle["datetime"],
    )  # fmt: skip


def test_streamed_bars_are_the_history_candles_also_across_a_gap_and_before_the_start() -> None:
    # 600x: ten bar-minutes a second. The simulator starts at 10:30; a client streams AAPL bars,
    # drops, nobody is connected for a while, a client streams again.
    open_ms = ms("2025-06-10T07:00")
    sim = start(MOMENTS["regular"], time_scale=600)
    try:
        first = subscribe_charts(sim)
        before = chart_bars(first, 1.5)
        post(sim, "/sim/fault/drop")
        first.close()
        gap_from = sim_now(sim)
        time.sleep(1.5)  # about 15 bar-minutes with no client
        gap_until = sim_now(sim)
        second = subscribe_charts(sim)
        after = chart_bars(second, 1.5)
        second.close()
        candles = history(sim, open_ms, sim_now(sim))
    finally:
        sim.stop()
    streamed = {**before, **after}
    assert len(before) >= 8 and len(after) >= 8
    for start_ms, item in streamed.items():
        assert same_bar(item, candles[start_ms]), (item, candles[start_ms])
    # every minute from the session's open to the last one streamed: 07:00 onwards, the minutes
    # before the simulator started and those nobody was connected for included
    last = max(streamed)
    assert sorted(c for c in candles if c <= last) == list(range(open_ms, last + 1, 60_000))
    unseen = [c for c in candles if gap_from + 60_000 <= c < gap_until - 120_000]
    assert len(unseen) >= 5 and not set(unseen) & set(streamed)


def test_history_before_the_start_is_what_a_simulator_started_earlier_streamed() -> None:
    """Same seed: the 09:40-09:45 bars one simulator streamed live are the candles another,
    started at 10:30, serves for those minutes (no client of it ever saw them)."""
    early = start("2025-06-10T09:40", time_scale=300)
    try:
        client = subscribe_charts(early)
        streamed = chart_bars(client, 1.6)
        client.close()
    finally:
        early.stop()
    late = start(MOMENTS["regular"])
    try:
        candles = history(late, ms("2025-06-10T09:40"), ms("2025-06-10T09:50"))
    finally:
        late.stop()
    assert len(streamed) >= 4
    for start_ms, item in streamed.items():
        assert same_bar(item, candles[start_ms])


def test_history_depth_extended_hours_and_aggregation() -> None:
    sim = start(MOMENTS["regular"], history_days=5, futures_history=True)
    try:
        with authed(sim) as http:
            now = sim_now(sim)
            deep = history(sim, now - 30 * 86_400_000, now, http)
            assert min(deep) >= now - 5 * 86_400_000  # depth: history_days
            regular = http.get("/marketdata/v1/pricehistory", params={
                "symbol": "AAPL", "needExtendedHoursData": "false",
                "startDate": ms("2025-06-09T00:00"), "endDate": ms("2025-06-09T23:59"),
            })  # fmt: skip
            stamps = [c["datetime"] for c in regular.json()["candles"]]
            assert len(stamps) == 390  # 09:30..15:59, as captured
            assert stamps[0] == ms("2025-06-09T09:30") and stamps[-1] == ms("2025-06-09T15:59")
            one = history(sim, ms("2025-06-09T09:30"), ms("2025-06-09T09:34"), http)
            five = http.get("/marketdata/v1/pricehistory", params={
                "symbol": "AAPL", "frequency": 5,
                "startDate": ms("2025-06-09T09:30"), "endDate": ms("2025-06-09T09:34"),
            })  # fmt: skip
            (candle,) = five.json()["candles"]
            minutes = [one[k] for k in sorted(one)]
            assert candle["open"] == minutes[0]["open"] and candle["close"] == minutes[-1]["close"]
            assert candle["volume"] == sum(m["volume"] for m in minutes)
            assert candle["high"] == max(m["high"] for m in minutes)
            futures = http.get("/marketdata/v1/pricehistory", params={
                "symbol": "/ES", "startDate": ms("2025-06-09T17:00"),
                "endDate": ms("2025-06-09T18:05")}).json()["candles"]  # fmt: skip
            # the daily break: no bar 17:00-17:59, bars again from 18:00
            assert [c["datetime"] for c in futures] == [
                ms("2025-06-09T18:00") + 60_000 * i for i in range(6)
            ]
            daily = http.get(
                "/marketdata/v1/pricehistory",
                params={"symbol": "AAPL", "periodType": "month", "frequencyType": "daily"},
            ).json()
            days = [datetime.fromtimestamp(c["datetime"] / 1000, CHICAGO) for c in daily["candles"]]
            assert days and all((d.hour, d.minute) == (0, 0) and d.weekday() < 5 for d in days)
            assert days[-1].date() == datetime(2025, 6, 9).date()  # up to the previous close
            assert days[0].date() >= (datetime(2025, 6, 9) - timedelta(days=32)).date()
    finally:
        sim.stop()
