"""The answers of Schwab's market-data REST calls as msgspec Structs (docs/schwab-protocol.md §14).

Python names are snake_case, the JSON's camelCase (`rename="camel"`); fields we do not model are
ignored, so a new field from Schwab never breaks a decode. Numbers decode leniently (`190` is a
float, `26.0` an int) because real answers write whole prices without a decimal point. A body of
the wrong shape is a `RestError` with reason `bad_answer`, never a msgspec exception.
"""

from __future__ import annotations

import datetime as dt

import msgspec

from schwab_stream.errors import RestError, RestReason


class Candle(msgspec.Struct, frozen=True, gc=False):
    """One bar; `datetime` is its **start**, epoch ms (a 09:30 bar covers 09:30:00-09:30:59)."""

    open: float
    high: float
    low: float
    close: float
    volume: int
    datetime: int


class CandleList(msgspec.Struct, rename="camel", frozen=True):
    """pricehistory's answer, as Schwab sent it: possibly more than the range asked for (§14)."""

    candles: list[Candle]
    symbol: str = ""
    empty: bool = False
    #: Only with needPreviousClose=true, which this client does not send; kept if Schwab does.
    previous_close: float | None = None
    previous_close_date: int | None = None


class QuoteFields(msgspec.Struct, rename="camel", frozen=True):
    """The `quote` block: the subset a bridge publishes. Sizes are Schwab's (lots or shares, by
    era: §14); times are epoch ms."""

    bid_price: float | None = None
    bid_size: int | None = None
    bid_time: int | None = None
    bid_mic_id: str | None = msgspec.field(default=None, name="bidMICId")
    ask_price: float | None = None
    ask_size: int | None = None
    ask_time: int | None = None
    ask_mic_id: str | None = msgspec.field(default=None, name="askMICId")
    last_price: float | None = None
    last_size: int | None = None
    last_mic_id: str | None = msgspec.field(default=None, name="lastMICId")
    open_price: float | None = None
    high_price: float | None = None
    low_price: float | None = None
    #: The previous session's close
    close_price: float | None = None
    mark: float | None = None
    mark_change: float | None = None
    mark_percent_change: float | None = None
    net_change: float | None = None
    net_percent_change: float | None = None
    total_volume: int | None = None
    quote_time: int | None = None
    trade_time: int | None = None
    security_status: str | None = None
    week_52_high: float | None = msgspec.field(default=None, name="52WeekHigh")
    week_52_low: float | None = msgspec.field(default=None, name="52WeekLow")
    post_market_change: float | None = None
    post_market_percent_change: float | None = None


class RegularFields(msgspec.Struct, rename="camel", frozen=True):
    """The `regular` block: the regular session's last trade, frozen after the close."""

    regular_market_last_price: float | None = None
    regular_market_last_size: int | None = None
    regular_market_net_change: float | None = None
    regular_market_percent_change: float | None = None
    regular_market_trade_time: int | None = None


class Quote(msgspec.Struct, rename="camel", frozen=True):
    """One symbol of the quotes answer; blocks not asked for (`fields`) are None."""

    symbol: str = ""
    asset_main_type: str | None = None
    asset_sub_type: str | None = None
    quote_type: str | None = None
    realtime: bool | None = None
    ssid: int | None = None
    quote: QuoteFields | None = None
    regular: RegularFields | None = None


class QuotesAnswer(msgspec.Struct, frozen=True):
    """Quotes for a list of symbols. A symbol Schwab does not know is in `invalid_symbols`; one
    whose entry we cannot read is in `unreadable` (the others are kept); one asked for but in
    neither the answer nor its errors is in `missing`. None of them raises."""

    quotes: dict[str, Quote]
    invalid_symbols: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()


class _QuoteErrors(msgspec.Struct, rename="camel"):
    invalid_symbols: list[str] = msgspec.field(default_factory=list)


class Interval(msgspec.Struct, frozen=True):
    """One span of a session, with its UTC offset as Schwab wrote it."""

    start: dt.datetime
    end: dt.datetime


class SessionHours(msgspec.Struct, rename="camel", frozen=True):
    """An open day's sessions; a session Schwab lists that we do not model is ignored."""

    pre_market: list[Interval] = msgspec.field(default_factory=list)
    regular_market: list[Interval] = msgspec.field(default_factory=list)
    post_market: list[Interval] = msgspec.field(default_factory=list)


class Hours(msgspec.Struct, rename="camel", frozen=True):
    """One product's day. A closed day has no `session_hours`, and Schwab then keys it by the
    market's name (`equity`) instead of the product (`EQ`)."""

    is_open: bool
    date: dt.date | None = None
    market_type: str | None = None
    exchange: str | None = None
    category: str | None = None
    product: str | None = None
    product_name: str | None = None
    session_hours: SessionHours | None = None


#: The markets answer: market (`equity`, `option`, ...) -> product key -> its hours.
MarketHours = dict[str, dict[str, Hours]]

_candles = msgspec.json.Decoder(CandleList, strict=False)
_entries = msgspec.json.Decoder(dict[str, msgspec.Raw])
_quote = msgspec.json.Decoder(Quote, strict=False)
_quote_errors = msgspec.json.Decoder(_QuoteErrors, strict=False)
_hours = msgspec.json.Decoder(MarketHours, strict=False)


def _bad(what: str, exc: msgspec.MsgspecError) -> RestError:
    # msgspec's messages name the path and the types, never the values.
    return RestError(RestReason.BAD_ANSWER, f"unreadable {what} answer: {exc}")


def decode_candles(body: bytes) -> CandleList:
    try:
        return _candles.decode(body)
    except msgspec.MsgspecError as exc:
        raise _bad("price history", exc) from None


def decode_quotes(body: bytes, asked: list[str]) -> QuotesAnswer:
    """The answer of one quotes call for the symbols `asked`; see `QuotesAnswer`."""
    try:
        entries = _entries.decode(body)
        errors = _quote_errors.decode(entries.pop("errors")) if "errors" in entries else None
    except msgspec.MsgspecError as exc:
        raise _bad("quotes", exc) from None
    quotes: dict[str, Quote] = {}
    unreadable: list[str] = []
    for symbol, raw in entries.items():
        try:
            quotes[symbol] = _quote.decode(raw)
        except msgspec.MsgspecError:
            unreadable.append(symbol)
    invalid = tuple(errors.invalid_symbols) if errors else ()
    seen = {*quotes, *unreadable, *invalid}
    return QuotesAnswer(
        quotes=quotes,
        invalid_symbols=invalid,
        unreadable=tuple(unreadable),
        missing=tuple(symbol for symbol in asked if symbol not in seen),
    )


def decode_market_hours(body: bytes) -> MarketHours:
    try:
        return _hours.decode(body)
    except msgspec.MsgspecError as exc:
        raise _bad("market hours", exc) from None
