"""Conformance: for every service, at five market times (pre-market, regular session, post-market,
night, weekend), the simulator's frames have the envelope, key set and JSON types of the matching
real frame in tests/fixtures, values in the ranges real ones keep (times inside the sessions that
produce them, CHART_EQUITY sequences inside 07:00-20:00, exchange ids with their own MICs), and
each service sends at each hour what Schwab does then; the REST answers against their captures;
level one is a snapshot, then deltas.

JSON types: strings, booleans and ints must match the real frame exactly. Fields the Streamer
Guide types as double are "a number": Schwab writes a whole double without ".0" (`"10": 235`,
`"13": 100` in the real frames), so a double may arrive as an int or a float. The doubles below
are transcribed from the Guide's field tables (docs/schwab-protocol.md §9.8), and the first test
checks that every real frame agrees with them.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from schwab_stream.sim.server import SimThread
from schwab_stream.sim.state import SimConfig
from schwab_stream.sim.symbols import option_symbol

from .sim_ws import RawClient, post


def _ints(text: str) -> frozenset[str]:
    return frozenset(text.split())


DOUBLES: dict[str, frozenset[str]] = {
    "LEVELONE_EQUITIES": _ints(
        "1 2 3 10 11 12 17 18 19 20 21 22 23 24 29 31 33 42 43 44 45 47 50 51"
    ),
    "LEVELONE_OPTIONS": _ints(
        "2 3 4 5 6 7 10 11 13 15 19 20 25 28 29 30 31 32 34 35 37 44 45 46 47 50 51 52 53"
    ),
    "LEVELONE_FUTURES": _ints("1 2 3 12 13 14 18 19 20 24 25 26 31 33"),
    "LEVELONE_FUTURES_OPTIONS": _ints("1 2 3 12 13 14 17 18 19 20 21 22 23 25"),
    "LEVELONE_FOREX": _ints("1 2 3 10 11 12 15 16 17 21 22 27 28 29"),
    "CHART_EQUITY": _ints("2 3 4 5 6"),
    "CHART_FUTURES": _ints("2 3 4 5 6"),
    "BOOK_LEVEL": _ints("0"),
    "SCREENER_ITEM": _ints("lastPrice netChange netPercentChange marketShare"),
}
BOOKS = ("NYSE_BOOK", "NASDAQ_BOOK", "OPTIONS_BOOK")
EXTRAS = {"delayed", "assetMainType", "assetSubType", "cusip"}

#: service -> name of the real frame it is held to (the richest capture of that service).
REFERENCE = {
    "LEVELONE_EQUITIES": "LEVELONE_EQUITIES data",
    "LEVELONE_OPTIONS": "LEVELONE_OPTIONS data",
    "LEVELONE_FUTURES": "LEVELONE_FUTURES data",
    "LEVELONE_FUTURES_OPTIONS": "LEVELONE_FUTURES_OPTIONS data",
    "LEVELONE_FOREX": "LEVELONE_FOREX data",
    "NYSE_BOOK": "Schwabdev docs example: NYSE_BOOK",
    "NASDAQ_BOOK": "NASDAQ_BOOK data",
    "OPTIONS_BOOK": "Schwabdev docs example: OPTIONS_BOOK",
    "CHART_EQUITY": "Schwabdev docs example: CHART_EQUITY",
    "CHART_FUTURES": "Schwabdev docs example: CHART_FUTURES",
    "SCREENER_EQUITY": "Schwabdev docs example: SCREENER_EQUITY",
    "SCREENER_OPTION": "Schwabdev docs example: SCREENER_OPTION",
    "ACCT_ACTIVITY": "ACCT_ACTIVITY data",
}


def kind(value: Any, double: bool) -> str:
    if isinstance(value, bool):
        return "bool"
    if double and isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def shape(service: str, value: Any, doubles: frozenset[str] = frozenset()) -> Any:
    """A comparable description of an item: key -> JSON kind, recursing into books/screeners."""
    if isinstance(value, dict):
        return {k: _shape_field(service, k, v, doubles) for k, v in value.items()}
    return kind(value, False)


def _shape_field(service: str, key: str, value: Any, doubles: frozenset[str]) -> Any:
    if isinstance(value, list):  # book levels (and their market makers) or screener items
        inner = DOUBLES["BOOK_LEVEL"] if service in BOOKS else DOUBLES["SCREENER_ITEM"]
        return sorted({json.dumps(shape(service, v, inner), sort_keys=True) for v in value})
    if isinstance(value, dict):
        return shape(service, value)
    return kind(value, key in doubles)


def item_shape(service: str, item: dict[str, Any]) -> Any:
    return shape(service, item, DOUBLES.get(service, frozenset()))


def data_block(message: dict[str, Any]) -> dict[str, Any]:
    block: dict[str, Any] = message["data"][0]
    return block


#: The five market times (New York) every frame kind is held to the captures at.
MOMENTS = {
    "pre-market": "2025-06-10T08:00",
    "regular": "2025-06-10T10:30",
    "post-market": "2025-06-10T17:20",  # futures in their daily break
    "night": "2025-06-10T23:00",
    "weekend": "2025-06-14T12:00",  # a Saturday
}
S, X, N = "stream", "once", "none"  # snapshot then updates; one snapshot (or bar) only; nothing
#: What each service sends after a subscription at each moment (docs/simulator.md).
SENDS: dict[str, dict[str, str]] = {
    #                           pre reg post night weekend
    "LEVELONE_EQUITIES": dict(zip(MOMENTS, (S, S, S, X, X), strict=True)),
    "LEVELONE_OPTIONS": dict(zip(MOMENTS, (X, S, X, X, X), strict=True)),
    "LEVELONE_FUTURES": dict(zip(MOMENTS, (S, S, X, S, X), strict=True)),
    "LEVELONE_FUTURES_OPTIONS": dict(zip(MOMENTS, (S, S, X, S, X), strict=True)),
    "LEVELONE_FOREX": dict(zip(MOMENTS, (S, S, S, S, X), strict=True)),
    "NYSE_BOOK": dict(zip(MOMENTS, (S, S, S, N, N), strict=True)),
    "NASDAQ_BOOK": dict(zip(MOMENTS, (S, S, S, N, N), strict=True)),
    "OPTIONS_BOOK": dict(zip(MOMENTS, (N, S, N, N, N), strict=True)),
    "CHART_EQUITY": dict(zip(MOMENTS, (S, S, S, X, X), strict=True)),
    "CHART_FUTURES": dict(zip(MOMENTS, (S, S, X, S, X), strict=True)),
    "SCREENER_EQUITY": dict(zip(MOMENTS, (S, S, S, N, N), strict=True)),
    "SCREENER_OPTION": dict(zip(MOMENTS, (N, S, N, N, N), strict=True)),
    "ACCT_ACTIVITY": dict.fromkeys(MOMENTS, S),  # orders play whenever one is placed
}
#: Exchange id -> the MICs it stands for (SIP participant letters; Q XBOS and L TRFC as captured).
VENUES = {
    "Q": {"XNAS", "XBOS"},
    "Z": {"BATS"},
    "Y": {"BATY"},
    "K": {"EDGX"},
    "J": {"EDGA"},
    "P": {"ARCX"},
    "N": {"XNYS"},
    "X": {"XPSX"},
    "V": {"IEXG"},
    "U": {"MEMX"},
    "L": {"TRFC"},
}
ET = ZoneInfo("America/New_York")
WATCH = 4.0  # seconds of wall time the subscriptions are watched (eight minutes of market time;
# 2 s missed the night snapshot of an option under load: its underlying replays a day of trades)


def et(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, ET)


def minute(ms: int) -> int:
    moment = et(ms)
    return moment.hour * 60 + moment.minute


def equity_session(ms: int, regular: bool = False) -> bool:
    """Facts from the /markets capture, computed here without the simulator's code."""
    low, high = (9 * 60 + 30, 16 * 60) if regular else (7 * 60, 20 * 60)
    return et(ms).weekday() < 5 and low <= minute(ms) < high


def futures_session(ms: int) -> bool:
    """Sunday 18:00 to Friday 17:00, with a break 17:00-18:00 every day."""
    day, m = et(ms).weekday(), minute(ms)
    if day == 5 or (day == 6 and m < 18 * 60) or (day == 4 and m >= 17 * 60):
        return False
    return not 17 * 60 <= m < 18 * 60


def forex_session(ms: int) -> bool:
    day, m = et(ms).weekday(), minute(ms)
    return not (day == 5 or (day == 6 and m < 17 * 60) or (day == 4 and m >= 17 * 60))


def check_values(service: str, item: dict[str, Any], stamp: int, start: int) -> None:
    """The value ranges real frames keep, for the fields an item carries."""
    times = {
        "LEVELONE_EQUITIES": ("34", "35", "36", "37", "38"),
        "LEVELONE_OPTIONS": ("38", "39"),
        "LEVELONE_FUTURES": ("10", "11", "37", "38"),
        "LEVELONE_FUTURES_OPTIONS": ("10", "11"),
        "LEVELONE_FOREX": ("8", "9"),
    }.get(service, ())
    for f in times:
        if f in item:
            assert start - 4 * 86_400_000 < item[f] <= stamp, (service, f, item[f])
    if service == "LEVELONE_EQUITIES":
        if "35" in item:
            assert equity_session(item["35"]), et(item["35"])
        if "36" in item:
            assert equity_session(item["36"], regular=True), et(item["36"])
        regular = equity_session(stamp, regular=True)
        for f in ("27", "28"):
            if f in item:
                assert item[f] is regular or (f == "28" and not regular), (f, item[f])
        for code, mic in (("6", "39"), ("7", "40"), ("16", "41")):
            if code in item and mic in item:
                assert item[mic] in VENUES[item[code]], (item[code], item[mic])
        if "1" in item and "2" in item:
            assert 0 < item["1"] < item["2"]
    if service == "LEVELONE_FUTURES":
        for f in ("10", "11"):
            if f in item:
                assert futures_session(item[f]), et(item[f])
        if "22" in item:
            assert item["22"] == ("Normal" if futures_session(stamp) else "Closed")
    if service == "LEVELONE_FOREX" and "9" in item:
        assert forex_session(item["9"]), et(item["9"])
    if service == "CHART_EQUITY":
        bar = item["7"]
        assert 0 <= item["1"] <= 779 and item["1"] == minute(bar) - 7 * 60
        assert equity_session(bar) and bar % 60_000 == 0 and bar + 60_000 <= stamp
        assert item["8"] == (et(bar).date() - date(1970, 1, 1)).days
    if service == "CHART_FUTURES":
        assert futures_session(item["1"]) and item["1"] + 60_000 <= stamp
    if service in BOOKS:
        assert start <= item["1"] <= stamp
        of_day = minute(item["1"]) * 60_000 + item["1"] % 60_000
        for level in item["2"] + item["3"]:
            assert all(0 <= maker["2"] <= of_day for maker in level["3"])
    if service.startswith("SCREENER_"):
        assert start <= item["1"] <= stamp


def start_sim(moment: str, **config: Any) -> SimThread:
    settings: dict[str, Any] = {
        "heartbeat_interval": 0.5,
        "idle_timeout": 10,
        "rate": 100,
        "book_interval": 0.05,
        "time_scale": 120,
        "market_time": datetime.fromisoformat(MOMENTS[moment]).replace(tzinfo=ET),
        **config,
    }
    return SimThread(SimConfig(**settings)).start()


@pytest.fixture(params=list(MOMENTS))
def moment(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_the_double_table_agrees_with_every_real_frame(frames: list[dict[str, Any]]) -> None:
    seen: dict[tuple[str, str], set[str]] = {}
    for frame in frames:
        message = frame.get("message")
        if frame["direction"] != "server->client" or not isinstance(message, dict):
            continue
        for block in message.get("data", []):
            for item in block["content"]:
                for key, kd in item_shape(block["service"], item).items():
                    seen.setdefault((block["service"], key), set()).add(json.dumps(kd))
    disagreements = {k: v for k, v in seen.items() if len(v) > 1}
    assert not disagreements
    assert {service for service, _ in seen} == set(REFERENCE)


def subscription(service: str, frames: list[dict[str, Any]]) -> tuple[str, str]:
    """(keys, fields) to subscribe: those of the service's real frame."""
    real_items = data_block(real_message(service, frames))["content"]
    keys = ",".join(dict.fromkeys(item["key"] for item in real_items))
    if service == "OPTIONS_BOOK":  # the captured option has expired: no bids any more
        keys = option_symbol("SPY", date(2026, 6, 19), True, 600)
    numeric = sorted({k for item in real_items for k in item if k.isdigit()}, key=int)
    return keys, ",".join(["0", *numeric])


def real_message(service: str, frames: list[dict[str, Any]]) -> dict[str, Any]:
    message: dict[str, Any] = next(f["message"] for f in frames if f["name"] == REFERENCE[service])
    return message


def test_every_frame_kind_matches_the_real_one_at_every_hour(
    frames: list[dict[str, Any]], moment: str
) -> None:
    """All thirteen services on one connection, watched for two minutes of market time."""
    start = int(datetime.fromisoformat(MOMENTS[moment]).replace(tzinfo=ET).timestamp() * 1000)
    sim = start_sim(moment)
    client = RawClient(sim)
    blocks: dict[str, list[dict[str, Any]]] = {service: [] for service in REFERENCE}
    try:
        client.login()
        for service in REFERENCE:
            keys, fields = subscription(service, frames)
            answer = client.command(service, "SUBS", keys=keys, fields=fields)
            assert answer["content"] == {"code": 0, "msg": "SUBS command succeeded"}
        post(sim, "/sim/account/order?symbol=AAPL&spacing=0")
        deadline = time.monotonic() + WATCH
        for frame in client.backlog:  # data that came in between the answers
            for block in frame.get("data", []):
                blocks[block["service"]].append(block)
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                frame = json.loads(client.ws.recv(timeout=left))
                if "notify" in frame:
                    beat = frame["notify"][0]
                    assert list(frame) == ["notify"] and list(beat) == ["heartbeat"], frame
                    assert start <= int(beat["heartbeat"]) <= start + 10 * 60_000
                if "data" in frame:
                    assert list(frame) == ["data"]
                    for block in frame["data"]:
                        blocks[block["service"]].append(block)
    finally:
        client.close()
        sim.stop()
    for service, got in blocks.items():
        check_service(service, got, frames, moment, start)


def check_service(
    service: str,
    blocks: list[dict[str, Any]],
    frames: list[dict[str, Any]],
    moment: str,
    start: int,
) -> None:
    real_block = data_block(real_message(service, frames))
    real_shape = item_shape(service, real_block["content"][0])
    keys = subscription(service, frames)[0].split(",")
    items: list[dict[str, Any]] = []
    for block in blocks:
        assert set(block) == set(real_block)
        assert (block["service"], block["command"]) == (service, "SUBS")
        assert start <= block["timestamp"] <= start + 10 * 60_000  # market time
        for item in block["content"]:
            assert item["key"] in keys
            first = not any(i["key"] == item["key"] for i in items)
            if first or service not in LEVELONE:  # snapshots and whole units: all of it
                assert item_shape(service, item) == real_shape, (service, item["key"])
            else:  # deltas: a part of the snapshot's keys, each of the same type
                assert item_shape(service, item).items() <= real_shape.items(), item
            check_values(service, item, block["timestamp"], start)
            items.append(item)
    per_key = len(items) / len(keys)
    expected = SENDS[service][moment]
    if expected == N:
        assert not items, (service, moment)
    elif expected == X:
        assert per_key == 1, (service, moment, [i.get("key") for i in items])
    else:
        assert per_key > 1 or (service == "ACCT_ACTIVITY" and len(items) == 6), (service, moment)


LEVELONE = {s for s in REFERENCE if s.startswith("LEVELONE_")}


def test_rest_answers_match_their_captures_at_every_hour(
    frames: list[dict[str, Any]], moment: str
) -> None:
    real = next(f["message"] for f in frames if f["name"].startswith("userPreference"))
    sim = start_sim(moment)
    try:
        config = sim.config
        with httpx.Client(base_url=sim.base_url, follow_redirects=False, timeout=5) as http:
            query = {"client_id": config.app_key, "redirect_uri": config.callback_url}
            location = http.get("/v1/oauth/authorize", params=query).headers["location"]
            (code,) = parse_qs(urlsplit(location).query)["code"]
            token = http.post(
                "/v1/oauth/token",
                auth=(config.app_key, config.app_secret),
                data={"grant_type": "authorization_code", "code": code,
                      "redirect_uri": config.callback_url},
            )  # fmt: skip
            assert token.status_code == 200
            body = token.json()
            assert {k: type(v).__name__ for k, v in body.items()} == {
                "expires_in": "int",  # §1.2: 1800, the access token's lifetime in seconds
                "token_type": "str",
                "scope": "str",
                "refresh_token": "str",
                "access_token": "str",
                "id_token": "str",
            }
            assert (body["expires_in"], body["token_type"], body["scope"]) == (
                1800,
                "Bearer",
                "api",
            )
            prefs = http.get(
                "/trader/v1/userPreference",
                headers={"Authorization": f"Bearer {body['access_token']}"},
            )
            assert prefs.status_code == 200
            assert shape("REST", prefs.json()) == shape("REST", real)
            assert prefs.json()["streamerInfo"][0]["streamerSocketUrl"].startswith("ws://")
    finally:
        sim.stop()


@pytest.fixture
def client() -> Iterator[RawClient]:
    sim = start_sim("regular", time_scale=1200)
    raw = RawClient(sim)
    raw.login()
    yield raw
    raw.close()
    sim.stop()


@pytest.mark.parametrize(
    ("service", "keys"),
    [
        ("LEVELONE_EQUITIES", "AAPL,MSFT"),
        ("LEVELONE_OPTIONS", "SPY   240621C00520000"),
        ("LEVELONE_FUTURES", "/ES"),
        ("LEVELONE_FUTURES_OPTIONS", "./OGG26C4240"),
        ("LEVELONE_FOREX", "EUR/USD"),
    ],
)
def test_level_one_is_a_snapshot_then_deltas(client: RawClient, service: str, keys: str) -> None:
    fields = {"1", "2", "3", "4", "5", "8"}
    bid, ask = ("2", "3") if service == "LEVELONE_OPTIONS" else ("1", "2")
    client.command(service, "SUBS", keys=keys, fields="0," + ",".join(sorted(fields, key=int)))
    items: dict[str, list[dict[str, Any]]] = {}
    # 40: an option trades on 30% of its updates, and how many updates move only its quote
    # before one does depends on the underlying's tape (a trending SPY once made 15 too few)
    while min((len(v) for v in items.values()), default=0) < 40 or len(items) < len(
        keys.split(",")
    ):
        for item in client.data(service)["content"]:
            items.setdefault(item["key"], []).append(item)
    for key, sequence in items.items():
        snapshot, deltas = sequence[0], sequence[1:]
        assert {"delayed", "assetMainType"} <= set(snapshot)
        assert set(snapshot) - EXTRAS - {"key"} == fields, key
        state = {k: v for k, v in snapshot.items() if k in fields}
        changed_fields: set[str] = set()
        for delta in deltas:
            changes = set(delta) - {"key"}
            assert changes and changes <= fields and not EXTRAS & set(delta)
            assert all(delta[f] != state[f] for f in changes)  # only what changed
            state.update({f: delta[f] for f in changes})
            changed_fields |= changes
            assert state[bid] < state[ask]  # the merged quote stays sane
        assert len(changed_fields) >= 3  # conflated deltas, not a frozen quote
