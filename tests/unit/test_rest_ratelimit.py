"""The market-data rate limiter on a fake clock: the per-minute window is never exceeded, bursts
go at once up to the bucket, slots are first come first served, a 429's pause holds everyone, and
Retry-After is read in both of its forms."""

from __future__ import annotations

import bisect
from email.utils import formatdate

import pytest

from schwab_stream.rest.ratelimit import WINDOW_SECONDS, RateLimiter, retry_after_seconds
from tests.unit.test_architecture import _loaded_by


def slots(limiter: RateLimiter, count: int, now: float = 0.0) -> list[float]:
    """When `count` requests all asked for at `now` would go."""
    return [now + limiter.acquire(now) for _ in range(count)]


def most_in_any_window(times: list[float]) -> int:
    """The most requests inside any 60 s window [t, t + 60), give or take float rounding (a slot
    comes back as `now + (slot - now)`)."""
    ordered = sorted(times)
    edge = WINDOW_SECONDS - 1e-6
    return max(bisect.bisect_left(ordered, t + edge) - i for i, t in enumerate(ordered))


@pytest.mark.parametrize("burst", [1, 20, 120])
def test_500_requests_at_120_a_minute_take_about_four_minutes(burst: int) -> None:
    times = slots(RateLimiter(120, burst), 500)
    assert 235.0 <= times[-1] <= 250.0
    assert most_in_any_window(times) <= 120
    assert times == sorted(times)


def test_a_burst_up_to_the_bucket_goes_at_once_then_the_steady_rate() -> None:
    times = slots(RateLimiter(120, burst=20), 30)
    assert times[:20] == [0.0] * 20
    assert times[20:] == pytest.approx([0.5 * n for n in range(1, 11)])


def test_without_a_burst_the_whole_minute_may_go_at_once_but_not_more() -> None:
    times = slots(RateLimiter(120), 121)
    assert times[:120] == [0.0] * 120
    assert times[120] == pytest.approx(60.0)


def test_a_bucket_larger_than_the_minute_is_the_minute() -> None:
    assert RateLimiter(10, burst=50).burst == 10


def test_an_idle_limiter_refills() -> None:
    limiter = RateLimiter(60, burst=5)
    slots(limiter, 5)
    assert limiter.acquire(0.0) == pytest.approx(1.0)  # one a second now
    assert slots(limiter, 5, now=120.0) == [120.0] * 5  # two idle minutes: the bucket is full


def test_the_window_holds_across_requests_spread_over_time() -> None:
    limiter = RateLimiter(120, burst=120)
    times = []
    now = 0.0
    for _ in range(1000):  # a caller asking every 0.1 s, far faster than allowed
        times.append(now + limiter.acquire(now))
        now += 0.1
    assert most_in_any_window(times) <= 120
    assert times[-1] == pytest.approx(500.0, abs=60.0)


def test_a_pause_holds_every_caller_and_the_next_slots_come_after_it() -> None:
    limiter = RateLimiter(120, burst=20)
    assert limiter.acquire(0.0) == 0.0
    limiter.pause(1.0, 30.0)
    assert limiter.paused_for(1.0) == 30.0
    assert limiter.paused_for(40.0) == 0.0
    assert limiter.acquire(2.0) == pytest.approx(29.0)
    limiter.pause(3.0, 5.0)  # a shorter pause does not shorten the longer one
    assert limiter.paused_for(3.0) == pytest.approx(28.0)


def test_a_negative_pause_is_no_pause() -> None:
    limiter = RateLimiter(120)
    limiter.pause(0.0, -5.0)
    assert limiter.paused_for(0.0) == 0.0


@pytest.mark.parametrize(("per_minute", "burst"), [(0, None), (120, 0), (-1, 5)])
def test_nonsense_limits_are_refused(per_minute: int, burst: int | None) -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute, burst)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_in_seconds(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, 1_000_000.0) == expected


def test_retry_after_as_an_http_date() -> None:
    now = 1_750_000_000.0
    assert retry_after_seconds(formatdate(now + 42, usegmt=True), now) == pytest.approx(42.0)
    assert retry_after_seconds(formatdate(now - 42, usegmt=True), now) == 0.0


def test_the_limiter_and_the_candle_window_are_sans_io() -> None:
    forbidden = ("asyncio", "httpx", "schwab_stream.auth", "schwab_stream.rest.client")
    assert _loaded_by("schwab_stream.rest.ratelimit", forbidden) == []
    assert _loaded_by("schwab_stream.rest.candles", forbidden) == []
