"""Black-Scholes: option values and greeks, so option quotes follow their underlying plausibly."""

from __future__ import annotations

import math
from dataclasses import dataclass


def _norm_cdf(x: float) -> float:
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


@dataclass(frozen=True)
class Greeks:
    price: float
    delta: float
    gamma: float
    theta: float
    vega: float
    rho: float


def black_scholes(s: float, k: float, t: float, vol: float, call: bool, r: float) -> Greeks:
    """Textbook Black-Scholes: enough for plausible option quotes and greeks."""
    if t <= 0 or vol <= 0 or s <= 0:
        intrinsic = max(0.0, s - k) if call else max(0.0, k - s)
        delta = (1.0 if s > k else 0.0) if call else (-1.0 if s < k else 0.0)
        return Greeks(intrinsic, delta, 0.0, 0.0, 0.0, 0.0)
    sq = vol * math.sqrt(t)
    d1 = (math.log(s / k) + (r + vol * vol / 2) * t) / sq
    d2 = d1 - sq
    disc = k * math.exp(-r * t)
    gamma = _norm_pdf(d1) / (s * sq)
    vega = s * _norm_pdf(d1) * math.sqrt(t) / 100
    decay = -s * _norm_pdf(d1) * vol / (2 * math.sqrt(t))
    if call:
        price = s * _norm_cdf(d1) - disc * _norm_cdf(d2)
        theta = (decay - r * disc * _norm_cdf(d2)) / 365
        return Greeks(price, _norm_cdf(d1), gamma, theta, vega, t * disc * _norm_cdf(d2) / 100)
    price = disc * _norm_cdf(-d2) - s * _norm_cdf(-d1)
    theta = (decay + r * disc * _norm_cdf(-d2)) / 365
    return Greeks(price, _norm_cdf(d1) - 1, gamma, theta, vega, -t * disc * _norm_cdf(-d2) / 100)
