"""candles_between: the window a back-fill may publish from what Schwab sent (a whole day for a
narrow request, candles out of order, twice, outside the range, impossible), each drop counted."""

from __future__ import annotations

import math

from schwab_stream.rest.candles import MINUTE_MS, candles_between, well_formed
from schwab_stream.rest.models import Candle, CandleList

T0 = 1_715_866_200_000  # 2024-05-16 09:30 ET, a minute boundary


def bar(minute: int, price: float = 100.0, volume: int = 10) -> Candle:
    return Candle(price, price + 1, price - 1, price, volume, T0 + minute * MINUTE_MS)


def starts(candles: list[Candle]) -> list[int]:
    return [(c.datetime - T0) // MINUTE_MS for c in candles]


def test_a_whole_day_answer_is_cut_to_the_half_open_window() -> None:
    day = CandleList(candles=[bar(m) for m in range(390)], symbol="$SPX")
    window = candles_between(day, T0 + 30 * MINUTE_MS, T0 + 90 * MINUTE_MS)
    assert starts(window.candles) == list(range(30, 90))
    assert window.outside == 330
    assert (window.duplicates, window.malformed, window.reordered) == (0, 0, False)


def test_out_of_order_and_duplicated_candles_come_back_sorted_once_first_wins() -> None:
    answer = CandleList(candles=[bar(3), bar(1, price=50), bar(2), bar(1, price=70), bar(3)])
    window = candles_between(answer, T0, T0 + 10 * MINUTE_MS)
    assert starts(window.candles) == [1, 2, 3]
    assert window.candles[0].open == 50
    assert (window.duplicates, window.reordered) == (2, True)


def test_minutes_without_trades_stay_holes() -> None:
    answer = CandleList(candles=[bar(0), bar(3), bar(4)])
    assert starts(candles_between(answer, T0, T0 + 5 * MINUTE_MS).candles) == [0, 3, 4]


def test_impossible_bars_are_dropped_and_counted() -> None:
    good = bar(0)
    answer = CandleList(
        candles=[
            good,
            Candle(100, 101, 99, 100, 1, T0 + MINUTE_MS + 5),  # not on a minute
            Candle(100, 99, 101, 100, 1, T0 + 2 * MINUTE_MS),  # high below low
            Candle(102, 101, 99, 100, 1, T0 + 3 * MINUTE_MS),  # open above high
            Candle(100, 101, 99, 98, 1, T0 + 4 * MINUTE_MS),  # close below low
            Candle(math.nan, 101, 99, 100, 1, T0 + 5 * MINUTE_MS),
            Candle(100, math.inf, 99, 100, 1, T0 + 6 * MINUTE_MS),
            Candle(100, 101, 99, 100, -1, T0 + 7 * MINUTE_MS),
        ]
    )
    window = candles_between(answer, T0, T0 + 10 * MINUTE_MS)
    assert window.candles == [good]
    assert window.malformed == 7


def test_negative_prices_can_be_true() -> None:
    assert well_formed(Candle(-37.6, -10.0, -40.3, -12.5, 5, T0))


def test_an_empty_answer_is_an_empty_window() -> None:
    window = candles_between(CandleList(candles=[], empty=True), T0, T0 + MINUTE_MS)
    assert window.candles == []
    assert (window.outside, window.duplicates, window.malformed) == (0, 0, 0)
