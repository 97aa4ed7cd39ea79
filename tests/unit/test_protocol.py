"""Protocol codec: requests byte-exact against captured requests, every real frame decodes, and
malformed frames raise ProtocolError with a message that never echoes the frame."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest

from schwab_stream.errors import ProtocolError
from schwab_stream.stream.protocol import (
    BookItem,
    BookLevel,
    BookMaker,
    DataMessage,
    Frame,
    Notify,
    Response,
    ResponseCode,
    StreamerCreds,
    add_request,
    decode_frame,
    encode_request,
    login_request,
    logout_request,
    subs_request,
    unsubs_request,
    view_request,
)
from tests.frames import load_frames

ALL_FRAMES: list[dict[str, Any]] = load_frames()
SERVER_FRAMES = [
    f for f in ALL_FRAMES if f["direction"] == "server->client" and f.get("message") is not None
]
TEST_CREDS = StreamerCreds(
    customer_id="client-customer-id",
    correl_id="client-correlation-id",
    channel="client-channel",
    function_id="client-function-id",
)
REQUEST_ORDER = (
    "service",
    "requestid",
    "command",
    "SchwabClientCustomerId",
    "SchwabClientCorrelId",
    "parameters",
)


def fixture(name: str) -> dict[str, Any]:
    for frame in ALL_FRAMES:
        if frame["name"].startswith(name):
            return frame
    raise LookupError(name)


def canonical(request_frame: dict[str, Any]) -> bytes:
    """A captured request, compact, keys in our (schwab-py's) order.

    JSON key order carries no meaning and the captured requests disagree on it (schwab-py's LOGIN
    puts `requestid` second, its SUBS test literal third), so we compare against one order.
    """
    (request,) = request_frame["requests"]
    ordered = {key: request[key] for key in REQUEST_ORDER}
    return json.dumps({"requests": [ordered]}, separators=(",", ":")).encode()


# --- requests -------------------------------------------------------------------------------


def test_login_is_byte_exact_with_schwab_py() -> None:
    captured = fixture("LOGIN request")["message"]
    expected = json.dumps(captured, separators=(",", ":")).encode()
    assert login_request(TEST_CREDS, 0, "0xACCE55") == expected


def test_login_matches_the_official_example() -> None:
    captured = fixture("official LOGIN request example")["message"]
    request = captured["requests"][0]
    creds = StreamerCreds(
        customer_id=request["SchwabClientCustomerId"],
        correl_id=request["SchwabClientCorrelId"],
        channel="N9",
        function_id="APIAPP",
    )
    encoded = login_request(creds, "1", "Access Token")
    assert encoded == canonical(captured)
    assert json.loads(encoded) == captured


def test_subs_all_fields_matches_schwab_py() -> None:
    captured = fixture("LEVELONE_EQUITIES SUBS request")["message"]
    encoded = subs_request(TEST_CREDS, 1, "LEVELONE_EQUITIES", ["GOOG", "MSFT"])
    assert encoded == canonical(captured)
    assert json.loads(encoded) == captured


def test_book_subs_matches_schwab_py() -> None:
    captured = fixture("NYSE_BOOK SUBS request")["message"]
    assert subs_request(TEST_CREDS, 1, "NYSE_BOOK", ["GOOG", "MSFT"]) == canonical(captured)


def test_account_activity_subs_matches_the_official_example() -> None:
    captured = fixture("official ACCT_ACTIVITY SUBS request example")["message"]
    request = captured["requests"][0]
    creds = StreamerCreds(
        customer_id=request["SchwabClientCustomerId"],
        correl_id=request["SchwabClientCorrelId"],
        channel="N9",
        function_id="APIAPP",
    )
    encoded = subs_request(creds, "2", "ACCT_ACTIVITY", ["Account Activity"])
    assert encoded == canonical(captured)


def _params(encoded: bytes) -> tuple[str, dict[str, Any]]:
    (request,) = json.loads(encoded)["requests"]
    assert tuple(request) == REQUEST_ORDER
    return request["command"], request["parameters"]


def test_add_sends_keys_and_fields() -> None:
    encoded = add_request(TEST_CREDS, 7, "LEVELONE_FUTURES", ["/ES"], fields=[3, 1, 2])
    assert _params(encoded) == ("ADD", {"keys": "/ES", "fields": "0,1,2,3"})
    assert json.loads(encoded)["requests"][0]["requestid"] == "7"


def test_add_is_refused_for_account_activity() -> None:
    with pytest.raises(ValueError, match="ADD"):
        add_request(TEST_CREDS, 1, "ACCT_ACTIVITY", ["x"])


def test_unsubs_sends_only_keys() -> None:
    encoded = unsubs_request(TEST_CREDS, 3, "LEVELONE_OPTIONS", ["AAPL  240517C00150000"])
    assert _params(encoded) == ("UNSUBS", {"keys": "AAPL  240517C00150000"})


def test_view_sends_only_sorted_fields_with_symbol() -> None:
    encoded = view_request(TEST_CREDS, 4, "LEVELONE_EQUITIES", [35, 1, 1, 34])
    assert _params(encoded) == ("VIEW", {"fields": "0,1,34,35"})


def test_logout_has_empty_parameters() -> None:
    assert logout_request(TEST_CREDS, 9) == (
        b'{"requests":[{"service":"ADMIN","requestid":"9","command":"LOGOUT",'
        b'"SchwabClientCustomerId":"client-customer-id",'
        b'"SchwabClientCorrelId":"client-correlation-id","parameters":{}}]}'
    )


def test_subs_with_chosen_fields_adds_the_symbol_like_schwab_py() -> None:
    encoded = subs_request(TEST_CREDS, 0, "LEVELONE_EQUITIES", ["AAPL", "MSFT"], fields=[1])
    assert _params(encoded) == ("SUBS", {"keys": "AAPL,MSFT", "fields": "0,1"})


@pytest.mark.parametrize(
    ("service", "keys", "fields", "match"),
    [
        ("LEVELONE_EQUITIES", [], None, "at least one key"),
        ("LEVELONE_EQUITIES", ["A,B"], None, "comma"),
        ("LEVELONE_EQUITIES", [""], None, "empty"),
        ("TIMESALE_EQUITY", ["AAPL"], None, "unknown streamer service"),
        ("LEVELONE_EQUITIES", ["AAPL"], [52], "0..51"),
        ("CHART_FUTURES", ["/ES"], [-1], "0..6"),
    ],
)
def test_bad_subscriptions_are_refused(
    service: str, keys: list[str], fields: list[int] | None, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        subs_request(TEST_CREDS, 1, service, keys, fields)


def test_unknown_command_is_refused() -> None:
    with pytest.raises(ValueError, match="QOS"):
        encode_request(TEST_CREDS, 1, "ADMIN", "QOS", {"qoslevel": "0"})


# --- server frames --------------------------------------------------------------------------


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=[f["name"] for f in SERVER_FRAMES])
def test_every_captured_server_frame_decodes(frame: dict[str, Any]) -> None:
    message = frame["message"]
    for raw in (json.dumps(message), json.dumps(message).encode()):
        decoded = decode_frame(raw)
        assert len(decoded.responses) == len(message.get("response", []))
        assert len(decoded.notifies) == len(message.get("notify", []))
        assert len(decoded.data) == len(message.get("data", []))
        for data, wire in zip(decoded.data, message.get("data", []), strict=True):
            assert data.service == wire["service"]
            assert data.timestamp == wire["timestamp"]
            assert [plain(item) for item in data.content] == wire["content"]


def plain(item: Any) -> Any:
    """A decoded item as the JSON it came from: typed book items back to Schwab's keys, with
    the keys Schwab left out (None here) dropped."""
    if isinstance(item, msgspec.Struct):
        item = msgspec.to_builtins(item)
    if isinstance(item, dict):
        return {key: plain(value) for key, value in item.items() if value is not None}
    if isinstance(item, list):
        return [plain(value) for value in item]
    return item


@pytest.mark.parametrize("service", ["NYSE_BOOK", "NASDAQ_BOOK", "OPTIONS_BOOK"])
def test_a_clean_book_frame_decodes_typed(service: str) -> None:
    item = {"key": "F", "1": 5, "2": [{"0": 9.5, "1": 100, "2": 1, "3": [{"0": "A", "1": 100}]}]}
    (data,) = decode_frame(json.dumps({"data": [{"service": service, "content": [item]}]})).data
    (book,) = data.content
    assert book == BookItem(
        key="F", book_time=5, bids=[BookLevel(9.5, 100, 1, [BookMaker("A", 100, None)])]
    )


@pytest.mark.parametrize(
    "item",
    [
        {"key": "F", "2": [{"0": 9.5, "1": 100.0, "2": 1}]},  # a float size
        {"key": "F", "2": [{"0": 9.5, "1": 100, "2": 1, "4": 0}]},  # an unknown level key
        {"key": "F", "9": 1},  # an unknown item key
        {"key": "", "1": 5},  # an empty key
        {"1": 5},  # no key at all
        {"key": "F", "1": "noon"},  # a wrong type
    ],
)
def test_a_book_frame_the_typed_decode_refuses_comes_back_as_dicts(item: dict[str, Any]) -> None:
    """The normalizer then checks it key by key and counts exactly what was wrong."""
    raw = json.dumps({"data": [{"service": "NYSE_BOOK", "timestamp": 1, "content": [item]}]})
    (data,) = decode_frame(raw).data
    assert data.content == [item]


def test_a_mixed_frame_that_looks_like_books_decodes_whole() -> None:
    raw = json.dumps(
        {
            "data": [
                {"service": "NYSE_BOOK", "content": [{"key": "F"}]},
                {"service": "LEVELONE_EQUITIES", "content": [{"key": "F", "1": 2.0}]},
            ],
            "notify": [{"heartbeat": "1"}],
        }
    )
    frame = decode_frame(raw)
    assert [d.content for d in frame.data] == [[{"key": "F"}], [{"key": "F", "1": 2.0}]]
    assert len(frame.notifies) == 1


def test_login_response_decodes_flat() -> None:
    frame = decode_frame(json.dumps(fixture("live transcript #1")["message"]))
    assert frame.responses == [
        Response(
            service="ADMIN",
            command="LOGIN",
            requestid="1",
            code=0,
            msg="server=s3081dc7-2;status=NP",
            timestamp=1755118704102,
        )
    ]


def test_login_denied_response_keeps_code_and_message() -> None:
    (response,) = decode_frame(json.dumps(fixture("official LOGIN denied")["message"])).responses
    assert response.code == ResponseCode.LOGIN_DENIED
    assert response.msg == "Login Denied.: token is invalid or has expired."


def test_integer_requestid_comes_back_as_string() -> None:
    raw = '{"response":[{"service":"ADMIN","command":"LOGIN","requestid":4,"content":{"code":0}}]}'
    (response,) = decode_frame(raw).responses
    assert response.requestid == "4"
    assert response.msg == ""


def test_heartbeat_string_becomes_int() -> None:
    frame = decode_frame(json.dumps(fixture("live transcript #2")["message"]))
    assert frame.notifies == [Notify(heartbeat=1755118704127)]


def test_admin_code_30_notify() -> None:
    frame = decode_frame(json.dumps(fixture("ADMIN notify code 30")["message"]))
    assert frame.notifies == [
        Notify(
            service="ADMIN",
            code=30,
            msg="Stop streaming due to empty subscription",
            timestamp=1718801330575,
        )
    ]
    assert ResponseCode.parse(frame.notifies[0].code or 0) is ResponseCode.STOP_STREAMING


def test_mixed_frame_keeps_every_part() -> None:
    raw = json.dumps(
        {
            "notify": [{"heartbeat": 1}],
            "response": [
                {"service": "ADMIN", "command": "LOGIN", "requestid": "0", "content": {"code": 0}}
            ],
            "data": [{"service": "CHART_FUTURES", "timestamp": 5, "content": [{"key": "/ES"}]}],
        }
    )
    frame = decode_frame(raw)
    assert frame == Frame(
        responses=[Response(service="ADMIN", command="LOGIN", requestid="0", code=0, msg="")],
        notifies=[Notify(heartbeat=1)],
        data=[DataMessage(service="CHART_FUTURES", timestamp=5, content=[{"key": "/ES"}])],
    )


def test_the_unparsable_captured_frame_raises() -> None:
    raw = fixture("unparsable raw frame")["message_raw"]
    with pytest.raises(ProtocolError, match="malformed streamer frame: JSON is malformed"):
        decode_frame(raw)


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"", "malformed"),
        (b"\xff\xfe", "malformed"),
        (b'{"notify":[{"heartbeat":"\x80"}]}', "invalid UTF-8"),
        (b"null", "Expected `object`"),
        (b"[]", "Expected `object`"),
        (b"{}", "none of `response`, `notify` or `data`"),
        (b'{"something":"else"}', "none of"),
        (b'{"response":{}}', r"\$\.response"),
        (b'{"response":[{"service":"ADMIN","command":"LOGIN","requestid":"0"}]}', "content"),
        (b'{"data":[{"service":"LEVELONE_EQUITIES","timestamp":1}]}', "content"),
        (b'{"data":[{"service":"X","content":[1]}]}', r"\$\.data\[0\]\.content\[0\]"),
        (b'{"data":[{"timestamp":1,"content":[]}]}', "service"),
        (b'{"notify":[{"heartbeat":"soon"}]}', r"notify\[0\]\.heartbeat"),
        (b'{"notify":[{"heartbeat":"1"},{}]}', r"notify\[1\] has neither"),
        (b'{"notify":[{"heartbeat":"' + b"9" * 30 + b'"}]}', "heartbeat"),
    ],
)
def test_malformed_frames_raise_protocol_error(raw: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_frame(raw)


def test_protocol_error_never_echoes_frame_content() -> None:
    secret = "SECRET-ACCESS-TOKEN-VALUE"
    frames = [
        '{"response":[{"service":"ADMIN","command":"LOGIN","requestid":"0",'
        f'"content":{{"code":"{secret}"}}}}]}}',
        f'{{"notify":[{{"heartbeat":"{secret}"}}]}}',
        f'{{"data":[{{"service":"X","content":["{secret}"]}}]}}',
        f'{{"parameters":{{"Authorization":"{secret}"}} garbage',
    ]
    for raw in frames:
        with pytest.raises(ProtocolError) as caught:
            decode_frame(raw)
        assert secret not in str(caught.value)


# --- response codes ---------------------------------------------------------------------------


def test_response_codes_cover_the_guide() -> None:
    assert sorted(ResponseCode) == [0, 3, 9, 11, 12, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30]


def test_which_codes_sever_the_connection() -> None:
    assert {code for code in ResponseCode if code.severs_connection} == {3, 12, 30}


def test_success_codes() -> None:
    assert {code for code in ResponseCode if code.is_success} == {0, 26, 27, 28, 29}


def test_parse_unknown_code() -> None:
    assert ResponseCode.parse(19) is ResponseCode.REACHED_SYMBOL_LIMIT
    assert ResponseCode.parse(99) is None
