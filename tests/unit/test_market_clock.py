"""The simulator's market clock: the NYSE calendar, each market's sessions, the daily resets, and
what a connection gets at each hour (issue #15 item 4). Fake clocks only: nothing here depends
on when the suite runs."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schwab_stream.sim import levelone
from schwab_stream.sim.calendar import early_closes, holidays, is_trading_day
from schwab_stream.sim.charts import chart_sequence
from schwab_stream.sim.clock import parse_market_time
from schwab_stream.sim.hours import MarketHours, Schedule
from schwab_stream.sim.hub import Hub
from schwab_stream.sim.registry import Market
from schwab_stream.sim.state import SimConfig, SimState
from schwab_stream.sim.tokens import SIM_CORREL_ID, SIM_CUSTOMER_ID

ET = ZoneInfo("America/New_York")


def ms(text: str) -> int:
    """Epoch ms of a New York time 'YYYY-MM-DDTHH:MM[:SS]'."""
    return int(datetime.fromisoformat(text).replace(tzinfo=ET).timestamp() * 1000)


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def market_at(text: str, time_scale: float = 1.0) -> tuple[Market, Clock]:
    clock = Clock()
    return Market(1, time_scale, clock, start_ms=ms(text)), clock


# ---- the calendar ------------------------------------------------------------------------------

NYSE_HOLIDAYS = {  # nyse.com, "Holidays & Trading Hours"
    2024: "01-01 01-15 02-19 03-29 05-27 06-19 07-04 09-02 11-28 12-25",
    2025: "01-01 01-09 01-20 02-17 04-18 05-26 06-19 07-04 09-01 11-27 12-25",
    2026: "01-01 01-19 02-16 04-03 05-25 06-19 07-03 09-07 11-26 12-25",
    2027: "01-01 01-18 02-15 03-26 05-31 06-18 07-05 09-06 11-25 12-24",
}


@pytest.mark.parametrize("year", list(NYSE_HOLIDAYS))
def test_nyse_holidays_are_the_published_ones(year: int) -> None:
    expected = {date.fromisoformat(f"{year}-{md}") for md in NYSE_HOLIDAYS[year].split()}
    assert holidays(year) == expected


def test_a_saturday_new_year_is_not_moved_and_early_closes_are_the_published_ones() -> None:
    assert date(2021, 12, 31) not in holidays(2021) and date(2022, 1, 1) not in holidays(2022)
    assert early_closes(2024) == {date(2024, 7, 3), date(2024, 11, 29), date(2024, 12, 24)}
    assert early_closes(2026) == {date(2026, 11, 27), date(2026, 12, 24)}  # July 3 is a holiday
    assert not is_trading_day(date(2025, 6, 14)) and is_trading_day(date(2025, 6, 13))


# ---- sessions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "equity", "regular", "option", "future", "forex"),
    [
        ("2025-06-10T06:59", False, False, False, True, True),
        ("2025-06-10T07:00", True, False, False, True, True),  # pre-market
        ("2025-06-10T09:30", True, True, True, True, True),
        ("2025-06-10T15:59", True, True, True, True, True),
        ("2025-06-10T16:00", True, False, False, True, True),  # post-market
        ("2025-06-10T17:30", True, False, False, False, True),  # futures' daily break
        ("2025-06-10T19:59", True, False, False, True, True),
        ("2025-06-10T20:00", False, False, False, True, True),
        ("2025-06-13T16:59", True, False, False, True, True),  # Friday
        ("2025-06-13T17:00", True, False, False, False, False),  # futures and forex: weekend
        ("2025-06-14T12:00", False, False, False, False, False),  # Saturday
        ("2025-06-15T17:30", False, False, False, False, True),  # forex reopens Sunday 17:00
        ("2025-06-15T18:00", False, False, False, True, True),  # futures Sunday 18:00
        ("2025-06-19T11:00", False, False, False, True, True),  # Juneteenth: NYSE closed
        ("2025-12-25T11:00", False, False, False, False, True),  # Christmas: CME closed too
        ("2024-11-29T13:30", True, False, False, True, True),  # early close at 13:00
    ],
)
def test_each_market_trades_in_its_sessions_only(
    moment: str, equity: bool, regular: bool, option: bool, future: bool, forex: bool
) -> None:
    hours = MarketHours()
    t = ms(moment)
    got = (
        Schedule("equity", hours).open_at(t),
        Schedule("equity", hours).regular_at(t),
        Schedule("option", hours).open_at(t),
        Schedule("future", hours).open_at(t),
        Schedule("forex", hours).open_at(t),
    )
    assert got == (equity, regular, option, future, forex)


def test_next_open_and_last_close_cross_weekends_and_holidays() -> None:
    equity = Schedule("equity", MarketHours())
    assert equity.next_open(ms("2025-06-13T21:00")) == ms("2025-06-16T07:00")
    assert equity.last_close(ms("2025-06-16T06:00")) == ms("2025-06-13T20:00")
    assert equity.next_open(ms("2025-06-18T20:30")) == ms("2025-06-20T07:00")  # Juneteenth
    assert equity.last_open(ms("2025-06-14T12:00"), regular=True) == ms("2025-06-13T16:00") - 1


def test_hours_are_a_setting() -> None:
    hours = MarketHours().replace(["forex_open=18:00", "equity_open=04:00"])
    assert Schedule("equity", hours).open_at(ms("2025-06-10T05:00"))
    assert not Schedule("forex", hours).open_at(ms("2025-06-15T17:30"))
    for bad in (["moon_open=01:00"], ["equity_open=25:00"], ["equity_open=7"]):
        with pytest.raises(ValueError):
            MarketHours().replace(bad)


def test_market_time_starts_where_told_and_time_scale_runs_on_top() -> None:
    start = parse_market_time("2025-06-10T10:30")
    assert start == datetime(2025, 6, 10, 10, 30, tzinfo=ET)
    market, clock = market_at("2025-06-10T10:30", time_scale=60)
    assert market.now_ms() == ms("2025-06-10T10:30")
    clock.t += 2.5
    assert market.now_ms() == ms("2025-06-10T10:32:30")
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH:MM"):
        parse_market_time("10:30")


# ---- the instruments on the clock ----------------------------------------------------------------


def run(market: Market, clock: Clock, symbol: str, seconds: float, step: float = 0.5) -> None:
    inst = market.instrument(symbol)
    assert inst is not None
    for _ in range(round(seconds / step)):
        clock.t += step
        inst.step(market.now_ms())
        inst.catch_up(market.now_ms())


def test_nothing_trades_outside_the_session_and_bars_are_extended_hours_only() -> None:
    market, clock = market_at("2025-06-10T19:50", time_scale=60)
    run(market, clock, "AAPL", 30)  # to 20:20
    aapl = market.instrument("AAPL")
    assert aapl is not None
    trades, last_trade = aapl.trades, aapl.trade_ms
    assert ms("2025-06-10T19:59") <= last_trade < ms("2025-06-10T20:00")
    run(market, clock, "AAPL", 60)  # to 21:20
    assert (aapl.trades, aapl.trade_ms) == (trades, last_trade)
    assert max(chart_sequence(bar.start_ms) for bar in aapl.bars) == 779  # 19:59
    assert all(0 <= chart_sequence(bar.start_ms) <= 779 for bar in aapl.bars)


def test_regular_fields_freeze_at_the_close_and_post_market_moves_the_rest() -> None:
    market, clock = market_at("2025-06-10T15:50", time_scale=60)
    run(market, clock, "MSFT", 30)  # to 16:20
    msft = market.instrument("MSFT")
    assert msft is not None
    _, at_close = levelone.fields("LEVELONE_EQUITIES", msft, market.now_ms())
    run(market, clock, "MSFT", 60)  # to 17:20
    _, later = levelone.fields("LEVELONE_EQUITIES", msft, market.now_ms())
    frozen = ("10", "11", "17", "29", "30", "31", "36", "43")  # high, low, open, regular market
    assert {f: later[f] for f in frozen} == {f: at_close[f] for f in frozen}
    assert ms("2025-06-10T15:59") <= later["36"] < ms("2025-06-10T16:00")
    assert later["35"] > ms("2025-06-10T16:30") and later["8"] > at_close["8"]
    assert (later["27"], later["28"]) == (False, False)
    assert later["50"] == pytest.approx(later["3"] - later["29"], abs=0.011)


def test_daily_resets_at_the_documented_times() -> None:
    market, clock = market_at("2025-06-10T19:00", time_scale=600)
    aapl = market.instrument("AAPL")
    assert aapl is not None
    run(market, clock, "AAPL", 6)  # 19:00 -> 20:00
    regular_close, volume = aapl.regular, aapl.volume
    assert regular_close is not None and aapl.open and aapl.high and volume
    clock.t += 7.5 * 60 * 60 / 600  # 03:30 next day
    aapl.step(market.now_ms())
    assert (aapl.open, aapl.high, aapl.low) == (0, 0, 0)  # zeroed at 03:30 ...
    assert aapl.close == regular_close.price and aapl.volume == volume  # ... close reloaded
    clock.t += 4 * 60 * 60 / 600  # 07:30
    aapl.step(market.now_ms())
    assert aapl.volume <= 30 * 20  # zeroed at 07:28, then a pre-market trade or so
    run(market, clock, "AAPL", 0.5)
    assert (aapl.open, aapl.high, aapl.low) == (0, 0, 0)  # pre-market trades do not set them


def test_a_weekend_keeps_fridays_values() -> None:
    market, clock = market_at("2025-06-13T19:58", time_scale=60)
    spy = market.instrument("SPY")
    assert spy is not None
    run(market, clock, "SPY", 5)
    friday = (spy.volume, spy.open, spy.high, spy.low, spy.close, spy.last)
    clock.t += 12 * 60  # Saturday 08:03, then Sunday: no reset on a day that does not trade
    spy.step(market.now_ms())
    clock.t += 24 * 60
    spy.step(market.now_ms())
    assert (spy.volume, spy.open, spy.high, spy.low, spy.close, spy.last) == friday


def test_an_instrument_made_at_night_is_as_of_its_last_session() -> None:
    market, _ = market_at("2025-06-14T12:00")  # Saturday
    aapl = market.instrument("AAPL")
    es = market.instrument("/ES")
    assert aapl is not None and es is not None
    assert ms("2025-06-13T19:50") < aapl.trade_ms < ms("2025-06-13T20:00")
    assert aapl.regular is not None and aapl.regular.ms < ms("2025-06-13T16:00")
    assert aapl.bars and chart_sequence(aapl.bars[-1].start_ms) == 779
    assert aapl.open and aapl.high >= aapl.low > 0  # Friday's regular session
    assert ms("2025-06-13T16:50") < es.trade_ms < ms("2025-06-13T17:00")
    _, fut = levelone.fields("LEVELONE_FUTURES", es, market.now_ms())
    assert fut["22"] == "Closed"


def test_pre_market_shows_no_open_high_low_yet() -> None:
    market, _ = market_at("2025-06-10T08:59")
    _, values = levelone.fields("LEVELONE_EQUITIES", market.instrument("MSFT"), market.now_ms())  # type: ignore[arg-type]
    assert (values["10"], values["11"], values["17"]) == (0, 0, 0)
    assert values["12"] > 0 and values["20"] > 0  # close and the 52-week low stay


# ---- a connection at each hour -----------------------------------------------------------------


def session_frames(moment: str, service: str, keys: str, seconds: float) -> list[dict[str, Any]]:
    """Everything a connection subscribed at `moment` gets for `seconds` (60x market time)."""
    clock = Clock()
    state = SimState(
        SimConfig(rate=20, book_interval=0.1, time_scale=60, market_time=parse_market_time(moment))
    )
    state.tokens.clock = clock
    hub = Hub(state, clock=clock)
    now = 0.0
    session = hub.connect(now)

    def send(command: str, svc: str, **params: str) -> None:
        request = {
            "service": svc,
            "command": command,
            "requestid": "1",
            "SchwabClientCustomerId": SIM_CUSTOMER_ID,
            "SchwabClientCorrelId": SIM_CORREL_ID,
            "parameters": params,
        }
        session.receive(json.dumps({"requests": [request]}), now)

    send("LOGIN", "ADMIN", Authorization=state.tokens.login()[0])
    send("SUBS", service, keys=keys)
    frames = []
    for _ in range(round(seconds / 0.05)):
        now += 0.05
        clock.t += 0.05
        session.poll(now)
        while session.outbox:
            frames.append(json.loads(session.outbox.popleft()))
    return frames


def items(frames: list[dict[str, Any]], service: str) -> list[dict[str, Any]]:
    return [i for f in frames for b in f.get("data", []) if b["service"] == service
            for i in b["content"]]  # fmt: skip


def test_at_night_equities_get_one_snapshot_then_heartbeats_only() -> None:
    frames = session_frames("2025-06-10T23:00", "LEVELONE_EQUITIES", "AAPL,MSFT", 3)
    got = items(frames, "LEVELONE_EQUITIES")
    assert sorted(i["key"] for i in got) == ["AAPL", "MSFT"] and all("cusip" in i for i in got)
    assert sum("heartbeat" in f.get("notify", [{}])[0] for f in frames) >= 1
    stamps = [f["notify"][0]["heartbeat"] for f in frames if "notify" in f]
    assert all(ms("2025-06-10T23:00") <= int(s) < ms("2025-06-10T23:10") for s in stamps)


def test_at_night_a_chart_subscription_gets_the_days_last_bar() -> None:
    got = items(session_frames("2025-06-10T21:15", "CHART_EQUITY", "MSFT", 2), "CHART_EQUITY")
    assert [(i["key"], i["1"], i["7"]) for i in got] == [("MSFT", 779, ms("2025-06-10T19:59"))]


@pytest.mark.parametrize(
    ("moment", "service", "keys", "streams"),
    [
        ("2025-06-10T08:00", "LEVELONE_EQUITIES", "AAPL", True),
        ("2025-06-10T08:00", "NASDAQ_BOOK", "AAPL", True),
        ("2025-06-10T08:00", "OPTIONS_BOOK", "SPY   250620C00600000", False),
        ("2025-06-10T08:00", "SCREENER_OPTION", "OPTION_CALL_VOLUME_0", False),
        ("2025-06-10T23:00", "LEVELONE_FUTURES", "/ES", True),
        ("2025-06-10T23:00", "NASDAQ_BOOK", "AAPL", False),
        ("2025-06-10T23:00", "SCREENER_EQUITY", "NASDAQ_VOLUME_0", False),
        ("2025-06-14T12:00", "LEVELONE_FOREX", "EUR/USD", False),
    ],
)
def test_each_service_streams_in_its_session_only(
    moment: str, service: str, keys: str, streams: bool
) -> None:
    got = items(session_frames(moment, service, keys, 2), service)
    if service.startswith("LEVELONE_"):
        assert got and "delayed" in got[0]  # a snapshot whatever the hour
        assert (len(got) > 1) == streams
    else:
        assert bool(got) == streams


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--market-time", "2025-06-10 10:30"], "YYYY-MM-DDTHH:MM"),
        (["--hours", "equity_open=7"], "not HH:MM"),
        (["--hours", "lunch=12:00"], "unknown hours 'lunch'"),
    ],
)
def test_sim_refuses_a_bad_market_time_or_hours_with_a_usage_error(
    args: list[str], message: str
) -> None:
    from click.testing import CliRunner

    from schwab_stream.cli.sim import sim

    result = CliRunner().invoke(sim, args)
    assert result.exit_code == 2 and message in result.output, result.output
