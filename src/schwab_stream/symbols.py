"""Is a subscription key in the format its streamer service wants? (docs/schwab-protocol.md §11)

Schwab answers a malformed key with neither data nor an error, so a typo (`ES` for `/ES`,
`EURUSD` for `EUR/USD`) would stream nothing without a word. This module names such keys
before they are sent, with the right format and an example. It is pure: no I/O and no imports
from the package, so settings, the CLI and the pipeline can all use it without a cycle.

Keys are checked as sent: callers upper-case them first (`config.parse_keys`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class KeyProblem:
    """A key its service cannot stream: `expected` says the right format, with examples;
    `reason` (may be empty) says what in particular is wrong."""

    service: str
    key: str
    expected: str
    reason: str = ""

    def __str__(self) -> str:
        return describe(self)


def describe(problem: KeyProblem) -> str:
    """One line naming the service, the key and the right format."""
    reason = f" ({problem.reason})" if problem.reason else ""
    return f"{problem.service} key {problem.key!r}{reason}: expected {problem.expected}"


# --- the formats -----------------------------------------------------------------------------

#: Check for one format: None if the key is well formed, else a reason ("" for no detail).
#: Patterns are used with fullmatch: `$` would let a trailing newline through.
Check = Callable[[str], str | None]

_MONTH_CODES = "FGHJKMNQUVXZ"  # January to December

_TICKER = re.compile(r"^[A-Z][A-Z0-9]{0,9}(?:[./][A-Z0-9]{1,4})?$")
_INDEX = re.compile(r"^\$[A-Z][A-Z0-9]{0,9}$")
_OPTION = re.compile(r"^([A-Z0-9./$]{1,6}) *(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
# A root is letters and digits with at least one letter (/ES, /6E, /M2K, /10Y, /SR3).
_FUTURE = re.compile(rf"^/(?=[A-Z0-9]*[A-Z])[A-Z0-9]{{1,5}}?(?:[{_MONTH_CODES}]\d{{2}})?$")
# /ESZ4: read as the root ESZ4 by _FUTURE, but surely a 1-digit year (no root ends so).
_ONE_DIGIT_YEAR = re.compile(rf"^/[A-Z0-9]+[{_MONTH_CODES}]\d$")
_FUTURE_OPTION = re.compile(
    rf"^\./(?=[A-Z0-9]*[A-Z])[A-Z0-9]{{1,5}}?[{_MONTH_CODES}]\d{{2}}[CP]\d+(?:\.\d+)?$"
)
_FOREX = re.compile(r"^[A-Z]{3}/[A-Z]{3}$")

#: Screener key parts (SG §SCREENER; docs/schwab-protocol.md §9.6). The guide lists `$SPX.X`,
#: but Schwab dropped TDA's `.X` suffix elsewhere and `$SPX` is what clients send: which one the
#: screener takes is UNVERIFIED, so both are accepted. The guide gives one prefix list for both
#: screener services; whether SCREENER_EQUITY takes OPTION_* (or the reverse) is UNVERIFIED, so
#: neither service is narrowed.
SCREENER_PREFIXES: tuple[str, ...] = (
    "$COMPX",
    "$DJI",
    "$SPX",
    "$SPX.X",
    "INDEX_ALL",
    "NYSE",
    "NASDAQ",
    "OTCBB",
    "EQUITY_ALL",
    "OPTION_PUT",
    "OPTION_CALL",
    "OPTION_ALL",
)
SCREENER_SORT_FIELDS: tuple[str, ...] = (
    "VOLUME",
    "TRADES",
    "PERCENT_CHANGE_UP",
    "PERCENT_CHANGE_DOWN",
    "AVERAGE_PERCENT_VOLUME",
)
#: Minutes; 0 is the whole day.
SCREENER_FREQUENCIES: tuple[str, ...] = ("0", "1", "5", "10", "30", "60")
_SCREENER_HEADS = frozenset(f"{p}_{s}" for p in SCREENER_PREFIXES for s in SCREENER_SORT_FIELDS)


def _equity(key: str) -> str | None:
    if _FOREX.fullmatch(key):
        return ""  # BASE/QUOTE reads as a ticker with a class suffix; it is a currency pair
    if key.startswith("$"):
        if key.endswith(".X") and _INDEX.fullmatch(key[:-2]):
            return f"Schwab dropped TDA's .X suffix: did you mean {key[:-2]!r}?"
        return None if _INDEX.fullmatch(key) else ""
    return None if _TICKER.fullmatch(key) else ""


def _option(key: str) -> str | None:
    if len(key) != 21:
        return f"{len(key)} characters, not 21"
    match = _OPTION.fullmatch(key)
    if match is None:
        return ""
    yy, mm, dd = (int(part) for part in match.group(2, 3, 4))
    try:
        date(2000 + yy, mm, dd)
    except ValueError:
        return f"{match.group(2)}{match.group(3)}{match.group(4)} is not a date YYMMDD"
    return None


def _pattern(pattern: re.Pattern[str], fix: Callable[[str], str]) -> Check:
    """A regex check that, when a likely fix of the key matches, suggests it."""

    def check(key: str) -> str | None:
        if pattern.fullmatch(key):
            return None
        fixed = fix(key)
        return f"did you mean {fixed!r}?" if fixed != key and pattern.fullmatch(fixed) else ""

    return check


_future_or_slash = _pattern(_FUTURE, lambda key: "/" + key)


def _future(key: str) -> str | None:
    if _ONE_DIGIT_YEAR.fullmatch(key):
        return "the year takes 2 digits"
    return _future_or_slash(key)


def _slash_pair(key: str) -> str:
    return f"{key[:3]}/{key[3:]}" if len(key) == 6 else key


def _screener(key: str) -> str | None:
    """The reason names the part that is wrong and the values it may take."""
    head, _, frequency = key.rpartition("_")
    if not head:
        return "no PREFIX_ or _FREQUENCY"
    if frequency not in SCREENER_FREQUENCIES:
        return f"frequency {frequency!r} is not one of {' '.join(SCREENER_FREQUENCIES)}"
    if head in _SCREENER_HEADS:
        return None
    if head in SCREENER_SORT_FIELDS:
        return f"no PREFIX_ before {head}"
    # Longest first: AVERAGE_PERCENT_VOLUME also ends in _VOLUME.
    sorts = sorted(SCREENER_SORT_FIELDS, key=len, reverse=True)
    sort = next((sort for sort in sorts if head.endswith("_" + sort)), None)
    if sort is None:
        return "the sort field is not one of " + " ".join(SCREENER_SORT_FIELDS)
    prefix = head[: -len(sort) - 1]
    return f"prefix {prefix!r} is not one of {' '.join(SCREENER_PREFIXES)}"


def _any(key: str) -> str | None:
    return None  # ACCT_ACTIVITY: the bridge chooses the key; Schwab uses only the first


_ANY = (_any, "any key")
_EQUITY = (
    _equity,
    "an equity, ETF or index: an upper-case ticker, optionally with a class suffix after . or /,"
    " or $ and an index name, e.g. AAPL, BRK.B, BRK/B, $SPX, $DJI, $COMPX",
)
_OPTION_FORMAT = (
    _option,
    "an option: root padded with spaces to 6 characters, YYMMDD, C or P, strike x 1000 in"
    " 8 digits, e.g. 'AAPL  240517C00150000', 'SPXW  251208C06880000'",
)
_FUTURE_FORMAT = (
    _future,
    f"a future: / and the root, optionally a month code ({' '.join(_MONTH_CODES)}) and"
    " a 2-digit year, e.g. /ES, /CL, /ESZ24",
)
_FUTURE_OPTION_FORMAT = (
    _pattern(_FUTURE_OPTION, lambda key: "./" + key.lstrip("./")),
    "a futures option: ./ and the root, month code, 2-digit year, C or P, strike,"
    " e.g. ./OZCZ23C565, ./E3DM24P5490",
)
_FOREX_FORMAT = (
    _pattern(_FOREX, _slash_pair),
    "a currency pair: BASE/QUOTE, three letters each, e.g. EUR/USD, EUR/GBP",
)
_SCREENER_FORMAT = (
    _screener,
    "a screener: PREFIX_SORTFIELD_FREQUENCY (frequency in minutes, 0 = all day),"
    " e.g. NYSE_VOLUME_5, $SPX_PERCENT_CHANGE_UP_5, OPTION_CALL_TRADES_30",
)

#: Every streamer service a key can be checked for, in the order Schwab documents them, with
#: the check and the one-line format shown when a key fails it.
FORMATS: Mapping[str, tuple[Check, str]] = {
    "LEVELONE_EQUITIES": _EQUITY,
    "LEVELONE_OPTIONS": _OPTION_FORMAT,
    "LEVELONE_FUTURES": _FUTURE_FORMAT,
    "LEVELONE_FUTURES_OPTIONS": _FUTURE_OPTION_FORMAT,
    "LEVELONE_FOREX": _FOREX_FORMAT,
    "NYSE_BOOK": _EQUITY,
    "NASDAQ_BOOK": _EQUITY,
    "OPTIONS_BOOK": _OPTION_FORMAT,
    "CHART_EQUITY": _EQUITY,
    "CHART_FUTURES": _FUTURE_FORMAT,
    "SCREENER_EQUITY": _SCREENER_FORMAT,
    "SCREENER_OPTION": _SCREENER_FORMAT,
    "ACCT_ACTIVITY": _ANY,
}


def check_key(service: str, key: str) -> KeyProblem | None:
    """None if `key` is in `service`'s format, else the problem; never raises."""
    known = FORMATS.get(service)
    if known is None:
        services = "a service Schwab streams: " + ", ".join(FORMATS)
        return KeyProblem(service, key, services, "no such service")
    check, expected = known
    if not key:
        return KeyProblem(service, key, expected, "empty")
    reason = check(key)
    if reason is None:
        return None
    fits = _fits_elsewhere(service, key)
    return KeyProblem(service, key, expected, "; ".join(filter(None, (reason, fits))))


def _fits_elsewhere(service: str, key: str) -> str:
    """The services whose format the key is in: it was likely put under the wrong one. Tickers
    are left out: almost any word is one."""
    own = FORMATS[service]
    fits = [
        other
        for other, known in FORMATS.items()
        if known is not own and known not in (_EQUITY, _ANY) and known[0](key) is None
    ]
    return f"it fits {', '.join(fits)}" if fits else ""


def check_keys(subscriptions: Mapping[str, Iterable[str]]) -> list[KeyProblem]:
    """Every problem in service -> keys, in the order given."""
    return [
        problem
        for service, keys in subscriptions.items()
        for key in keys
        if (problem := check_key(service, key)) is not None
    ]
