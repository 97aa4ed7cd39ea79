"""Schwab's symbol formats (docs/schwab-protocol.md §11): which kind of instrument a symbol names.

The simulator invents an instrument for any well-formed symbol, so the format alone decides the
kind, and the kind decides which services serve it (`services.SERVICE_KINDS`).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Literal

Kind = Literal["equity", "index", "option", "future", "future_option", "forex"]

OPTION_RE = re.compile(r"^([A-Z0-9.]{1,6}) *(\d{2})(\d{2})(\d{2})([CP])(\d{8})$")
FUTURE_RE = re.compile(r"^/([A-Z0-9]+?)(?:([FGHJKMNQUVXZ])(\d{2}))?$")
FUTURE_OPTION_RE = re.compile(r"^\./([A-Z0-9]+?)([FGHJKMNQUVXZ])(\d{2})([CP])(\d+(?:\.\d+)?)$")
FOREX_RE = re.compile(r"^([A-Z]{3})/([A-Z]{3})$")
EQUITY_RE = re.compile(r"^[A-Z][A-Z0-9.]{0,9}$")
INDEX_RE = re.compile(r"^\$[A-Z0-9.]{1,10}$")


def classify(symbol: str) -> Kind | None:
    """Instrument kind from Schwab's symbol formats (§11), or None if it is none of them."""
    if symbol.startswith("./"):
        return "future_option" if FUTURE_OPTION_RE.match(symbol) else None
    if symbol.startswith("/"):
        return "future" if FUTURE_RE.match(symbol) else None
    if FOREX_RE.match(symbol):
        return "forex"
    if len(symbol) == 21 and OPTION_RE.match(symbol):
        return "option"
    if INDEX_RE.match(symbol):
        return "index"
    if EQUITY_RE.match(symbol):
        return "equity"
    return None


def option_symbol(root: str, expiry: date, call: bool, strike: float) -> str:
    """Schwab's option symbol: root padded to 6, YYMMDD, C/P, strike x1000 in 8 digits."""
    return f"{root:<6}{expiry:%y%m%d}{'C' if call else 'P'}{round(strike * 1000):08d}"
