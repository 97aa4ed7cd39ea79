"""The simulator's market model: determinism, quote and trade invariants, books, bars, formats."""

from __future__ import annotations

import itertools
from datetime import date
from typing import Any

import pytest

from schwab_stream.sim import books, levelone, screeners
from schwab_stream.sim.charts import chart_day, chart_item, chart_sequence
from schwab_stream.sim.clock import et_ms_of_day
from schwab_stream.sim.registry import Market
from schwab_stream.sim.symbols import classify, option_symbol
from schwab_stream.sim.wire import wire_double

T0 = 1_718_719_200.0  # 2024-06-18 10:00 ET, a Tuesday in the regular session
SYMBOLS = {
    "LEVELONE_EQUITIES": ["AAPL", "ZZZQ", "$SPX"],
    "LEVELONE_OPTIONS": ["AAPL  240621C00190000", "SPY   240621P00520000"],
    "LEVELONE_FUTURES": ["/ES", "/CLQ24"],
    "LEVELONE_FUTURES_OPTIONS": ["./E3DM24P5490", "./OGG26C4240"],
    "LEVELONE_FOREX": ["EUR/USD", "USD/JPY"],
}


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def run(market: Market, clock: Clock, steps: int = 60) -> list[Any]:
    """Drive a market through a fixed script and record everything it produced."""
    out: list[Any] = []
    for n in range(steps):
        clock.t += 0.25
        now = market.now_ms()
        for service, symbols in SYMBOLS.items():
            for symbol in symbols:
                inst = market.for_service(service, symbol)
                assert inst is not None
                inst.step(now)
                out.append(levelone.fields(service, inst, now))
        if n % 10 == 0:
            inst = market.instrument("MSFT")
            assert inst is not None
            out.append(books.snapshot("NASDAQ_BOOK", inst, now))
            out.append(screeners.snapshot(market, "SCREENER_EQUITY", "NASDAQ_VOLUME_5", now))
        chart = market.instrument("MSFT")
        assert chart is not None
        chart.catch_up(now)
        out.append([chart_item("CHART_EQUITY", bar) for bar in chart.bars])
    return out


def test_same_seed_same_market() -> None:
    a_clock, b_clock, c_clock = Clock(), Clock(), Clock()
    a = run(Market(7, time_scale=30, clock=a_clock), a_clock)
    b = run(Market(7, time_scale=30, clock=b_clock), b_clock)
    c = run(Market(8, time_scale=30, clock=c_clock), c_clock)
    assert a == b
    assert a != c


def test_a_symbols_path_does_not_depend_on_other_symbols() -> None:
    clock = Clock()
    alone, crowded = Market(3, clock=clock), Market(3, clock=clock)
    crowded.instrument("MSFT")
    crowded.instrument("EUR/USD")
    paths = []
    for market in (alone, crowded):
        inst = market.instrument("AAPL")
        assert inst is not None
        for i in range(50):
            inst.step(market.now_ms() + i)
        paths.append((inst.bid, inst.ask, inst.last, inst.volume))
    assert paths[0] == paths[1]


@pytest.mark.parametrize("service", list(SYMBOLS))
def test_quotes_and_trades_hold_their_invariants(service: str) -> None:
    clock = Clock()
    market = Market(11, clock=clock)
    for symbol in SYMBOLS[service]:
        inst = market.for_service(service, symbol)
        assert inst is not None
        volume, high, low = inst.volume, inst.high, inst.low
        for _ in range(500):
            clock.t += 0.5
            inst.step(market.now_ms())
            assert 0 <= inst.bid < inst.ask, (symbol, inst.bid, inst.ask)
            assert inst.volume >= volume
            assert inst.high >= high and inst.low <= low
            assert inst.low <= inst.last <= inst.high
            volume, high, low = inst.volume, inst.high, inst.low
        assert inst.trades > 50 and inst.volume > 0
        extras, values = levelone.fields(service, inst, market.now_ms())
        assert extras["delayed"] is False
        assert all(isinstance(k, str) and k.isdigit() for k in values)


def test_level_one_descriptions_and_static_fields_are_plausible() -> None:
    market = Market(1, clock=Clock())
    now = market.now_ms()

    def fields(service: str, symbol: str) -> tuple[dict[str, Any], dict[str, Any]]:
        inst = market.for_service(service, symbol)
        assert inst is not None
        return levelone.fields(service, inst, now)

    extras, eq = fields("LEVELONE_EQUITIES", "MSFT")
    assert extras == {
        "delayed": False,
        "assetMainType": "EQUITY",
        "assetSubType": "COE",
        "cusip": "594918104",
    }
    assert eq["15"] == "Microsoft Corp" and eq["25"] == "NASDAQ" and eq["13"] == "Q"
    _, opt = fields("LEVELONE_OPTIONS", "GOOG  240517C00070000")
    assert opt["1"] == "GOOG 05/17/2024 70.00 C"
    assert (opt["20"], opt["21"], opt["22"], opt["12"], opt["23"], opt["26"]) == (
        70,
        "C",
        "GOOG",
        2024,
        5,
        17,
    )
    _, fut = fields("LEVELONE_FUTURES", "/CL")
    assert fut["16"].startswith("Light Sweet Crude Oil Futures,") and fut["16"].endswith(",ETH")
    assert fut["27"] == "/CL" and fut["34"].startswith("/CL") and fut["21"] == "XNYM"
    _, fo = fields("LEVELONE_FUTURES_OPTIONS", "./E3DM24P5490")
    assert (fo["24"], fo["25"], fo["28"], fo["16"]) == (
        "/ESM24",
        5490,
        "P",
        "E-mini S&P 500 Options",
    )
    _, fx = fields("LEVELONE_FOREX", "EUR/USD")
    assert fx["14"] == "Euro/USDollar Spot" and 0.9 < fx["1"] < 1.3


def test_options_follow_their_underlying() -> None:
    clock = Clock()
    market = Market(5, clock=clock)
    call = market.instrument("AAPL  240719C00150000")
    put = market.instrument("AAPL  240719P00150000")
    assert call is not None and put is not None and call.underlying is put.underlying
    underlying = call.underlying
    assert underlying is not None
    call.step(market.now_ms())
    put.step(market.now_ms())
    intrinsic = underlying.mid() - 150
    assert call.ask >= intrinsic - 0.5  # deep in the money: at least intrinsic
    assert put.bid < 1.0  # deep out of the money
    _, values = levelone.fields("LEVELONE_OPTIONS", call, market.now_ms())
    assert 0.9 < values["28"] <= 1  # delta
    assert values["35"] == pytest.approx(underlying.mid(), abs=0.01)


def test_book_levels_sorted_sizes_summed_times_since_midnight_new_york() -> None:
    clock = Clock()
    market = Market(2, clock=clock)
    for service, symbol in (
        ("NASDAQ_BOOK", "AAPL"),
        ("NYSE_BOOK", "F"),
        ("OPTIONS_BOOK", "SPY   240621C00520000"),
    ):
        inst = market.for_service(service, symbol)
        assert inst is not None
        for _ in range(20):
            clock.t += 1
            now = market.now_ms()
            inst.step(now)
            book = books.snapshot(service, inst, now)
            assert book["1"] == now
            bids, asks = book["2"], book["3"]
            assert bids and asks
            assert [lv["0"] for lv in bids] == sorted({lv["0"] for lv in bids}, reverse=True)
            assert [lv["0"] for lv in asks] == sorted({lv["0"] for lv in asks})
            assert bids[0]["0"] < asks[0]["0"]
            for level in bids + asks:
                makers = level["3"]
                assert level["1"] == sum(m["1"] for m in makers)
                assert level["2"] == len(makers) == len({m["0"] for m in makers})
                assert all(0 <= m["2"] <= et_ms_of_day(now) for m in makers)
                assert all(isinstance(m["1"], int) and isinstance(m["0"], str) for m in makers)


def test_new_york_time_and_chart_sequence_match_real_frames() -> None:
    # CHART_EQUITY sample: MSFT 2024-05-16 19:59 ET candle -> sequence 779, chart day 19859
    assert chart_sequence(1715903940000) == 779
    assert chart_day(1715903940000) == 19859
    # Schwabdev CHART_EQUITY sample (Dec 2025, EST): 14:05 ET candle -> 425, day 20431
    assert chart_sequence(1765307100000) == 425
    assert chart_day(1765307100000) == 20431
    # OPTIONS_BOOK sample: snapshot 14:05:14.236 ET == first maker time 50714236
    assert et_ms_of_day(1765307114236) == 50714236


def test_bars_are_one_minute_candles_built_from_trades() -> None:
    clock = Clock()
    market = Market(4, time_scale=60, clock=clock)
    inst = market.instrument("/ES")
    assert inst is not None
    for _ in range(400):
        clock.t += 0.05  # 3 s of market time per step
        inst.step(market.now_ms())
        inst.catch_up(market.now_ms())
    bars = list(inst.bars)
    assert len(bars) >= 15
    starts = [b.start_ms for b in bars]
    assert all(s % 60_000 == 0 for s in starts)
    assert all(b - a == 60_000 for a, b in itertools.pairwise(starts))
    for bar in bars:
        assert bar.low <= min(bar.open, bar.close) and bar.high >= max(bar.open, bar.close)
    item = chart_item("CHART_FUTURES", bars[-1])
    assert list(item) == ["1", "2", "3", "4", "5", "6"] and item["1"] == bars[-1].start_ms
    equity = chart_item("CHART_EQUITY", bars[-1])
    assert equity["1"] == chart_sequence(bars[-1].start_ms) and equity["7"] == bars[-1].start_ms


def test_bar_volume_is_the_sum_of_its_trades() -> None:
    """Level one prints the tape's trades; each bar is those of its minute, and the volume a
    client sees grows by exactly the trades printed."""
    clock = Clock()
    market = Market(9, clock=clock)
    inst = market.instrument("AAPL")
    assert inst is not None and inst.tape is not None
    start_ms = market.now_ms()
    per_minute: dict[int, list[tuple[float, int]]] = {}
    for ms, price, size in inst.tape.trades(start_ms - 60_000, start_ms + 300_000):
        per_minute.setdefault(ms - ms % 60_000, []).append((price, size))
    volume = inst.volume
    for _ in range(300):
        clock.t += 1
        inst.step(market.now_ms())
    assert inst.volume - volume == sum(
        size for ms, _, size in inst.tape.trades(start_ms, market.now_ms())
    )
    inst.catch_up(market.now_ms() + 60_000)
    checked = 0
    for bar in inst.bars:
        trades = per_minute.get(bar.start_ms)
        if trades and start_ms <= bar.start_ms < start_ms + 240_000:
            prices = [p for p, _ in trades]
            assert bar.volume == sum(s for _, s in trades)
            assert (bar.open, bar.high, bar.low, bar.close) == (
                prices[0],
                max(prices),
                min(prices),
                prices[-1],
            )
            checked += 1
    assert checked >= 4


def test_screeners_rank_their_universe() -> None:
    market = Market(6, clock=Clock())
    now = market.now_ms()
    screen = screeners.snapshot(market, "SCREENER_EQUITY", "NASDAQ_VOLUME_0", now)
    assert screen is not None and (screen["2"], screen["3"]) == ("VOLUME", 0)
    volumes = [i["volume"] for i in screen["4"]]
    assert volumes == sorted(volumes, reverse=True)
    assert sum(i["marketShare"] for i in screen["4"]) <= 100.0001
    assert all(i["totalVolume"] == screen["4"][0]["totalVolume"] for i in screen["4"])
    puts = screeners.snapshot(market, "SCREENER_OPTION", "OPTION_PUT_TRADES_30", now)
    assert puts is not None
    assert all(classify(i["symbol"]) == "option" and i["symbol"][12] == "P" for i in puts["4"])
    assert all(i["description"].endswith(" Put") for i in puts["4"])
    assert screeners.snapshot(market, "SCREENER_OPTION", "NYSE_VOLUME_5", now) is None
    assert screeners.snapshot(market, "SCREENER_EQUITY", "NYSE_VOLUME_7", now) is None


@pytest.mark.parametrize(
    ("key", "parsed"),
    [
        ("NYSE_VOLUME_5", ("NYSE", "VOLUME", 5)),
        ("OPTION_PUT_PERCENT_CHANGE_UP_30", ("OPTION_PUT", "PERCENT_CHANGE_UP", 30)),
        ("$SPX.X_TRADES_0", ("$SPX.X", "TRADES", 0)),
        ("EQUITY_ALL_AVERAGE_PERCENT_VOLUME_60", ("EQUITY_ALL", "AVERAGE_PERCENT_VOLUME", 60)),
        ("NYSE_VOLUME", None),
        ("MOON_VOLUME_5", None),
    ],
)
def test_screener_keys(key: str, parsed: tuple[str, str, int] | None) -> None:
    assert screeners.parse_key(key) == parsed


@pytest.mark.parametrize(
    ("symbol", "kind"),
    [
        ("AAPL", "equity"),
        ("BRK.B", "equity"),
        ("$SPX", "index"),
        ("AAPL  240517C00150000", "option"),
        ("SPXW  240420C05040000", "option"),
        ("/ES", "future"),
        ("/ESZ24", "future"),
        ("./OZCZ23C565", "future_option"),
        ("./E3DM24P5490", "future_option"),
        ("EUR/USD", "forex"),
        ("aapl", None),
        ("AAPL 240517C00150000", None),
        ("./ES", None),
    ],
)
def test_symbol_formats(symbol: str, kind: str | None) -> None:
    assert classify(symbol) == kind


def test_option_symbol_and_wire_doubles() -> None:
    assert option_symbol("AAPL", date(2024, 5, 17), True, 150) == "AAPL  240517C00150000"
    assert option_symbol("QQQ", date(2024, 4, 20), False, 500) == "QQQ   240420P00500000"
    assert wire_double(235.0, 2) == 235 and isinstance(wire_double(235.0, 2), int)
    assert wire_double(0.999, 2) == 1 and isinstance(wire_double(0.999, 2), int)
    assert isinstance(wire_double(1.25, 2), float)


def test_exchange_ids_and_mics_are_paired_as_the_exchanges_are() -> None:
    market = Market(3, clock=Clock())
    pairs = set()
    for symbol in ("AAPL", "MSFT", "F", "SPY", "ZZZQ"):
        inst = market.instrument(symbol)
        assert inst is not None
        for i in range(200):
            inst.step(market.now_ms() + 1 + 2_000 * i)  # trades print as the tape goes by
            _, values = levelone.fields("LEVELONE_EQUITIES", inst, market.now_ms())
            pairs |= {(values[c], values[m]) for c, m in (("6", "39"), ("7", "40"), ("16", "41"))}
    assert {("Z", "BATS"), ("N", "XNYS"), ("L", "TRFC"), ("Q", "XNAS")} <= pairs
    by_id: dict[str, set[str]] = {}
    for code, mic in pairs:
        by_id.setdefault(code, set()).add(mic)
    assert by_id["N"] == {"XNYS"} and by_id["Z"] == {"BATS"} and by_id["K"] == {"EDGX"}
    assert all(len({c for c, m in pairs if m == mic}) == 1 for _, mic in pairs)  # one id per MIC


def test_dividend_dates_and_borrow_figures_vary_by_stock_and_not_by_run() -> None:
    def statics(seed: int) -> dict[str, tuple[Any, ...]]:
        market = Market(seed, clock=Clock())
        out = {}
        for symbol in ("AAPL", "MSFT", "KO", "XOM", "JPM", "ZZZQ", "GME"):
            inst = market.instrument(symbol)
            assert inst is not None
            _, values = levelone.fields("LEVELONE_EQUITIES", inst, market.now_ms())
            out[symbol] = (values["26"], values["46"], values["47"], values["48"])
        return out

    first, again = statics(1), statics(2)
    assert first == again  # from the symbol alone
    payers = [v[0] for s, v in first.items() if s in ("AAPL", "MSFT", "KO", "XOM", "JPM")]
    assert len(set(payers)) == len(payers) and all(d.endswith(" 00:00:00.0") for d in payers)
    assert first["GME"][0] == ""  # no dividend, no date
    assert len({v[1] for v in first.values()}) == len(first)
