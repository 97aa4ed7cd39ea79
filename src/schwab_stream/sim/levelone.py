"""LEVELONE_* fields: every numeric field of a service from an instrument, as wire values.

One builder per asset kind reads that kind's typed terms; the feed conflates what they return
into snapshots and deltas. Field meanings follow docs/schwab-protocol.md §9.2, §9.3 and §9.8,
and the real frames in tests/fixtures.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from schwab_stream.sim.clock import (
    ET,
    MONTH_ABBR,
    MONTH_CODES,
    et_date,
    front_contract,
    third_friday,
    utc_midnight_ms,
)
from schwab_stream.sim.instruments import (
    EquityTerms,
    ForexTerms,
    FutureOptionTerms,
    FutureTerms,
    Instrument,
    OptionTerms,
    Print,
)
from schwab_stream.sim.reference import EXCHANGE_NAMES
from schwab_stream.sim.wire import wire_double

#: What a builder returns: (extra keys for a snapshot, numeric fields "1".."N-1")
Fields = tuple[dict[str, Any], dict[str, Any]]


def fields(service: str, inst: Instrument, now_ms: int) -> Fields:
    """(extra keys for a snapshot, every numeric field 1..N as wire values) for a service."""
    return _BUILDERS[service](inst, now_ms)


def low52(i: Instrument) -> float:
    """The 52-week low: the day's low counts once there is one (0 means none yet today)."""
    return min(i.low52, i.low) if i.low else i.low52


def _equity(i: Instrument, now_ms: int) -> Fields:
    terms = i.terms
    assert isinstance(terms, EquityTerms)
    ref = terms.ref
    p = i.places
    hours = i.hours
    regular = i.regular or Print(i.last, i.last_size, i.trade_ms)
    reg_last = regular.price
    net = i.last - i.close
    pct = net / i.close * 100 if i.close else 0.0
    mark = i.mark()
    mark_net = mark - i.close
    extras: dict[str, Any] = {"delayed": False, "assetMainType": terms.main_type}
    if ref.sub_type:
        extras["assetSubType"] = ref.sub_type
    extras["cusip"] = ref.cusip
    yield_pct = ref.dividend / i.last * 100 if i.last else 0.0
    values: dict[str, Any] = {
        "1": wire_double(i.bid, p),
        "2": wire_double(i.ask, p),
        "3": wire_double(i.last, p),
        "4": i.bid_size,
        "5": i.ask_size,
        "6": i.ask_venue[0],
        "7": i.bid_venue[0],
        "8": i.volume,
        "9": i.last_size,
        "10": wire_double(i.high, p),
        "11": wire_double(i.low, p),
        "12": wire_double(i.close, p),
        "13": ref.exchange,
        "14": ref.sub_type != "",
        "15": ref.description,
        "16": i.last_venue[0],
        "17": wire_double(i.open, p),
        "18": wire_double(net, 4),
        "19": wire_double(max(i.high52, i.high), p),
        "20": wire_double(low52(i), p),
        "21": wire_double(ref.pe, 5),
        "22": wire_double(ref.dividend, 4),
        "23": wire_double(yield_pct, 5),
        "24": 0,
        "25": EXCHANGE_NAMES.get(ref.exchange, "NYSE"),
        "26": terms.dividend_date,
        "27": hours.regular_at(i.quote_ms),
        "28": hours.regular_at(i.trade_ms),
        "29": wire_double(reg_last, p),
        "30": regular.size,
        "31": wire_double(reg_last - i.close, 4),
        "32": "Normal",
        "33": wire_double(mark, p + 1),
        "34": i.quote_ms,
        "35": i.trade_ms,
        "36": regular.ms,
        "37": i.bid_ms,
        "38": i.ask_ms,
        "39": i.ask_venue[1],
        "40": i.bid_venue[1],
        "41": i.last_venue[1],
        "42": wire_double(pct, 7),
        "43": wire_double((reg_last - i.close) / i.close * 100 if i.close else 0.0, 7),
        "44": wire_double(mark_net, 4),
        "45": wire_double(mark_net / i.close * 100 if i.close else 0.0, 8),
        "46": terms.htb_quantity,
        "47": wire_double(terms.htb_rate, 4),
        "48": -1 if terms.htb_quantity < 0 else int(terms.htb_rate > 0),
        "49": 1 if ref.sub_type else 0,
        "50": wire_double(i.last - reg_last, 4),
        "51": wire_double((i.last - reg_last) / reg_last * 100 if reg_last else 0.0, 7),
    }
    return extras, values


def _option(i: Instrument, now_ms: int) -> Fields:
    s, und = i.terms, i.underlying
    assert isinstance(s, OptionTerms) and und is not None
    expiry, strike, root = s.expiry, s.strike, s.root
    greeks = s.greeks(und.mid(), now_ms)
    intrinsic = und.mid() - strike if s.call else strike - und.mid()
    mark = round((i.bid + i.ask) / 2, 2)
    net = i.last - i.close
    cp = "C" if s.call else "P"
    extras = {"delayed": False, "assetMainType": "OPTION", "cusip": ""}
    values: dict[str, Any] = {
        "1": f"{root} {expiry:%m/%d/%Y} {strike:.2f} {cp}",
        "2": wire_double(i.bid, 2),
        "3": wire_double(i.ask, 2),
        "4": wire_double(i.last, 2),
        "5": wire_double(i.high, 2),
        "6": wire_double(i.low, 2),
        "7": wire_double(i.close, 4),
        "8": i.volume,
        "9": s.open_interest,
        "10": wire_double(s.iv * 100, 8),
        "11": wire_double(intrinsic, 4),
        "12": expiry.year,
        "13": 100,
        "14": 2,
        "15": wire_double(i.open, 2),
        "16": i.bid_size,
        "17": i.ask_size,
        "18": i.last_size,
        "19": wire_double(net, 4),
        "20": wire_double(strike, 3),
        "21": cp,
        "22": root,
        "23": expiry.month,
        "24": f"100 {root}",
        "25": wire_double(i.last - max(intrinsic, 0.0), 8),
        "26": expiry.day,
        "27": max(0, (expiry - et_date(now_ms)).days),
        "28": wire_double(greeks.delta, 8),
        "29": wire_double(greeks.gamma, 8),
        "30": wire_double(greeks.theta, 8),
        "31": wire_double(greeks.vega, 8),
        "32": wire_double(greeks.rho, 8),
        "33": "Normal",
        "34": wire_double(greeks.price, 8),
        "35": wire_double(und.mid(), 4),
        "36": "S" if expiry == third_friday(expiry.year, expiry.month) else "W",
        "37": wire_double(mark, 2),
        "38": i.quote_ms,
        "39": i.trade_ms,
        "40": "O",
        "41": "OPR",
        "42": utc_midnight_ms(expiry + timedelta(days=1)),
        "43": "P",
        "44": wire_double(net / i.close * 100 if i.close else 0.0, 8),
        "45": wire_double(mark - i.close, 4),
        "46": wire_double((mark - i.close) / i.close * 100 if i.close else 0.0, 8),
        "47": 0,
        "48": True,
        "49": root,
        "50": wire_double(max(i.high52, i.high), 2),
        "51": wire_double(low52(i), 2),
        "52": 0,
        "53": 0,
        "54": 0,
        "55": "E" if root.startswith("SPX") else "A",
    }
    return extras, values


def _future(i: Instrument, now_ms: int) -> Fields:
    s = i.terms
    assert isinstance(s, FutureTerms)
    ref, root = s.ref, s.root
    p = i.places
    today = et_date(now_ms)
    code, ym = front_contract(ref.quarterly, today)
    if s.contract is not None:
        month_code, yy = s.contract
        code, ym = month_code + yy, (2000 + int(yy)) * 100 + MONTH_CODES.index(month_code) + 1
    year, month = divmod(ym, 100)
    expiry = third_friday(year, month)
    net = i.last - i.close
    extras = {"delayed": False, "assetMainType": "FUTURE"}
    values: dict[str, Any] = {
        "1": wire_double(i.bid, p),
        "2": wire_double(i.ask, p),
        "3": wire_double(i.last, p),
        "4": i.bid_size,
        "5": i.ask_size,
        "6": "?",
        "7": "?",
        "8": i.volume,
        "9": i.last_size,
        "10": i.quote_ms,
        "11": i.trade_ms,
        "12": wire_double(i.high, p),
        "13": wire_double(i.low, p),
        "14": wire_double(i.close, p),
        "15": "@",
        "16": f"{ref.name},{MONTH_ABBR[month - 1]}-{year},ETH",
        "17": "?",
        "18": wire_double(i.open, p),
        "19": wire_double(net, p),
        "20": wire_double(net / i.close * 100 if i.close else 0.0, 8),
        "21": ref.exchange,
        "22": "Normal" if i.hours.open_at(now_ms) else "Closed",
        "23": s.open_interest,
        "24": wire_double(i.mark(), p),
        "25": wire_double(ref.tick, 6),
        "26": wire_double(ref.tick * ref.multiplier, 4),
        "27": f"/{root}",
        "28": "D,D",
        "29": "GLBX(de=1640;0=-17001600;1=-17001600d-15551640;7=d-16401555)",
        "30": False,
        "31": wire_double(ref.multiplier, 2),
        "32": True,
        "33": wire_double(i.close, p),
        "34": f"/{root}{code}",
        "35": int(datetime(expiry.year, expiry.month, expiry.day, tzinfo=ET).timestamp() * 1000),
        "36": "Unknown",
        "37": i.ask_ms,
        "38": i.bid_ms,
        "39": True,
        "40": utc_midnight_ms(today),
    }
    return extras, values


def _future_option(i: Instrument, now_ms: int) -> Fields:
    s, und = i.terms, i.underlying
    assert isinstance(s, FutureOptionTerms) and und is not None
    assert isinstance(und.terms, FutureTerms)
    und_ref = und.terms.ref
    expiry = s.expiry
    extras = {"delayed": False, "assetMainType": "FUTURE_OPTION"}
    values: dict[str, Any] = {
        "1": wire_double(i.bid, 2),
        "2": wire_double(i.ask, 2),
        "3": wire_double(i.last, 2),
        "4": i.bid_size,
        "5": i.ask_size,
        "6": 63,
        "7": 63,
        "8": i.volume,
        "9": i.last_size,
        "10": i.quote_ms,
        "11": i.trade_ms,
        "12": wire_double(i.high, 2),
        "13": wire_double(i.low, 2),
        "14": wire_double(i.close, 2),
        "15": 63,
        "16": s.description,
        "17": wire_double(i.open, 2),
        "18": s.open_interest,
        "19": wire_double(i.mark(), 3),
        "20": wire_double(i.tick, 4),
        "21": wire_double(i.tick * und_ref.multiplier, 4),
        "22": wire_double(und_ref.multiplier, 2),
        "23": wire_double(i.close, 2),
        "24": und.symbol,
        "25": wire_double(s.strike, 4),
        "26": utc_midnight_ms(expiry) + 4 * 3_600_000,
        "27": s.style,
        "28": "C" if s.call else "P",
        "29": "Normal",
        "30": "@",
        "31": und_ref.exchange,
    }
    return extras, values


def _forex(i: Instrument, now_ms: int) -> Fields:
    terms = i.terms
    assert isinstance(terms, ForexTerms)
    p = i.places
    net = i.last - i.close
    extras = {"delayed": False, "assetMainType": "FOREX"}
    values: dict[str, Any] = {
        "1": wire_double(i.bid, p),
        "2": wire_double(i.ask, p),
        "3": wire_double(i.mid(), p + 1),
        "4": i.bid_size,
        "5": i.ask_size,
        "6": i.volume,
        "7": i.last_size,
        "8": i.quote_ms,
        "9": i.trade_ms,
        "10": wire_double(i.high, p + 1),
        "11": wire_double(i.low, p + 1),
        "12": wire_double(i.close, p + 1),
        "13": "!",
        "14": terms.description,
        "15": wire_double(i.open, p + 1),
        "16": wire_double(net, p + 1),
        "17": wire_double(net / i.close * 100 if i.close else 0.0, 6),
        "18": "GFT",
        "19": 2,
        "20": "Unknown",
        "21": 0,
        "22": 0,
        "23": "",
        "24": "",
        "25": False,
        "26": "",
        "27": wire_double(max(i.high52, i.high), p + 1),
        "28": wire_double(low52(i), p + 1),
        "29": wire_double(i.mid(), p + 1),
    }
    return extras, values


_BUILDERS = {
    "LEVELONE_EQUITIES": _equity,
    "LEVELONE_OPTIONS": _option,
    "LEVELONE_FUTURES": _future,
    "LEVELONE_FUTURES_OPTIONS": _future_option,
    "LEVELONE_FOREX": _forex,
}
