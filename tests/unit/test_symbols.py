"""Key formats per streamer service (symbols.py): what passes, what is named, and how."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schwab_stream.config import SUBSCRIBABLE_SERVICES
from schwab_stream.symbols import FORMATS, KeyProblem, check_key, check_keys, describe
from tests.frames import load_frames

GOOD: dict[str, list[str]] = {
    "LEVELONE_EQUITIES": ["AAPL", "F", "BRK.B", "BRK/B", "GOOGL", "$SPX", "$DJI", "$COMPX"],
    "NYSE_BOOK": ["F", "BRK.B"],
    "NASDAQ_BOOK": ["AMD", "QQQ"],
    "CHART_EQUITY": ["MSFT", "$SPX"],
    "LEVELONE_OPTIONS": [
        "AAPL  240517C00150000",
        "SPXW  240420C05040000",
        "QQQ   240420P00500000",
        "GOOGL 251212C00315000",
        "AAPL  240229C00150000",  # a leap day
    ],
    "OPTIONS_BOOK": ["SPY   240621P00520000"],
    "LEVELONE_FUTURES": ["/ES", "/CL", "/ESZ24", "/CLQ24", "/6E", "/M2K", "/10Y", "/SR3"],
    "CHART_FUTURES": ["/ES", "/NQH25"],
    "LEVELONE_FUTURES_OPTIONS": ["./OZCZ23C565", "./E3DM24P5490", "./OGG26C4240"],
    "LEVELONE_FOREX": ["EUR/USD", "EUR/GBP", "USD/JPY"],
    "SCREENER_EQUITY": [
        "NYSE_VOLUME_5",
        "$SPX_VOLUME_60",
        "$SPX.X_TRADES_1",  # the guide's spelling
        "$COMPX_PERCENT_CHANGE_UP_5",
        "NYSE_TRADES_0",
        "INDEX_ALL_PERCENT_CHANGE_DOWN_10",
        "EQUITY_ALL_AVERAGE_PERCENT_VOLUME_30",
    ],
    "SCREENER_OPTION": ["OPTION_PUT_VOLUME_5", "OPTION_CALL_TRADES_30", "OPTION_ALL_VOLUME_0"],
    "ACCT_ACTIVITY": ["Account Activity", "client-correlation-id", "anything at all"],
}

#: (service, key, words the message must show)
BAD: list[tuple[str, str, tuple[str, ...]]] = [
    ("LEVELONE_FUTURES", "ES", ("/ES", "did you mean '/ES'?", "/ESZ24")),
    ("LEVELONE_FUTURES", "/ESZ4", ("the year takes 2 digits", "/ESZ24")),
    ("LEVELONE_FUTURES", "./OZCZ23C565", ("it fits LEVELONE_FUTURES_OPTIONS",)),
    ("LEVELONE_FUTURES", "/ES Z24", ("/ESZ24",)),
    ("CHART_FUTURES", "ESZ24", ("did you mean '/ESZ24'?",)),
    ("LEVELONE_FOREX", "EURUSD", ("did you mean 'EUR/USD'?", "BASE/QUOTE")),
    ("LEVELONE_FOREX", "EU/USD", ("BASE/QUOTE",)),
    ("SCREENER_EQUITY", "VOLUME", ("PREFIX_SORTFIELD_FREQUENCY", "NYSE_VOLUME_5")),
    ("SCREENER_EQUITY", "NYSE_VOLUME_7", ("frequency '7'", "0 1 5 10 30 60")),
    ("SCREENER_EQUITY", "NYSE_VOLUMES_5", ("VOLUME TRADES PERCENT_CHANGE_UP",)),
    ("SCREENER_OPTION", "OPTIONS_CALL_VOLUME_5", ("prefix 'OPTIONS_CALL'", "OPTION_CALL")),
    ("SCREENER_EQUITY", "VOLUME_5", ("no PREFIX_ before VOLUME",)),
    ("LEVELONE_OPTIONS", "AAPL", ("4 characters, not 21", "'AAPL  240517C00150000'")),
    ("LEVELONE_OPTIONS", "AAPL 240517C00150000", ("20 characters",)),
    ("LEVELONE_OPTIONS", "AAPL  241340C00150000", ("241340 is not a date",)),
    ("LEVELONE_OPTIONS", "AAPL  230229C00150000", ("230229 is not a date",)),
    ("OPTIONS_BOOK", "AAPL  240517X00150000", ("C or P",)),
    ("LEVELONE_OPTIONS", "AA PL 240517C00150000", ("padded with spaces",)),
    ("LEVELONE_FUTURES_OPTIONS", "OZCZ23C565", ("did you mean './OZCZ23C565'?",)),
    ("LEVELONE_FUTURES_OPTIONS", "./OZCZ23565", ("./E3DM24P5490",)),
    ("LEVELONE_EQUITIES", "", ("empty", "AAPL")),
    ("LEVELONE_EQUITIES", "AA PL", ("upper-case ticker",)),
    ("LEVELONE_EQUITIES", "aapl", ("upper-case ticker",)),
    ("LEVELONE_EQUITIES", "AAPL\n", ("upper-case ticker",)),
    ("LEVELONE_FOREX", "EUR/USD\n", ("BASE/QUOTE",)),
    ("LEVELONE_OPTIONS", "AAPL  240517C0015000\n", ("strike x 1000",)),
    ("LEVELONE_EQUITIES", "/ES", ("it fits LEVELONE_FUTURES, CHART_FUTURES", "AAPL, BRK.B")),
    ("LEVELONE_EQUITIES", "$SPX.X", ("did you mean '$SPX'?",)),
    ("NASDAQ_BOOK", "AAPL  240517C00150000", ("it fits LEVELONE_OPTIONS", "upper-case ticker")),
    ("CHART_EQUITY", "EUR/USD", ("it fits LEVELONE_FOREX", "$SPX")),
]


@pytest.mark.parametrize(
    ("service", "key"), [(service, key) for service, keys in GOOD.items() for key in keys]
)
def test_a_key_in_its_services_format_passes(service: str, key: str) -> None:
    assert check_key(service, key) is None


@pytest.mark.parametrize(("service", "key", "shown"), BAD)
def test_a_bad_key_is_named_with_the_right_format(
    service: str, key: str, shown: tuple[str, ...]
) -> None:
    problem = check_key(service, key)
    assert problem is not None
    assert (problem.service, problem.key) == (service, key)
    line = describe(problem)
    assert line.startswith(f"{service} key {key!r}")
    assert "expected " in line
    assert "\n" not in line
    for words in shown:
        assert words in line
    assert str(problem) == line


def test_the_issues_examples_read_well() -> None:
    problem = check_key("LEVELONE_FUTURES", "ES")
    assert problem is not None
    assert describe(problem) == (
        "LEVELONE_FUTURES key 'ES' (did you mean '/ES'?): expected a future: / and the root, "
        "optionally a month code (F G H J K M N Q U V X Z) and a 2-digit year, e.g. /ES, /CL, "
        "/ESZ24"
    )


def test_an_unknown_service_names_the_services_that_exist() -> None:
    problem = check_key("TIMESALE_EQUITY", "AAPL")
    assert problem is not None
    assert problem.reason == "no such service"
    assert "LEVELONE_EQUITIES" in problem.expected
    assert "ACCT_ACTIVITY" in problem.expected


def test_every_subscribable_service_has_a_format() -> None:
    assert set(FORMATS) == {*SUBSCRIBABLE_SERVICES, "ACCT_ACTIVITY"}


def test_check_keys_lists_every_problem_in_order() -> None:
    problems = check_keys(
        {
            "LEVELONE_EQUITIES": ["AAPL", "A B"],
            "LEVELONE_FUTURES": ("ES", "/ES"),
            "SCREENER_EQUITY": iter(["VOLUME"]),
        }
    )
    assert [(p.service, p.key) for p in problems] == [
        ("LEVELONE_EQUITIES", "A B"),
        ("LEVELONE_FUTURES", "ES"),
        ("SCREENER_EQUITY", "VOLUME"),
    ]
    assert check_keys({}) == []
    assert all(isinstance(p, KeyProblem) for p in problems)


def _fixture_keys() -> dict[str, set[str]]:
    """service -> every key of the captured frames: data items and SUBS/ADD request keys."""
    keys: dict[str, set[str]] = {}
    for frame in load_frames():
        message: Any = frame.get("message")
        if not isinstance(message, dict):
            continue
        for entry in message.get("data", []):
            for item in entry.get("content", []):
                if isinstance(item, dict) and "key" in item:
                    keys.setdefault(entry["service"], set()).add(item["key"])
        for request in message.get("requests", []):
            if request.get("command") in ("SUBS", "ADD"):
                raw = request.get("parameters", {}).get("keys", "")
                keys.setdefault(request["service"], set()).update(raw.split(","))
    return keys


def test_every_key_in_the_captured_frames_passes() -> None:
    keys = _fixture_keys()
    assert set(keys) == set(FORMATS), "a service has no captured key: the test lost its frames"
    assert check_keys(keys) == []


def test_the_demos_keys_pass() -> None:
    from schwab_stream.cli.demo import default_subscriptions

    for today in (date(2024, 11, 5), date(2025, 12, 31), date.today()):
        assert check_keys(default_subscriptions(today)) == []


@given(service=st.sampled_from([*FORMATS, "NOPE", ""]), key=st.text())
def test_check_key_never_raises(service: str, key: str) -> None:
    problem = check_key(service, key)
    if problem is not None:
        assert describe(problem)


@given(
    root=st.from_regex(r"[A-Z]{1,6}", fullmatch=True),
    expiry=st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 12, 31)),
    call=st.booleans(),
    strike=st.integers(min_value=0, max_value=99_999_999),
)
def test_any_option_symbol_built_the_schwab_way_passes(
    root: str, expiry: date, call: bool, strike: int
) -> None:
    key = f"{root:<6}{expiry:%y%m%d}{'C' if call else 'P'}{strike:08d}"
    assert check_key("LEVELONE_OPTIONS", key) is None
