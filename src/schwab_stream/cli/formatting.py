"""How the commands show things to people: events as one readable line (`tail`, the demo's view),
prices, sizes, latencies and token times. Plain strings only (no rich), so `tail` stays light.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from schwab_stream.expiry import format_duration

NEW_YORK = ZoneInfo("America/New_York")

#: Changed-field names shown on a tick line; a snapshot changes them all and just says so.
MAX_CHANGED = 6

_COLORS = {
    "tick": "cyan",
    "level2": "magenta",
    "bar": "yellow",
    "screener": "blue",
    "account": "green",
    "status": "red",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def px(value: Any) -> str:
    """A price: two decimals, four below 1 (forex, cheap options)."""
    if not _is_number(value):
        return "-"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def qty(value: Any) -> str:
    """A size or volume: whole, with thousands separators."""
    return f"{int(value):,}" if _is_number(value) else "-"


def _clock(epoch_ms: Any) -> str:
    """A bar's start in New York time, as markets and the demo's footer say it."""
    if not _is_number(epoch_ms):
        return "-"
    return datetime.fromtimestamp(epoch_ms / 1000, NEW_YORK).strftime("%H:%M ET")


def _level(level: Any) -> str:
    if not isinstance(level, dict):
        return "-"
    return f"{px(level.get('price'))} x {qty(level.get('size'))} ({level.get('count', '-')})"


def describe(event: dict[str, Any]) -> str:
    """The key numbers of one event, by type; unknown types fall back to their JSON."""
    kind = event.get("type")
    if kind == "tick":
        text = (
            f"bid {px(event.get('bid'))} x {qty(event.get('bid_size'))}  "
            f"ask {px(event.get('ask'))} x {qty(event.get('ask_size'))}  "
            f"last {px(event.get('last'))} x {qty(event.get('last_size'))}  "
            f"vol {qty(event.get('volume'))}  chg {_signed(event.get('net_change'))}"
        )
        if event.get("snapshot"):
            return f"{text}  snapshot"
        changed = [str(name) for name in event.get("changed") or []]
        more = f",+{len(changed) - MAX_CHANGED}" if len(changed) > MAX_CHANGED else ""
        return f"{text}  [{','.join(changed[:MAX_CHANGED])}{more}]"
    if kind == "level2":
        bids, asks = event.get("bids") or [], event.get("asks") or []
        return (
            f"{event.get('venue', '')} bid {_level(bids[0] if bids else None)}  "
            f"ask {_level(asks[0] if asks else None)}  levels {len(bids)}/{len(asks)}"
        )
    if kind == "bar":
        return (
            f"{_clock(event.get('start'))} O {px(event.get('open'))} H {px(event.get('high'))}"
            f" L {px(event.get('low'))} C {px(event.get('close'))}"
            f" V {qty(event.get('volume'))}"
        )
    if kind == "screener":
        items = event.get("items") or []
        top = ", ".join(
            f"{item.get('symbol')} {px(item.get('last_price'))}"
            for item in items[:5]
            if isinstance(item, dict)
        )
        return f"{event.get('sort_field') or ''} top: {top}"
    if kind == "account":
        return f"{event.get('message_type') or '-'} account {event.get('account') or '-'}"
    if kind == "status":
        code = event.get("code")
        detail = event.get("detail") or ""
        return f"{event.get('state', '')}{f' code={code}' if code is not None else ''}  {detail}"
    return json.dumps(event, separators=(",", ":"))


def _signed(value: Any) -> str:
    return (
        f"{value:+.2f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"
    )


def format_line(event: dict[str, Any], color: bool = False) -> str:
    """`HH:MM:SS.mmm type symbol numbers`, timed by local receive time."""
    recv_ns = event.get("recv_ns")
    when = (
        datetime.fromtimestamp(recv_ns / 1e9).strftime("%H:%M:%S.%f")[:-3]
        if isinstance(recv_ns, int)
        else "--:--:--.---"
    )
    kind = printable(str(event.get("type", "?")))
    label = f"{kind:<8}"
    if color:
        label = click.style(label, fg=_COLORS.get(kind))
    symbol = printable(str(event.get("symbol") or ""))
    return f"{when} {label} {symbol:<21} {printable(describe(event))}"


#: C0 controls, DEL and C1 controls: what a terminal acts on (ESC starts a sequence that can
#: clear the screen, set the title, ...) instead of showing.
_CONTROLS = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def printable(text: str) -> str:
    """`text` with every control character written as \\xNN: what anyone wrote into a stream
    is shown to a terminal, never acted on by it (nor able to break a line in two)."""
    return text.translate(_CONTROLS)


def short_qty(value: Any) -> str:
    """A volume for narrow screens: 6.13M, 812K, 950."""
    if not _is_number(value):
        return "-"
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return (
                f"{value / limit:.2f}{suffix}"
                if abs(value) < 10 * limit
                else (
                    f"{value / limit:.1f}{suffix}"
                    if abs(value) < 100 * limit
                    else (f"{value / limit:.0f}{suffix}")
                )
            )
    return f"{int(value)}"


def ms(value: float | None) -> str:
    """A latency in milliseconds, `-` when there is none yet."""
    return "-" if value is None else f"{value:.1f} ms"


def time_left(seconds: float | None) -> str:
    """A token's time left, `-` when unknown."""
    return "-" if seconds is None else format_duration(seconds)
