"""The one backoff formula: doubling with jitter up to a cap, for as long as an outage lasts."""

from __future__ import annotations

import pytest

from schwab_stream.backoff import Backoff


def test_delays_double_from_the_base_to_the_cap_and_reset() -> None:
    backoff = Backoff(0.5, 60.0, rng=lambda: 0.0)
    assert [backoff.next() for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60]
    backoff.reset()
    assert backoff.next() == 0.5


def test_jitter_scales_each_delay_down_by_at_most_its_fraction() -> None:
    backoff = Backoff(1.0, 8.0, jitter=0.5, rng=lambda: 1.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]


def test_a_million_failures_never_overflow() -> None:
    """2.0 ** 1024 overflows a float: 1,024 failed reconnects (13 h at a 60 s cap) used to end
    the process with OverflowError."""
    backoff = Backoff(0.5, 60.0)
    for _ in range(1_000_000):
        delay = backoff.next()
    assert 30.0 <= delay <= 60.0 and backoff.attempts == 1_000_000


@pytest.mark.parametrize(
    ("base", "cap", "last"),
    [
        (0.0, 5.0, 0.0),
        (5.0, 5.0, 5.0),
        (10.0, 5.0, 5.0),
        (1e-300, 1e300, 1e300),
        (1.0, 1e308, 1e308),
    ],
)
def test_edge_bases_and_caps_stay_within_the_cap(base: float, cap: float, last: float) -> None:
    backoff = Backoff(base, cap, rng=lambda: 0.0)
    delays = [backoff.next() for _ in range(3000)]
    assert all(0.0 <= d <= cap for d in delays) and delays[-1] == last
