"""Sans-I/O codec of the Schwab streamer protocol: requests to bytes, frames to typed objects.

No sockets here, so the websocket client and the tests share one exact codec. The simulator
deliberately has its own: it builds frames from Schwab's documentation and is held to the captured
frames, so a mistake on one side cannot hide in the other (docs/architecture.md, "Sans-I/O where
it matters").
Frames are decoded by msgspec straight into typed Structs (fast, and every shape error is caught
in one place). Level-one, chart, screener and account items stay plain dicts because their keys
are numeric field strings that the normalizer maps through per-service tables; a book frame that
is well-formed is decoded straight into typed `BookItem`s (levels and makers validated in C, which
is most of a book's cost), and falls back to plain dicts when it is not, so the normalizer can
name exactly what was wrong.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Final, Generic, Literal, TypeVar

import msgspec

from schwab_stream.errors import ProtocolError
from schwab_stream.stream.fields import FIELD_NAMES, all_fields

ADMIN: Final = "ADMIN"
COMMANDS: Final[frozenset[str]] = frozenset({"LOGIN", "SUBS", "ADD", "UNSUBS", "VIEW", "LOGOUT"})


class ResponseCode(IntEnum):
    """Streamer response codes (Streamer Guide s.1.4; docs/schwab-protocol.md §7)."""

    SUCCESS = 0
    LOGIN_DENIED = 3
    UNKNOWN_FAILURE = 9
    SERVICE_NOT_AVAILABLE = 11
    CLOSE_CONNECTION = 12
    REACHED_SYMBOL_LIMIT = 19
    STREAM_CONN_NOT_FOUND = 20
    BAD_COMMAND_FORMAT = 21
    FAILED_COMMAND_SUBS = 22
    FAILED_COMMAND_UNSUBS = 23
    FAILED_COMMAND_ADD = 24
    FAILED_COMMAND_VIEW = 25
    SUCCEEDED_COMMAND_SUBS = 26
    SUCCEEDED_COMMAND_UNSUBS = 27
    SUCCEEDED_COMMAND_ADD = 28
    SUCCEEDED_COMMAND_VIEW = 29
    STOP_STREAMING = 30

    @property
    def severs_connection(self) -> bool:
        """True when Schwab closes the socket after this code (3, 12, 30).

        The guide says "TBD" for 9 and 20; they count as not severing, because a socket that does
        close is noticed by the client anyway.
        """
        return self in _SEVERING

    @property
    def is_success(self) -> bool:
        """0, and the documented (never observed) per-command success codes 26-29."""
        return self in _SUCCESSES

    @classmethod
    def parse(cls, code: int) -> ResponseCode | None:
        """The enum member for `code`, or None for a code the guide does not list."""
        try:
            return cls(code)
        except ValueError:
            return None


_SEVERING: Final = frozenset(
    {ResponseCode.LOGIN_DENIED, ResponseCode.CLOSE_CONNECTION, ResponseCode.STOP_STREAMING}
)
_SUCCESSES: Final = frozenset(
    {
        ResponseCode.SUCCESS,
        ResponseCode.SUCCEEDED_COMMAND_SUBS,
        ResponseCode.SUCCEEDED_COMMAND_UNSUBS,
        ResponseCode.SUCCEEDED_COMMAND_ADD,
        ResponseCode.SUCCEEDED_COMMAND_VIEW,
    }
)


# --- requests -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamerCreds:
    """The streamer identity from `userPreference.streamerInfo[0]` (no secret in here)."""

    customer_id: str
    correl_id: str
    channel: str
    function_id: str


_encode = msgspec.json.Encoder().encode


def encode_request(
    creds: StreamerCreds,
    requestid: int | str,
    service: str,
    command: str,
    parameters: Mapping[str, str],
) -> bytes:
    """One request in Schwab's envelope, keys in schwab-py's order (which Schwab accepts)."""
    if command not in COMMANDS:
        raise ValueError(f"unknown streamer command {command!r}")
    return _encode(
        {
            "requests": [
                {
                    "service": service,
                    "requestid": str(requestid),
                    "command": command,
                    "SchwabClientCustomerId": creds.customer_id,
                    "SchwabClientCorrelId": creds.correl_id,
                    "parameters": dict(parameters),
                }
            ]
        }
    )


def login_request(creds: StreamerCreds, requestid: int | str, access_token: str) -> bytes:
    """LOGIN: the raw access token (no "Bearer "), plus channel and function id."""
    return encode_request(
        creds,
        requestid,
        ADMIN,
        "LOGIN",
        {
            "Authorization": access_token,
            "SchwabClientChannel": creds.channel,
            "SchwabClientFunctionId": creds.function_id,
        },
    )


def logout_request(creds: StreamerCreds, requestid: int | str) -> bytes:
    """LOGOUT: empty parameters; the streamer closes the connection after answering."""
    return encode_request(creds, requestid, ADMIN, "LOGOUT", {})


def subs_request(
    creds: StreamerCreds,
    requestid: int | str,
    service: str,
    keys: Iterable[str],
    fields: Iterable[int] | None = None,
) -> bytes:
    """SUBS: replaces every subscribed key of `service`; all fields unless `fields` is given."""
    return _subscription(creds, requestid, service, "SUBS", keys, fields)


def add_request(
    creds: StreamerCreds,
    requestid: int | str,
    service: str,
    keys: Iterable[str],
    fields: Iterable[int] | None = None,
) -> bytes:
    """ADD: adds keys to `service` without touching the others (not valid for ACCT_ACTIVITY)."""
    if service == "ACCT_ACTIVITY":
        raise ValueError("ACCT_ACTIVITY accepts only SUBS and UNSUBS, not ADD")
    return _subscription(creds, requestid, service, "ADD", keys, fields)


def unsubs_request(
    creds: StreamerCreds, requestid: int | str, service: str, keys: Iterable[str]
) -> bytes:
    """UNSUBS: removes keys; Schwab takes only `keys` here, no `fields`."""
    return encode_request(creds, requestid, service, "UNSUBS", {"keys": _join_keys(service, keys)})


def view_request(
    creds: StreamerCreds, requestid: int | str, service: str, fields: Iterable[int]
) -> bytes:
    """VIEW: changes the field list for every key of `service`."""
    return encode_request(
        creds, requestid, service, "VIEW", {"fields": _join_fields(service, fields)}
    )


def _subscription(
    creds: StreamerCreds,
    requestid: int | str,
    service: str,
    command: str,
    keys: Iterable[str],
    fields: Iterable[int] | None,
) -> bytes:
    joined_keys = _join_keys(service, keys)  # first: it also rejects an unknown service
    joined_fields = all_fields(service) if fields is None else _join_fields(service, fields)
    return encode_request(
        creds, requestid, service, command, {"keys": joined_keys, "fields": joined_fields}
    )


def _join_keys(service: str, keys: Iterable[str]) -> str:
    """Keys as sent: the caller decides their case (Schwab wants upper-case symbols)."""
    if service not in FIELD_NAMES:
        raise ValueError(f"unknown streamer service {service!r}")
    keys = list(keys)
    if not keys:
        raise ValueError(f"{service}: a subscription request needs at least one key")
    for key in keys:
        if not key or "," in key:
            raise ValueError(f"{service}: key {key!r} is empty or contains a comma")
    return ",".join(keys)


def _join_fields(service: str, fields: Iterable[int]) -> str:
    """Sorted, deduplicated, always including 0 (the symbol), as schwab-py sends them."""
    names = FIELD_NAMES.get(service)
    if names is None:
        raise ValueError(f"unknown streamer service {service!r}")
    numbers = sorted({0, *fields})
    if numbers[0] < 0 or numbers[-1] >= len(names):
        raise ValueError(f"{service}: field numbers must be within 0..{len(names) - 1}")
    return ",".join(map(str, numbers))


# --- server frames --------------------------------------------------------------------------


class Response(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to one request: `code` 0 is success (see ResponseCode)."""

    service: str
    command: str
    requestid: str
    code: int
    msg: str
    timestamp: int | None = None


class Notify(msgspec.Struct, frozen=True, kw_only=True):
    """A heartbeat (epoch ms) or an admin notice such as code 30 before Schwab closes."""

    heartbeat: int | None = None
    service: str | None = None
    code: int | None = None
    msg: str | None = None
    timestamp: int | None = None


Item = TypeVar("Item")


class DataMessage(msgspec.Struct, Generic[Item], kw_only=True):
    """One service's items of a data frame: dicts that keep Schwab's numeric string keys, or
    `BookItem`s when a book frame decoded cleanly."""

    service: str
    timestamp: int | None = None
    command: str = ""
    content: list[Item]


class BookMaker(msgspec.Struct, gc=False):
    """One market maker of a book level, as Schwab sends it (keys "0"-"2")."""

    id: str = msgspec.field(name="0")
    size: int = msgspec.field(name="1")
    time_ms: int | None = msgspec.field(default=None, name="2")


class BookLevel(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """One price level of a book side, as Schwab sends it (keys "0"-"3")."""

    price: float = msgspec.field(name="0")
    size: int = msgspec.field(name="1")
    count: int = msgspec.field(name="2")
    makers: list[BookMaker] | None = msgspec.field(default=None, name="3")


class BookItem(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """One symbol's book, as Schwab sends it. Any unknown key or wrong type fails the typed
    decode, and the frame is decoded again as plain dicts (see `decode_frame`)."""

    key: Annotated[str, msgspec.Meta(min_length=1)]
    symbol: Any = msgspec.field(default=None, name="0")
    book_time: int | None = msgspec.field(default=None, name="1")
    bids: list[BookLevel] | None = msgspec.field(default=None, name="2")
    asks: list[BookLevel] | None = msgspec.field(default=None, name="3")


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one websocket message carried."""

    responses: list[Response] = msgspec.field(default_factory=list)
    notifies: list[Notify] = msgspec.field(default_factory=list)
    data: list[DataMessage[Any]] = msgspec.field(default_factory=list)


class _WireContent(msgspec.Struct):
    code: int
    msg: str = ""


class _WireResponse(msgspec.Struct):
    service: str
    command: str
    requestid: str | int
    content: _WireContent
    timestamp: int | None = None


class _WireNotify(msgspec.Struct):
    heartbeat: str | int | None = None
    service: str | None = None
    timestamp: int | None = None
    content: _WireContent | None = None


class _WireFrame(msgspec.Struct):
    response: list[_WireResponse] | None = None
    notify: list[_WireNotify] | None = None
    data: list[DataMessage[dict[str, Any]]] | None = None


class _BookData(DataMessage[BookItem], forbid_unknown_fields=True):
    service: Literal["NYSE_BOOK", "NASDAQ_BOOK", "OPTIONS_BOOK"]


class _BookFrame(msgspec.Struct, forbid_unknown_fields=True):
    data: list[_BookData]


_decode_wire = msgspec.json.Decoder(_WireFrame).decode
_decode_books = msgspec.json.Decoder(_BookFrame).decode


def _looks_like_books(data: bytes | str) -> bool:
    """Whether a frame names a book service in its first bytes, where Schwab puts `service`. A
    wrong guess costs one failed typed decode, never a wrong result."""
    head = data[:80]
    return b'_BOOK"' in head if isinstance(head, bytes) else '_BOOK"' in head


def _too_deep() -> ProtocolError:
    return ProtocolError(
        "too_deep", "malformed streamer frame: JSON nested deeper than the decoder allows"
    )


def decode_frame(data: bytes | str) -> Frame:
    """Decode one server frame; any frame we cannot fully understand raises ProtocolError.

    The error names what is wrong and where (a JSON path) but never echoes the frame. Nothing
    else escapes: JSON nested past the interpreter's recursion limit (msgspec decodes
    recursively, so ~1,000 brackets in 2 KB would raise RecursionError) is kind `too_deep`, a
    frame that exhausts memory `too_large`, and any other decoder failure `not_json`.
    """
    if _looks_like_books(data):
        try:
            return Frame(data=list(_decode_books(data).data))
        except (msgspec.DecodeError, UnicodeDecodeError):
            pass  # decoded again below, as plain dicts, to report what is wrong precisely
        except RecursionError:
            raise _too_deep() from None
        except MemoryError:
            raise ProtocolError("too_large", "streamer frame too large to decode") from None
    try:
        wire = _decode_wire(data)
    except msgspec.ValidationError as exc:  # carries only a JSON path, never the frame
        raise ProtocolError("bad_shape", f"malformed streamer frame: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError("not_json", f"malformed streamer frame: {exc}") from None
    except UnicodeDecodeError as exc:  # msgspec checks UTF-8 only when it builds a string
        raise ProtocolError(
            "invalid_utf8", f"malformed streamer frame: invalid UTF-8 ({exc.reason})"
        ) from None
    except RecursionError:
        raise _too_deep() from None
    except MemoryError:
        raise ProtocolError("too_large", "streamer frame too large to decode") from None
    except (ValueError, OverflowError, TypeError) as exc:  # never seen; named by type only
        raise ProtocolError("not_json", f"malformed streamer frame: {type(exc).__name__}") from None
    if wire.data is not None and wire.response is None and wire.notify is None:
        return Frame(data=wire.data)  # the hot path: a pure data frame
    if wire.data is None and wire.response is None and wire.notify is None:
        raise ProtocolError("empty", "streamer frame has none of `response`, `notify` or `data`")
    return Frame(
        responses=[_response(r) for r in wire.response or ()],
        notifies=[_notify(i, n) for i, n in enumerate(wire.notify or ())],
        data=wire.data or [],
    )


def _response(wire: _WireResponse) -> Response:
    return Response(
        service=wire.service,
        command=wire.command,
        requestid=str(wire.requestid),
        code=wire.content.code,
        msg=wire.content.msg,
        timestamp=wire.timestamp,
    )


def _notify(index: int, wire: _WireNotify) -> Notify:
    heartbeat = wire.heartbeat
    if isinstance(heartbeat, str):
        if not (heartbeat.isascii() and heartbeat.isdigit() and len(heartbeat) <= 19):
            raise ProtocolError(
                "bad_notify", f"notify[{index}].heartbeat is not an epoch-ms number"
            )
        heartbeat = int(heartbeat)
    content = wire.content
    if heartbeat is None and content is None:
        raise ProtocolError("bad_notify", f"notify[{index}] has neither `heartbeat` nor `content`")
    return Notify(
        heartbeat=heartbeat,
        service=wire.service,
        code=None if content is None else content.code,
        msg=None if content is None else content.msg,
        timestamp=wire.timestamp,
    )
