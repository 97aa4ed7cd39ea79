"""SCREENER_EQUITY and SCREENER_OPTION: the top 10 of a universe by a key's sort field.

A key is PREFIX_SORTFIELD_FREQUENCY (NYSE_VOLUME_5, OPTION_PUT_TRADES_30). The universe is the
known equities (by exchange for NYSE/NASDAQ) or near-the-money weeklies on a few liquid roots;
the per-window volumes draw from the market's own screener RNG, not the instruments'.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from schwab_stream.sim.clock import MONTH_ABBR, et_date
from schwab_stream.sim.instruments import EquityTerms, Instrument, OptionTerms
from schwab_stream.sim.reference import EQUITIES
from schwab_stream.sim.registry import Market
from schwab_stream.sim.symbols import Kind, option_symbol
from schwab_stream.sim.wire import wire_double

PREFIXES = (
    "$COMPX",
    "$DJI",
    "$SPX.X",
    "$SPX",
    "INDEX_ALL",
    "NYSE",
    "NASDAQ",
    "OTCBB",
    "EQUITY_ALL",
    "OPTION_PUT",
    "OPTION_CALL",
    "OPTION_ALL",
)
SORTS = (
    "VOLUME",
    "TRADES",
    "PERCENT_CHANGE_UP",
    "PERCENT_CHANGE_DOWN",
    "AVERAGE_PERCENT_VOLUME",
)
FREQUENCIES = (0, 1, 5, 10, 30, 60)
OPTION_ROOTS = ("SPY", "QQQ", "NVDA", "TSLA", "AAPL", "IWM")
#: Whose session a screener follows: equities' extended one, or options' regular one.
KINDS: dict[str, Kind] = {"SCREENER_EQUITY": "equity", "SCREENER_OPTION": "option"}

Row = tuple[Instrument, int, int]  # (instrument, volume in the window, trades in the window)


def parse_key(key: str) -> tuple[str, str, int] | None:
    """(prefix, sort field, frequency) of a PREFIX_SORTFIELD_FREQUENCY key, or None."""
    head, _, freq = key.rpartition("_")
    if not freq.isdigit() or int(freq) not in FREQUENCIES:
        return None
    for sort in SORTS:
        if head.endswith("_" + sort):
            prefix = head[: -len(sort) - 1]
            if prefix in PREFIXES:
                return prefix, sort, int(freq)
    return None


def snapshot(market: Market, service: str, key: str, now_ms: int) -> dict[str, Any] | None:
    """A whole screener snapshot (top 10 of a universe by the key's sort field)."""
    parsed = parse_key(key)
    if parsed is None:
        return None
    prefix, sort, freq = parsed
    if service == "SCREENER_OPTION" and not prefix.startswith("OPTION_"):
        return None
    if service == "SCREENER_EQUITY" and prefix.startswith("OPTION_"):
        return None
    universe = _universe(market, prefix, now_ms)
    rng = market.screen_rng
    rows: list[Row] = []
    for inst in universe:
        inst.step(now_ms)
        window = (
            inst.volume
            if freq == 0
            else max(1, int(inst.volume * freq / 390 * rng.uniform(0.5, 2)))
        )
        rows.append((inst, window, max(1, window // (inst.trade_lot * rng.randint(2, 60)))))
    total = sum(w for _, w, _ in rows) or 1

    def pct(inst: Instrument) -> float:
        return (inst.last - inst.close) / inst.close if inst.close else 0.0

    sorters: dict[str, Callable[[Row], float]] = {
        "VOLUME": lambda r: -r[1],
        "TRADES": lambda r: -r[2],
        "PERCENT_CHANGE_UP": lambda r: -pct(r[0]),
        "PERCENT_CHANGE_DOWN": lambda r: pct(r[0]),
        "AVERAGE_PERCENT_VOLUME": lambda r: -r[1] / max(1, r[0].volume),
    }
    rows.sort(key=sorters[sort])
    items = []
    for inst, window, trades in rows[:10]:
        items.append(
            {
                "symbol": inst.symbol,
                "description": _description(inst),
                "lastPrice": wire_double(inst.last, 4),
                "netChange": wire_double(inst.last - inst.close, 4),
                "netPercentChange": wire_double(pct(inst), 8),
                "marketShare": wire_double(window / total * 100, 8),
                "totalVolume": total,
                "volume": window,
                "trades": trades,
            }
        )
    return {"1": now_ms, "2": sort, "3": freq, "4": items}


def _universe(market: Market, prefix: str, now_ms: int) -> list[Instrument]:
    if prefix.startswith("OPTION_"):
        today = et_date(now_ms)
        friday = today + timedelta(days=(4 - today.weekday()) % 7)
        symbols = []
        for root in OPTION_ROOTS:
            und = market.instrument(root)
            assert und is not None
            base = round(und.last)
            sides = {"OPTION_PUT": (False,), "OPTION_CALL": (True,)}.get(prefix, (True, False))
            for offset in (-2, 0, 2):
                for call in sides:
                    symbols.append(option_symbol(root, friday, call, base + offset))
    else:
        exchange = {"NYSE": "N", "NASDAQ": "Q"}.get(prefix)
        symbols = [s for s, ref in EQUITIES.items() if exchange in (None, ref.exchange)]
    found = [market.instrument(s) for s in symbols]
    return [i for i in found if i is not None]


def _description(inst: Instrument) -> str:
    s = inst.terms
    if inst.kind != "option":
        assert isinstance(s, EquityTerms)
        return s.ref.description.upper()
    assert isinstance(s, OptionTerms)
    kind = "Call" if s.call else "Put"
    month = MONTH_ABBR[s.expiry.month - 1]
    return f"{s.root:<7}{month} {s.expiry.day} {s.expiry.year} {s.strike:.1f} {kind}"
