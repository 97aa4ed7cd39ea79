"""The sans-I/O back-fill rules: bars in order with no minute twice (BarSequencer), candles
checked before they become bars, and which window is fetched when (BackfillPlanner)."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

from schwab_stream.backfill.candles import CandleProblem, chart_sequence, to_bars
from schwab_stream.backfill.planner import BackfillPlanner, Why
from schwab_stream.backfill.sequencer import BarSequencer, Dropped, GivenUp
from schwab_stream.events import BarEvent
from schwab_stream.rest.models import Candle, CandleList

M = 60_000
T0 = int(datetime(2025, 6, 10, 10, 0, tzinfo=ZoneInfo("America/New_York")).timestamp()) * 1000


def bar(minute: int, symbol: str = "AAPL", backfilled: bool = False) -> BarEvent:
    return BarEvent(
        service="CHART_EQUITY",
        symbol=symbol,
        start=T0 + minute * M,
        open=1.0,
        high=1.0,
        low=1.0,
        close=1.0,
        volume=1.0,
        backfilled=backfilled,
    )


def minutes(bars: list[BarEvent]) -> list[int]:
    return [((b.start or 0) - T0) // M for b in bars]


# --- BarSequencer -------------------------------------------------------------------------------


def test_live_bars_pass_in_order_and_a_minute_already_there_is_dropped() -> None:
    seq = BarSequencer()
    seq.known("AAPL", T0 + 4 * M)  # the stream ends with the 10:04 bar
    assert seq.live(bar(4)) == []  # a reconnect's snapshot of the last bar: a duplicate
    out = seq.live(bar(5)) + seq.live(bar(6))
    assert minutes(out) == [5, 6] and [b.seq for b in out] == [1, 2]
    assert seq.live(bar(3)) == []
    assert seq.dropped == {Dropped.DUPLICATE: 1, Dropped.OUT_OF_ORDER: 1}


def test_live_bars_wait_for_the_backfill_then_come_after_it_in_order() -> None:
    seq = BarSequencer(hold_seconds=60)
    seq.known("AAPL", T0)
    seq.begin_fill("AAPL", T0 + M, now=0.0)
    assert seq.live(bar(7)) == [] and seq.live(bar(8)) == []  # held
    assert seq.live(bar(1, symbol="MSFT")) != []  # another key never waits
    out = seq.filled("AAPL", [bar(m, backfilled=True) for m in (6, 2, 1, 3, 7)])
    assert minutes(out) == [1, 2, 3, 6, 7, 8]
    assert [b.backfilled for b in out] == [True] * 5 + [False]  # minute 7 came from REST first
    assert [b.seq for b in out] == [1, 2, 3, 4, 5, 6]
    assert seq.dropped[Dropped.DUPLICATE] == 1  # the live 7


def test_a_backfill_that_does_not_land_in_time_is_given_up_and_the_live_bars_flow() -> None:
    seq = BarSequencer(hold_seconds=30)
    seq.known("AAPL", T0)
    seq.begin_fill("AAPL", T0 + M, now=0.0)
    seq.live(bar(9))
    assert seq.wake_at() == 30.0
    assert seq.expire(29.0) == []
    assert minutes(seq.expire(30.0)) == [9]
    assert seq.take_given_up() == [GivenUp("AAPL", T0 + M, T0 + 9 * M)]
    # the late answer can add nothing before minute 9 any more
    assert seq.filled("AAPL", [bar(2, backfilled=True)]) == []


def test_stopping_releases_every_held_bar() -> None:
    seq = BarSequencer()
    seq.known("AAPL", T0)
    seq.begin_fill("AAPL", T0 + M, now=0.0)
    seq.live(bar(5))
    assert seq.filling_keys() == ["AAPL"]
    assert minutes(seq.abandon("AAPL")) == [5] and seq.filling_keys() == []


def test_random_interleavings_never_publish_a_minute_twice_or_out_of_order() -> None:
    for seed in range(50):
        rng = random.Random(seed)
        seq = BarSequencer(hold_seconds=rng.choice([0.5, 100.0]))
        seq.known("AAPL", T0 + rng.randint(-1, 3) * M)
        published: list[BarEvent] = []
        now = 0.0
        for minute in range(40):
            now += rng.random()
            roll = rng.random()
            if roll < 0.15 and not seq.filling("AAPL"):
                seq.begin_fill("AAPL", T0, now)
            elif roll < 0.3 and seq.filling("AAPL"):
                fill = [bar(m, backfilled=True) for m in rng.sample(range(minute + 2), minute // 2)]
                published += seq.filled("AAPL", fill)
            published += seq.live(bar(minute - rng.randint(0, 2)))  # late and repeated bars
            published += seq.expire(now)
        starts = [b.start for b in published]
        assert starts == sorted(set(starts)), seed
        assert [b.seq for b in published] == list(range(1, len(published) + 1))


# --- candles ------------------------------------------------------------------------------------


def C(o: float, h: float, lo: float, c: float, v: int, at: int) -> Candle:
    return Candle(open=o, high=h, low=lo, close=c, volume=v, datetime=at)


def test_candles_become_bars_of_the_window_only_each_minute_once_in_order() -> None:
    problems: Counter[str] = Counter()
    candles = [
        C(1, 2, 0.5, 1.5, 10, T0 + 2 * M),
        C(1, 2, 0.5, 1.5, 10, T0 + 1 * M),  # out of order
        C(1, 2, 0.5, 1.5, 99, T0 + 1 * M),  # the minute again: the first is kept
        C(1, 2, 0.5, 1.5, 10, T0 - M),  # before the window
        C(1, 2, 0.5, 1.5, 10, T0 + 5 * M),  # at its end (exclusive)
        C(1, 0.5, 2, 1.5, 10, T0 + 3 * M),  # high below low
        C(float("nan"), 2, 0.5, 1.5, 10, T0 + 3 * M),
        C(1, 2, 0.5, 1.5, -1, T0 + 3 * M),
        C(1, 2, 0.5, 1.5, 10, T0 + 3 * M + 1),  # not a minute start
        C(3, 2, 0.5, 1.5, 10, T0 + 4 * M),  # open above high
    ]
    answer = CandleList(candles=candles, symbol="AAPL")
    bars = to_bars("CHART_EQUITY", "AAPL", answer, T0, T0 + 5 * M, 7, problems)
    assert minutes(bars) == [1, 2]
    assert bars[0].volume == 10 and bars[0].backfilled and bars[0].schwab_ts is None
    assert bars[0].sequence == 3 * 60 + 1  # 10:01 is 181 minutes after 07:00
    assert problems == {
        CandleProblem.OUT_OF_ORDER: 1,
        CandleProblem.DUPLICATE: 1,
        CandleProblem.OUTSIDE: 2,
        CandleProblem.BAD_VALUE: 5,
    }


def test_chart_sequence_counts_from_seven_new_york_winter_and_summer() -> None:
    ny = ZoneInfo("America/New_York")
    for month in (1, 7):
        start = int(datetime(2025, month, 10, 19, 59, tzinfo=ny).timestamp()) * 1000
        assert chart_sequence(start) == 779


# --- BackfillPlanner ----------------------------------------------------------------------------


def test_urgent_windows_go_first_and_a_key_has_one_window_out_at_a_time() -> None:
    plan = BackfillPlanner()
    assert not plan.want("CHART_EQUITY", "EMPTY", T0, T0, Why.START, urgent=False)
    plan.want("CHART_EQUITY", "A", T0, T0 + 5 * M, Why.START, urgent=False)
    plan.want("CHART_EQUITY", "B", T0, T0 + 5 * M, Why.RECONNECT, urgent=True)
    first = plan.next_fetch(0.0)
    assert first is not None and first.symbol == "B"
    plan.want("CHART_EQUITY", "B", T0 + 5 * M, T0 + 9 * M, Why.RECONNECT, urgent=True)
    second = plan.next_fetch(0.0)
    assert second is not None and second.symbol == "A"
    assert plan.next_fetch(0.0) is None  # B's next window waits for its first
    plan.done(first)
    third = plan.next_fetch(0.0)
    assert third is not None and (third.symbol, third.start_ms, third.end_ms) == (
        "B",
        T0 + 5 * M,
        T0 + 9 * M,
    )


def test_a_window_waiting_is_widened_not_doubled() -> None:
    plan = BackfillPlanner()
    plan.want("CHART_EQUITY", "A", T0 + 2 * M, T0 + 5 * M, Why.START, urgent=False)
    plan.want("CHART_EQUITY", "A", T0, T0 + 3 * M, Why.RECONNECT, urgent=True)
    fetch = plan.next_fetch(0.0)
    assert fetch is not None and (fetch.start_ms, fetch.end_ms) == (T0, T0 + 5 * M)
    assert plan.next_fetch(0.0) is None


def test_failures_are_retried_with_backoff_then_given_up() -> None:
    plan = BackfillPlanner(max_attempts=3, retry_base=1.0, retry_cap=4.0)
    plan.want("CHART_EQUITY", "A", T0, T0 + M, Why.START, urgent=False)
    now = 0.0
    attempts = 0
    while True:
        fetch = plan.next_fetch(now)
        if fetch is None:
            wake = plan.wake_at()
            assert wake is not None and wake > now
            now = wake
            continue
        attempts += 1
        if not plan.failed(fetch, now):
            break
    assert attempts == 3 and plan.idle
    plan.want("CHART_EQUITY", "B", T0, T0 + M, Why.START, urgent=False)
    fetch = plan.next_fetch(now)
    assert fetch is not None and not plan.failed(fetch, now, final=True) and plan.idle
