"""How the simulator's frames look on the wire: Schwab's envelopes and its doubles.

Shapes follow docs/schwab-protocol.md §5-§7 and the real frames in tests/fixtures; key order
matters to clients that compare frames byte for byte, so each envelope is built in one place only.
"""

from __future__ import annotations

from typing import Any

import msgspec

_encode = msgspec.json.Encoder().encode

#: A malformed frame, modelled on a real unparsable one (schwab-py's test fixture).
GARBAGE = (
    '{"data":[{"service":"LEVELONE_FUTURES", "timestamp":%d,"command":"SUBS","content":'
    '[{"key":"/GOOG","delayed":false,"1":\ufffd,"2":\ufffd,"3":\ufffd,"6":"?","7":"?",'
    '"16":"Symbol not found","21":"unavailable","22":"Unknown"}]}]}'
)


def wire_double(value: float, places: int) -> float | int:
    """A double as Schwab puts it on the wire: rounded, and without ".0" when whole.

    Schwab's serializer writes a whole double as an int (`"10": 235`, `"13": 100` in real frames).
    """
    r = round(float(value), places)
    return int(r) if r.is_integer() else r


def response_item(
    service: str, command: str, requestid: str, correl_id: str, code: int, msg: str, stamp_ms: int
) -> dict[str, Any]:
    """One item of a `{"response":[...]}` frame: the answer to one request."""
    return {
        "service": service,
        "command": command,
        "requestid": requestid,
        "SchwabClientCorrelId": correl_id,
        "timestamp": stamp_ms,
        "content": {"code": code, "msg": msg},
    }


def response_frame(items: list[dict[str, Any]]) -> str:
    return _encode({"response": items}).decode()


def admin_notify(code: int, msg: str, stamp_ms: int) -> str:
    """An unsolicited ADMIN notify (codes 12 and 30)."""
    item = {"service": "ADMIN", "timestamp": stamp_ms, "content": {"code": code, "msg": msg}}
    return _encode({"notify": [item]}).decode()


def heartbeat(stamp_ms: int) -> str:
    """A heartbeat notify: the epoch ms as a string, as Schwab sends it."""
    return f'{{"notify":[{{"heartbeat":"{stamp_ms}"}}]}}'


def data_frame(service: str, content: list[dict[str, Any]], stamp_ms: int) -> str:
    """One service's data block. Its `command` is always "SUBS", whatever command subscribed
    the keys (ADD, SUBS): every real capture says so, ADD-made ones included."""
    block = {"service": service, "timestamp": stamp_ms, "command": "SUBS", "content": content}
    return _encode({"data": [block]}).decode()


def garbage(stamp_ms: int) -> str:
    return GARBAGE % stamp_ms
