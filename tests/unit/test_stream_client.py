"""The stream client against a scripted fake websocket: the read path's counters, what each
response code does (through the `codes` table), the connection states and the backoff.

End-to-end behaviour against the simulator is in tests/integration (test_pipeline, test_faults).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.backoff import Backoff
from schwab_stream.errors import (
    ExitCode,
    LoginRequiredError,
    StreamStopped,
    TokenStoreUnavailable,
)
from schwab_stream.stream import client as client_module
from schwab_stream.stream import subscriptions as subscriptions_module
from schwab_stream.stream.client import ClientStats, SchwabStreamClient, _Reconnect
from schwab_stream.stream.protocol import StreamerCreds
from schwab_stream.stream.state import ConnectionState, ReconnectReason

CREDS = StreamerCreds(customer_id="cust", correl_id="correl", channel="N9", function_id="APIAPP")
QUOTES = {"LEVELONE_EQUITIES": ["AAPL"]}


class FakeSocket:
    """A streamer that answers each command with the next code scripted for it (0 when none is
    left; None: no answer at all), and sends whatever a test pushes."""

    def __init__(self, codes: dict[str, list[int | None]] | None = None) -> None:
        self.codes = codes or {}
        self.sent: list[dict[str, Any]] = []
        self.inbox: asyncio.Queue[bytes | Exception] = asyncio.Queue()
        self.transport = SimpleNamespace(abort=self.hang_up)

    async def send(self, text: str) -> None:
        request = json.loads(text)["requests"][0]
        self.sent.append(request)
        script = self.codes.get(request["command"], [])
        code = script.pop(0) if script else 0
        if code is not None:
            self.push(
                {
                    "response": [
                        {
                            "service": request["service"],
                            "command": request["command"],
                            "requestid": request["requestid"],
                            "content": {"code": code, "msg": f"said {code}"},
                        }
                    ]
                }
            )

    def push(self, frame: dict[str, Any] | bytes) -> None:
        self.inbox.put_nowait(frame if isinstance(frame, bytes) else json.dumps(frame).encode())

    def notify(self, code: int, then_close: bool = True) -> None:
        """An ADMIN notify with `code`, then (as Schwab does for 3, 12, 30) the socket closes."""
        self.push({"notify": [{"service": "ADMIN", "content": {"code": code, "msg": f"n{code}"}}]})
        if then_close:
            self.hang_up()

    def hang_up(self) -> None:
        self.inbox.put_nowait(ConnectionClosed(None, None))

    async def recv(self, decode: bool | None = None) -> bytes:
        item = await self.inbox.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        self.hang_up()


class ListSink:
    """An EventSink that keeps what it is given, and the client's state at each status event."""

    def __init__(self) -> None:
        self.events: list[Any] = []
        self.statuses: list[tuple[str, str, int | None, dict[str, object]]] = []
        self.client: SchwabStreamClient | None = None
        self.states_seen: list[ConnectionState] = []
        self.on_status: Callable[[str], None] = lambda state: None

    def submit(self, events: list[Any]) -> None:
        self.events.extend(events)

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        self.statuses.append((state, detail, code, info))
        if self.client is not None:
            self.states_seen.append(self.client.stats.state)
        self.on_status(state)

    def named(self, state: str) -> list[tuple[str, str, int | None, dict[str, object]]]:
        return [s for s in self.statuses if s[0] == state]


class FakeAuth:
    """userPreference answers with the streamer info, after raising each of `errors` in turn."""

    def __init__(self, token_path: Path, errors: list[Exception] | None = None) -> None:
        self.store = SimpleNamespace(path=token_path)
        self.errors = errors or []
        self.forced_refreshes = 0

    async def refresh(self, force: bool = False) -> None:
        self.forced_refreshes += force

    async def user_preference(self) -> Any:
        if self.errors:
            raise self.errors.pop(0)
        info = SimpleNamespace(streamer_socket_url="wss://streamer.test/ws", **asdict(CREDS))
        return SimpleNamespace(streamer=info)

    async def access_token(self) -> str:
        return "access-token"


def make_client(
    sink: ListSink | None = None, auth: FakeAuth | None = None, **kwargs: Any
) -> SchwabStreamClient:
    sink = sink or ListSink()
    fake_auth = cast(SchwabAuthClient, auth or FakeAuth(Path("/nonexistent/token.json")))
    client = SchwabStreamClient(fake_auth, kwargs.pop("subs", QUOTES), sink, **kwargs)
    sink.client = client
    return client


@asynccontextmanager
async def connected(
    client: SchwabStreamClient, ws: FakeSocket
) -> AsyncIterator[asyncio.Task[None]]:
    """The client mid-session on `ws`, its reader running (what `_session` sets up)."""
    client._ws = ws  # type: ignore[assignment]
    client._creds = CREDS
    reader = asyncio.create_task(client._read_loop(ws))  # type: ignore[arg-type]
    try:
        yield reader
    finally:
        ws.hang_up()
        await asyncio.wait({reader}, timeout=1)


async def subscribe(client: SchwabStreamClient) -> None:
    """Run the client's subscription loop until it says `subscribed` (or raises what ends the
    session)."""
    task = asyncio.create_task(client._keep_subscribed())
    try:
        async with asyncio.timeout(2):
            while not client.stats.subscribed:
                if task.done():
                    task.result()
                await asyncio.sleep(0.001)
    finally:
        task.cancel()


def data_frame(*items: Any, service: str = "LEVELONE_EQUITIES") -> dict[str, Any]:
    return {
        "data": [{"service": service, "timestamp": 1, "command": "SUBS", "content": list(items)}]
    }


# --- the read path ----------------------------------------------------------------------------


async def test_items_the_normalizer_cannot_use_are_counted_in_bad_frames_by_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue #13 item 4: item-level problems never reached `bad_frames` (so neither
    `frames_bad_total`), though the operations guide said they did."""
    client = make_client(subs={"LEVELONE_EQUITIES": ["AAPL", "MSFT"]})
    ws = FakeSocket()
    ws.push(data_frame({"key": "AAPL", "1": 1.0}, {"1": 2.0}, {"key": "AAPL", "1": "x", "99": 3}))
    ws.push(data_frame({"3": 1.0}, {"key": "MSFT", "2": 2.0}))
    ws.hang_up()
    await client._read_loop(ws)  # type: ignore[arg-type]
    assert client.stats.bad_frames == {"item_no_key": 2, "bad_value": 1, "unknown_field": 1}
    assert client.stats.frames == {"data": 2}
    assert len(cast(ListSink, client.sink).events) == 3  # the good items still became events
    logged = [r.getMessage() for r in caplog.records if "stream data problem" in r.getMessage()]
    assert len(logged) == 3  # once per detail: the second keyless item is counted, not logged


async def test_a_frame_that_cannot_be_decoded_is_counted_by_its_error_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = make_client()
    ws = FakeSocket()
    bad_utf8 = b'{"notify":[{"service":"\xff","heartbeat":"1"}]}'
    for raw in (b'{"data": [', b"\xff", b"{}", b'{"data": 5}', b'{"notify":[{}]}', bad_utf8):
        ws.push(raw)
    ws.hang_up()
    await client._read_loop(ws)  # type: ignore[arg-type]
    assert client.stats.bad_frames == {
        "not_json": 2,
        "empty": 1,
        "bad_shape": 1,
        "bad_notify": 1,
        "invalid_utf8": 1,
    }
    malformed = [r for r in caplog.records if "malformed frame" in r.getMessage()]
    assert len(malformed) == 5  # once per kind


# --- response codes, through the table --------------------------------------------------------


async def test_login_denied_relogs_in_at_once_with_a_fresh_token() -> None:
    client = make_client()
    async with connected(client, FakeSocket({"LOGIN": [3]})):
        with pytest.raises(_Reconnect) as caught:
            await client._login("old-token")
    assert caught.value.kind is ReconnectReason.CODE_3 and caught.value.immediate
    assert str(caught.value) == "login denied (code 3): said 3"
    assert client._code3  # the next session refreshes the access token first


@pytest.mark.parametrize("code", [9, 20, 22, 99])
async def test_any_other_failed_login_reconnects_after_backoff(code: int) -> None:
    client = make_client()
    async with connected(client, FakeSocket({"LOGIN": [code]})):
        with pytest.raises(_Reconnect) as caught:
            await client._login("token")
    assert caught.value.kind is ReconnectReason.LOGIN_FAILED and not caught.value.immediate
    assert str(caught.value) == f"login failed (code {code}): said {code}"


async def test_code_12_stops_for_good_wherever_it_comes() -> None:
    client = make_client()
    async with connected(client, FakeSocket({"LOGIN": [12]})):
        with pytest.raises(StreamStopped) as at_login:
            await client._login("token")
    async with connected(client, FakeSocket({"SUBS": [12]})):
        with pytest.raises(StreamStopped) as at_subs:
            await subscribe(client)
    for caught in (at_login, at_subs):
        assert caught.value.code == 12 and caught.value.exit_code is ExitCode.TAKEN_OVER
        assert str(caught.value) == "another session took over (code 12): said 12"


@pytest.mark.parametrize(
    ("code", "kind", "detail"),
    [
        (3, ReconnectReason.CODE_3, "LEVELONE_EQUITIES SUBS denied (code 3): said 3"),
        (30, ReconnectReason.CODE_30, "streaming stopped by Schwab (code 30): said 30"),
    ],
)
async def test_a_severing_code_at_subs_ends_the_session(
    code: int, kind: ReconnectReason, detail: str
) -> None:
    client = make_client()
    async with connected(client, FakeSocket({"SUBS": [code]})):
        with pytest.raises(_Reconnect) as caught:
            await subscribe(client)
    assert (caught.value.kind, str(caught.value)) == (kind, detail)
    assert caught.value.immediate is (code == 3) and client._code3 is (code == 3)
    assert client.stats.state is not ConnectionState.SUBSCRIBED


async def test_code_12_while_a_command_waits_is_not_mistaken_for_a_closed_socket() -> None:
    """Schwab sends the notify and closes: the SUBS waiting for its answer must end with the
    takeover, not with 'connection closed' (which would reconnect and fight the other session)."""
    client = make_client()
    ws = FakeSocket({"SUBS": [None]})
    async with connected(client, ws):
        subscribing = asyncio.create_task(subscribe(client))
        while not ws.sent:
            await asyncio.sleep(0)
        ws.notify(12)
        with pytest.raises(StreamStopped, match=r"code 12\): n12"):
            await subscribing


async def test_transient_subs_codes_are_retried_then_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(subscriptions_module, "TRANSIENT_RETRY_BASE", 0.001)
    sink = ListSink()
    client = make_client(sink, subs={"LEVELONE_EQUITIES": ["AAPL"], "NASDAQ_BOOK": ["MSFT"]})
    ws = FakeSocket({"SUBS": [22, 20, 0, 24, 25, 23]})
    async with connected(client, ws):
        await subscribe(client)
    assert [r["service"] for r in ws.sent] == ["LEVELONE_EQUITIES"] * 3 + ["NASDAQ_BOOK"] * 3
    (failed,) = sink.named("subscribe_failed")  # three attempts, then said once
    assert failed[1].startswith("NASDAQ_BOOK SUBS failed (code 23): said 23 [keys: MSFT]")
    assert failed[2] == 23
    assert client.stats.state is ConnectionState.SUBSCRIBED


async def test_symbol_limit_and_other_failures_are_reported_and_the_rest_streams() -> None:
    sink = ListSink()
    subs = {"LEVELONE_EQUITIES": ["A", "B"], "NASDAQ_BOOK": ["A"], "CHART_EQUITY": ["A"]}
    client = make_client(sink, subs=subs)
    async with connected(client, FakeSocket({"SUBS": [19, 11, 26]})):
        await subscribe(client)
    (limit,) = sink.named("symbol_limit")
    assert limit[2] == 19
    assert limit[3] == {"service": "LEVELONE_EQUITIES", "keys": 2, "symbols": ["A", "B"]}
    (failed,) = sink.named("subscribe_failed")
    assert failed[2] == 11 and failed[3]["service"] == "NASDAQ_BOOK"
    assert sink.named("subscribed")  # 26 (SUCCEEDED_COMMAND_SUBS) is a success


async def test_codes_outside_a_command_follow_the_same_table(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ListSink()
    client = make_client(sink)
    async with connected(client, FakeSocket()) as reader:
        ws = cast(FakeSocket, client._ws)
        ws.notify(19, then_close=False)  # outside a command: said, nothing more
        ws.notify(30)
        await asyncio.wait_for(reader, 1)
    assert [s[2] for s in sink.named("stream_code")] == [19]
    end = client._end_reason
    assert isinstance(end, _Reconnect) and end.kind is ReconnectReason.CODE_30
    assert str(end) == "streaming stopped by Schwab (code 30): n30"
    assert "streamer code 30 from ADMIN notify: n30" in caplog.text

    client = make_client()
    async with connected(client, FakeSocket()) as reader:
        cast(FakeSocket, client._ws).notify(3)
        await asyncio.wait_for(reader, 1)
    end = client._end_reason
    assert isinstance(end, _Reconnect) and end.kind is ReconnectReason.CODE_3 and end.immediate


# --- states and backoff over whole runs -------------------------------------------------------


async def test_every_connection_state_is_reached_and_code_12_ends_stopped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No login at first; a login; a session that Schwab ends with code 30; a reconnect whose
    LOGIN gets code 12. Every state but STANDBY (the pipeline's: no client runs then) is seen."""
    sockets = [FakeSocket(), FakeSocket({"LOGIN": [12]})]
    connecting: list[ConnectionState] = []

    @asynccontextmanager
    async def connect(url: str, **kwargs: Any) -> AsyncIterator[FakeSocket]:
        connecting.append(client.stats.state)
        yield sockets.pop(0)

    monkeypatch.setattr(client_module.websockets, "connect", connect)
    token = tmp_path / "token.json"
    auth = FakeAuth(token, errors=[LoginRequiredError(f"no token file at {token}")])
    sink = ListSink()
    client = make_client(sink, auth, reconnect_base_delay=0.01, login_poll_seconds=0.01)
    assert client.stats.state is ConnectionState.DISCONNECTED

    def schwab_stops_the_first_session(state: str) -> None:
        if state == "subscribed":
            cast(FakeSocket, client._ws).notify(30)

    sink.on_status = schwab_stops_the_first_session
    asyncio.get_running_loop().call_later(0.05, token.write_text, "{}")  # `schwab-stream login`
    with pytest.raises(StreamStopped):
        await asyncio.wait_for(client.run(), 5)

    seen = {client.stats.state, *sink.states_seen, *connecting}
    # (STANDBY is the pipeline's; IDLE needs nothing wanted: test_nothing_wanted_...)
    assert seen == set(ConnectionState) - {ConnectionState.STANDBY, ConnectionState.IDLE}
    assert client.stats.state is ConnectionState.STOPPED
    assert not client.stats.logged_in and not client.stats.subscribed
    assert client.stats.reconnects == {"code_30": 1}
    assert [s[0] for s in sink.statuses] == [
        "login_needed",
        "token_refreshed",
        "connected",
        "logged_in",
        "subscribed",
        "disconnected",
        "reconnecting",
        "connected",
    ]
    assert sink.states_seen[sink.statuses.index(sink.named("reconnecting")[0])] is (
        ConnectionState.RECONNECTING
    )


async def test_reconnects_back_off_with_jitter_and_count_by_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    errors: list[Exception] = [
        httpx.ConnectError("refused"),
        OSError("unreachable"),
        httpx.ConnectError("refused"),
    ]
    sink = ListSink()
    client = make_client(sink, FakeAuth(Path("/nonexistent"), errors=errors))
    client.backoff = Backoff(0.02, 0.05, jitter=0.5, rng=lambda: 1.0)  # the shortest delays

    def stop_after_three(state: str) -> None:
        if state == "reconnecting" and len(sink.named(state)) == 3:
            client._stop.set()  # what stop() does first (there is no socket to log out of)

    sink.on_status = stop_after_three
    await asyncio.wait_for(client.run(), 2)
    delays = [s[3]["delay"] for s in sink.named("reconnecting")]
    assert delays == [0.01, 0.02, 0.025]  # ceilings 0.02, 0.04, 0.05 (the cap), halved
    assert [s[3]["attempt"] for s in sink.named("reconnecting")] == [1, 2, 3]
    assert client.stats.reconnects == {"api_error": 2, "network": 1}
    assert client.stats.state is ConnectionState.STOPPED


def test_client_stats_types() -> None:
    stats = ClientStats()
    assert stats.state is ConnectionState.DISCONNECTED
    assert set(ReconnectReason) >= {"closed", "silence", "code_3", "code_30", "command_timeout"}


def test_the_state_module_is_a_leaf() -> None:
    """Telemetry imports the enums; that must not pull the stream side's libraries in."""
    code = (
        "import sys, schwab_stream.stream.state\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & %r))\n"
        % {"websockets", "httpx", "redis", "msgspec", "aiohttp", "prometheus_client"}
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture(autouse=True)
def _warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")


async def test_a_token_file_that_cannot_be_used_now_is_retried_and_said_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue #14 item 5: a full disk or a stuck token lock sent the client to wait for a new
    login (polling for a new token file) for ~20 minutes. It is retried, and said once."""
    caplog.set_level(logging.INFO, logger="schwab_stream")
    busy = "another process has held the token lock /t/token.json.lock for over 60 s"
    errors: list[Exception] = [
        TokenStoreUnavailable("lock_busy", busy),
        TokenStoreUnavailable("write_failed", "cannot write token file (No space left on device)"),
        StreamStopped("ends the test", 12),
    ]
    sink = ListSink()
    client = make_client(sink, FakeAuth(Path("/nonexistent/token.json"), errors=errors))
    started = asyncio.get_running_loop().time()
    with pytest.raises(StreamStopped):
        await asyncio.wait_for(client.run(), 5)
    assert asyncio.get_running_loop().time() - started < 2.5  # 0.5 s, then 1 s: not a login wait
    assert not errors  # all three tries were made
    assert [s[0] for s in sink.statuses] == ["token_file_unavailable"]
    assert sink.statuses[0][3] == {"reason": "lock_busy"}
    assert ConnectionState.LOGIN_NEEDED not in sink.states_seen
    assert client.stats.login_reason == ""
    said = [r.getMessage() for r in caplog.records if "token_file_unavailable" in r.getMessage()]
    assert len(said) == 1 and said[0].startswith("token_file_unavailable: lock_busy: another")


# --- subscriptions on a live connection (the rules are SubscriptionBook's) ---------------------


async def test_a_refused_subs_is_tried_again_on_the_same_connection_and_then_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """#14: a SUBS refused once (19, 11, 9, 21) was never retried on that connection, and the
    `subscribed` event still listed the service."""
    monkeypatch.setattr(subscriptions_module, "REFUSED_RETRY_BASE", 0.05)
    sink = ListSink()
    client = make_client(sink)
    ws = FakeSocket({"SUBS": [19]})
    async with connected(client, ws):
        task = asyncio.create_task(client._keep_subscribed())
        async with asyncio.timeout(2):
            while client.book.active_counts() != {"LEVELONE_EQUITIES": 1}:
                await asyncio.sleep(0.005)
        task.cancel()
    assert [(r["service"], r["command"]) for r in ws.sent] == [("LEVELONE_EQUITIES", "SUBS")] * 2
    ((_, detail, code, info),) = sink.named("symbol_limit")
    assert code == 19 and info["symbols"] == ["AAPL"] and "tried again in" in detail
    (subscribed,) = sink.named("subscribed")  # said once, naming what was refused
    assert subscribed[3] == {"services": {}, "refused": {"LEVELONE_EQUITIES": 1}}


async def test_a_change_on_a_live_connection_sends_only_the_difference() -> None:
    client = make_client(subs={"LEVELONE_EQUITIES": ["AAPL", "MSFT"]})
    ws = FakeSocket()
    async with connected(client, ws):
        task = asyncio.create_task(client._keep_subscribed())
        async with asyncio.timeout(2):
            while not client.stats.subscribed:
                await asyncio.sleep(0.005)
            changes = client.want({"LEVELONE_EQUITIES": ["AAPL", "NVDA"], "CHART_EQUITY": ["SPY"]})
            while len(ws.sent) < 4:
                await asyncio.sleep(0.005)
        task.cancel()
    assert changes == {
        "LEVELONE_EQUITIES": (["NVDA"], ["MSFT"]),
        "CHART_EQUITY": (["SPY"], []),
    }
    sent = [(r["service"], r["command"], r["parameters"]["keys"]) for r in ws.sent]
    assert sent == [
        ("LEVELONE_EQUITIES", "SUBS", "AAPL,MSFT"),
        ("LEVELONE_EQUITIES", "UNSUBS", "MSFT"),
        ("LEVELONE_EQUITIES", "ADD", "NVDA"),
        ("CHART_EQUITY", "SUBS", "SPY"),
    ]


async def test_data_for_keys_and_services_not_held_is_dropped_and_counted() -> None:
    """#14: data for keys never subscribed was published, and an unknown service name became a
    `last_message` metric label."""
    sink = ListSink()
    client = make_client(sink)
    ws = FakeSocket()
    ws.push(data_frame({"key": "AAPL", "1": 1.0}, {"key": "TSLA", "1": 2.0}))
    ws.push(data_frame({"key": "SPY", "1": 1.0}, service="CHART_EQUITY"))
    ws.push(data_frame({"key": "X"}, service="NO_SUCH_SERVICE_" + "x" * 100))
    ws.hang_up()
    await client._read_loop(ws)  # type: ignore[arg-type]
    assert [e.symbol for e in sink.events] == ["AAPL"]
    assert client.stats.bad_frames == {"not_subscribed": 2, "unknown_service": 1}
    assert set(client.stats.last_message) == {"LEVELONE_EQUITIES"}
    assert client.book.streaming["LEVELONE_EQUITIES"]["AAPL"] > 0  # its last data, stamped


async def test_nothing_wanted_waits_without_connecting_until_a_subscription(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """#14: `run` with nothing to subscribe reconnected every 30 s forever (Schwab closes a
    stream without subscriptions with code 30)."""
    sockets: list[FakeSocket] = []

    @asynccontextmanager
    async def connect(url: str, **kwargs: Any) -> AsyncIterator[FakeSocket]:
        sockets.append(FakeSocket())
        yield sockets[-1]

    monkeypatch.setattr(client_module.websockets, "connect", connect)
    sink = ListSink()
    client = make_client(sink, subs={})
    running = asyncio.create_task(client.run())
    await asyncio.sleep(0.2)
    assert sockets == [] and client.stats.state is ConnectionState.IDLE
    assert [s[0] for s in sink.statuses] == ["idle"]
    client.want({"LEVELONE_EQUITIES": ["AAPL"]})
    async with asyncio.timeout(2):
        while not client.stats.subscribed:
            await asyncio.sleep(0.005)
    assert len(sockets) == 1
    await client.stop()
    await asyncio.wait_for(running, 2)
