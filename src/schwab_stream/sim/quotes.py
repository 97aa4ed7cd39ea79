"""GET /marketdata/v1/quotes and /markets, sans-I/O: the answers' objects (schwab-api.md §7, §8).

A quote reads the live instrument the streamer reads (stepped to the market clock first), so a
REST quote and LEVELONE agree; /markets reads the session schedules (hours.py, calendar.py).
Blocks are keyed and ordered as in the captures (top keys, then blocks, fields alphabetical).
"""

from __future__ import annotations

import zlib
from datetime import date, datetime
from typing import Any

from schwab_stream.sim.clock import ET, MONTH_CODES, et_date, front_contract, third_friday
from schwab_stream.sim.hours import Schedule, Span
from schwab_stream.sim.instruments import (
    EquityTerms,
    ForexTerms,
    FutureOptionTerms,
    FutureTerms,
    Instrument,
    OptionTerms,
)
from schwab_stream.sim.reference import EXCHANGE_NAMES
from schwab_stream.sim.registry import Market
from schwab_stream.sim.symbols import FUTURE_RE, classify
from schwab_stream.sim.wire import wire_double

QUOTE_FIELDS = ("quote", "fundamental", "extended", "reference", "regular")
#: Blocks sent when `fields` is absent (`extended` is in the OAS but in no capture).
DEFAULT_FIELDS = frozenset({"quote", "fundamental", "reference", "regular"})
MAX_SYMBOLS = 500
MAIN_TYPES = {
    "equity": "EQUITY",
    "index": "INDEX",
    "option": "OPTION",
    "future": "FUTURE",
    "future_option": "FUTURE_OPTION",
    "forex": "FOREX",
}


def _ssid(symbol: str) -> int:
    return zlib.crc32(symbol.encode()) & 0x7FFFFFFF


def expired(symbol: str, inst: Instrument, today: date) -> bool:
    """An option past its expiry, or a futures contract month already gone (/ESZ21): Schwab
    lists these among `invalidSymbols`."""
    terms = inst.terms
    if isinstance(terms, OptionTerms):
        return terms.expiry < today
    if isinstance(terms, FutureTerms) and terms.contract is not None:
        month = MONTH_CODES.index(terms.contract[0]) + 1
        year = 2000 + int(terms.contract[1])
        return (year, month) < (today.year, today.month) or (
            (year, month) == (today.year, today.month) and third_friday(year, month) < today
        )
    return False


def lookup(market: Market, symbol: str) -> Instrument | None:
    """The live instrument for a symbol Schwab would know (None: invalid or expired)."""
    if classify(symbol) is None:
        return None
    try:
        inst = market.instrument(symbol)
    except (ValueError, AssertionError):
        return None
    if inst is None or expired(symbol, inst, et_date(market.now_ms())):
        return None
    return inst


def _sorted(block: dict[str, Any]) -> dict[str, Any]:
    return dict(sorted(block.items()))


def _common(i: Instrument, now_ms: int) -> dict[str, Any]:
    p = i.places
    net = i.last - i.close
    mark = i.mark()
    return {
        "closePrice": wire_double(i.close, p),
        "highPrice": wire_double(i.high, p),
        "lowPrice": wire_double(i.low, p),
        "openPrice": wire_double(i.open, p),
        "lastPrice": wire_double(i.last, p),
        "lastSize": i.last_size,
        "mark": wire_double(mark, p + 1),
        "markChange": wire_double(mark - i.close, 4),
        "markPercentChange": wire_double((mark - i.close) / i.close * 100 if i.close else 0, 4),
        "netChange": wire_double(net, 4),
        "netPercentChange": wire_double(net / i.close * 100 if i.close else 0, 4),
        "quoteTime": i.quote_ms,
        "tradeTime": i.trade_ms,
        "totalVolume": i.volume,
        "52WeekHigh": wire_double(max(i.high52, i.high), p),
        "52WeekLow": wire_double(min(i.low52, i.low) if i.low else i.low52, p),
        "securityStatus": "Normal" if i.hours.open_at(now_ms) or i.kind == "equity" else "Closed",
    }


def _book(i: Instrument, with_mics: bool) -> dict[str, Any]:
    p = i.places
    block: dict[str, Any] = {
        "askPrice": wire_double(i.ask, p),
        "askSize": i.ask_size,
        "askTime": i.ask_ms,
        "bidPrice": wire_double(i.bid, p),
        "bidSize": i.bid_size,
        "bidTime": i.bid_ms,
    }
    if with_mics:
        block.update(askMICId=i.ask_venue[1], bidMICId=i.bid_venue[1], lastMICId=i.last_venue[1])
    return block


def _equity(
    i: Instrument, terms: EquityTerms, now_ms: int, fields: frozenset[str]
) -> dict[str, Any]:
    ref = terms.ref
    p = i.places
    index = terms.main_type == "INDEX"
    top: dict[str, Any] = {"assetMainType": terms.main_type}
    if ref.sub_type:
        top["assetSubType"] = ref.sub_type
    if not index:
        top["quoteType"] = "NBBO"
    top.update(realtime=True, ssid=_ssid(i.symbol), symbol=i.symbol)
    if "fundamental" in fields:
        yield_pct = ref.dividend / i.last * 100 if i.last and not index else 0.0
        top["fundamental"] = _sorted(
            {
                "avg10DaysVolume": 0 if index else int(i.volume * 0.9) + 1_000_000,
                "avg1YearVolume": 0 if index else int(i.volume * 1.1) + 1_000_000,
                "divAmount": 0 if index else wire_double(ref.dividend, 4),
                "divFreq": 0 if index else (4 if ref.dividend else 0),
                "divPayAmount": 0 if index else wire_double(ref.dividend / 4, 4),
                "divYield": wire_double(yield_pct, 4),
                "eps": 0 if index else wire_double(i.last / ref.pe if ref.pe else 0.0, 4),
                "fundLeverageFactor": 0,
                "peRatio": 0 if index else wire_double(ref.pe, 2),
            }
        )
    if "quote" in fields:
        quote = _common(i, now_ms)
        if not index:
            quote.update(_book(i, with_mics=True))
            regular_last = i.regular.price if i.regular else i.last
            post = i.last - regular_last if not i.hours.regular_at(now_ms) else 0.0
            quote["postMarketChange"] = wire_double(post, 4)
            quote["postMarketPercentChange"] = wire_double(
                post / regular_last * 100 if regular_last else 0.0, 4
            )
        else:
            quote.pop("lastSize")
            quote.pop("mark")
            quote.pop("markChange")
            quote.pop("markPercentChange")
        top["quote"] = _sorted(quote)
    if "reference" in fields:
        reference: dict[str, Any] = {
            "description": ref.description,
            "exchange": ref.exchange,
            "exchangeName": EXCHANGE_NAMES.get(ref.exchange, "NYSE"),
        }
        if not index:
            reference.update(
                cusip=ref.cusip,
                isHardToBorrow=terms.htb_quantity > 0,
                isShortable=True,
                htbRate=wire_double(terms.htb_rate, 2),
            )
        top["reference"] = _sorted(reference)
    if "regular" in fields and not index:
        regular = i.regular
        price = regular.price if regular else i.last
        net = price - i.close
        top["regular"] = {
            "regularMarketLastPrice": wire_double(price, p),
            "regularMarketLastSize": regular.size if regular else i.last_size,
            "regularMarketNetChange": wire_double(net, 4),
            "regularMarketPercentChange": wire_double(net / i.close * 100 if i.close else 0, 4),
            "regularMarketTradeTime": regular.ms if regular else i.trade_ms,
        }
    if "extended" in fields and not index:
        top["extended"] = {
            "askPrice": wire_double(i.ask, p),
            "askSize": i.ask_size,
            "bidPrice": wire_double(i.bid, p),
            "bidSize": i.bid_size,
            "lastPrice": wire_double(i.last, p),
            "lastSize": i.last_size,
            "mark": wire_double(i.mark(), p + 1),
            "quoteTime": i.quote_ms,
            "totalVolume": i.volume,
            "tradeTime": i.trade_ms,
        }
    return top


def _option(
    i: Instrument, terms: OptionTerms, now_ms: int, fields: frozenset[str]
) -> dict[str, Any]:
    future_option = isinstance(terms, FutureOptionTerms)
    top: dict[str, Any] = {
        "assetMainType": "FUTURE_OPTION" if future_option else "OPTION",
        "realtime": True,
        "ssid": _ssid(i.symbol),
        "symbol": i.symbol,
    }
    und = i.underlying
    und_price = und.mid() if und is not None else 0.0
    greeks = terms.greeks(und_price, now_ms)
    if "quote" in fields:
        quote = _common(i, now_ms)
        quote.update(_book(i, with_mics=False))
        intrinsic = max(0.0, und_price - terms.strike if terms.call else terms.strike - und_price)
        quote.update(
            delta=wire_double(greeks.delta, 4),
            gamma=wire_double(greeks.gamma, 4),
            theta=wire_double(greeks.theta, 4),
            vega=wire_double(greeks.vega, 4),
            rho=wire_double(greeks.rho, 4),
            volatility=wire_double(terms.iv * 100, 4),
            openInterest=terms.open_interest,
            theoreticalOptionValue=wire_double(greeks.price, 4),
            underlyingPrice=wire_double(und_price, 4),
            moneyIntrinsicValue=wire_double(intrinsic, 4),
            timeValue=wire_double(max(0.0, i.last - intrinsic), 4),
        )
        top["quote"] = _sorted(quote)
    if "reference" in fields:
        expiry = terms.expiry
        reference: dict[str, Any] = {
            "contractType": "C" if terms.call else "P",
            "daysToExpiration": (expiry - et_date(now_ms)).days,
            "expirationDay": expiry.day,
            "expirationMonth": expiry.month,
            "expirationYear": expiry.year,
            "strikePrice": wire_double(terms.strike, 4),
            "underlying": und.symbol if und is not None else terms.root,
        }
        if future_option:
            assert isinstance(terms, FutureOptionTerms)
            reference.update(description=terms.description, exchange="@", multiplier=50)
        else:
            reference.update(
                description=f"{terms.root} {expiry:%m/%d/%Y} {terms.strike:g} "
                + ("Call" if terms.call else "Put"),
                exchange="o",
                exchangeName="OPR",
                multiplier=100,
                deliverables=f"100 {terms.root}",
                isPennyPilot=True,
            )
        top["reference"] = _sorted(reference)
    return top


def _future(
    i: Instrument, terms: FutureTerms, now_ms: int, fields: frozenset[str]
) -> dict[str, Any]:
    top: dict[str, Any] = {
        "assetMainType": "FUTURE",
        "realtime": True,
        "ssid": _ssid(i.symbol),
        "symbol": i.symbol,
    }
    ref = terms.ref
    if "quote" in fields:
        quote = _common(i, now_ms)
        quote.update(_book(i, with_mics=False))
        for name in ("markChange", "markPercentChange", "52WeekHigh", "52WeekLow"):
            quote.pop(name)
        quote.update(
            futurePercentChange=wire_double((i.last - i.close) / i.close if i.close else 0.0, 4),
            openInterest=terms.open_interest,
            quotedInSession=i.hours.open_at(now_ms),
            settleTime=i.trade_ms,
            tick=wire_double(i.tick, 6),
            tickAmount=wire_double(i.tick * ref.multiplier, 2),
        )
        top["quote"] = _sorted(quote)
    if "reference" in fields:
        today = et_date(now_ms)
        code, yyyymm = (
            front_contract(ref.quarterly, today)
            if terms.contract is None
            else ("".join(terms.contract), 200000 + int(terms.contract[1]) * 100 +
                  MONTH_CODES.index(terms.contract[0]) + 1)
        )  # fmt: skip
        expiry = third_friday(yyyymm // 100, yyyymm % 100)
        expiry_ms = int(datetime(expiry.year, expiry.month, expiry.day, tzinfo=ET).timestamp())
        top["reference"] = _sorted(
            {
                "description": ref.name,
                "exchange": "@",
                "exchangeName": ref.exchange,
                "futureActiveSymbol": f"/{terms.root}{code}",
                "futureExpirationDate": expiry_ms * 1000,
                "futureIsActive": True,
                "futureMultiplier": wire_double(ref.multiplier, 2),
                "futurePriceFormat": "D,D",
                "futureSettlementPrice": wire_double(i.close, i.places),
                "futureTradingHours": "GLBX(de=1640;0=-17001600;1=r-17001600d-15551640;"
                "7=d-16401555)",
                "product": f"/{terms.root}",
            }
        )
    return top


def _forex(i: Instrument, terms: ForexTerms, now_ms: int, fields: frozenset[str]) -> dict[str, Any]:
    top: dict[str, Any] = {"assetMainType": "FOREX", "realtime": True, "symbol": i.symbol}
    if "quote" in fields:
        quote = _common(i, now_ms)
        quote.update(_book(i, with_mics=False))
        for name in ("markChange", "markPercentChange"):
            quote.pop(name)
        quote.update(tick=wire_double(i.tick, 6), tickAmount=wire_double(i.tick, 6))
        top["quote"] = _sorted(quote)
    if "reference" in fields:
        top["reference"] = {
            "description": terms.description,
            "exchange": "T",
            "exchangeName": "GFT",
            "isTradable": True,
            "marketMaker": "",
            "product": "",
            "tradingHours": "",
        }
    return top


def quote(inst: Instrument, now_ms: int, fields: frozenset[str]) -> dict[str, Any]:
    """One symbol's quote object, the instrument stepped to the market clock first."""
    inst.step(now_ms)
    terms = inst.terms
    if isinstance(terms, EquityTerms):
        return _equity(inst, terms, now_ms, fields)
    if isinstance(terms, OptionTerms):
        return _option(inst, terms, now_ms, fields)
    if isinstance(terms, FutureTerms):
        return _future(inst, terms, now_ms, fields)
    assert isinstance(terms, ForexTerms)
    return _forex(inst, terms, now_ms, fields)


def is_future_symbol(symbol: str) -> bool:
    return FUTURE_RE.match(symbol) is not None


# ---- /markets --------------------------------------------------------------------------------

MARKETS = ("equity", "option", "bond", "future", "forex")
#: market -> (marketType, product key and name on an open day, schedule kind)
MARKET_PRODUCTS: dict[str, tuple[str, tuple[tuple[str, str], ...], str]] = {
    "equity": ("EQUITY", (("EQ", "equity"),), "equity"),
    "option": ("OPTION", (("EQO", "equity option"), ("IND", "index option")), "option"),
    "bond": ("BOND", (("BON", "bond"),), "option"),
    "future": ("FUTURE", (("future", "future"),), "future"),
    "forex": ("FOREX", (("forex", "forex"),), "forex"),
}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, ET).isoformat()


def _session(span: Span) -> list[dict[str, str]]:
    return [{"start": _iso(span[0]), "end": _iso(span[1])}]


def market_hours(market: Market, name: str, day: date) -> dict[str, Any]:
    """One market's entry of the /markets answer for `day` (open-day or closed-day shape)."""
    market_type, products, kind = MARKET_PRODUCTS[name]
    schedule: Schedule = market.schedule(kind)  # type: ignore[arg-type]
    spans = schedule.spans(day)
    if not spans:
        return {
            name: {
                "date": day.isoformat(),
                "marketType": market_type,
                "product": name,
                "productName": name,
                "isOpen": False,
            }
        }
    hours: dict[str, list[dict[str, str]]] = {}
    if name == "equity":
        regular = schedule.spans(day, regular=True)[0]
        hours["preMarket"] = _session((spans[0][0], regular[0]))
        hours["regularMarket"] = _session(regular)
        hours["postMarket"] = _session((regular[1], spans[0][1]))
    else:
        hours["regularMarket"] = _session(spans[0])
    return {
        product: {
            "date": day.isoformat(),
            "marketType": market_type,
            "product": product,
            "productName": product_name,
            "isOpen": True,
            "sessionHours": hours,
        }
        for product, product_name in products
    }
