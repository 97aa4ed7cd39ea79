"""The simulator's streamer over a real websocket: envelopes, heartbeats, closes (login denied,
logout, takeover, idle), each fault through the control API, account activity and replay.

The protocol rules themselves (every response code, SUBS/ADD/UNSUBS/VIEW, conflation, exact
timings) are tested fast on the socket-free Session in tests/unit/test_sim_session.py; these
tests prove the same session behaves so behind a real socket on real timers."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, ConnectionClosedError

from schwab_stream.sim.control import parse_fault
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.tokens import SIM_CORREL_ID, SIM_CUSTOMER_ID
from tests.conftest import REGULAR_SESSION

from .sim_ws import RawClient, is_heartbeat, post

ROOT = Path(__file__).resolve().parents[2]
FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "idle_timeout": 5.0,
    "rate": 50.0,
    "book_interval": 0.1,
}
RESPONSE_KEYS = ["service", "command", "requestid", "SchwabClientCorrelId", "timestamp", "content"]


@pytest.fixture
def make_sim(sim_factory: Callable[..., SimThread]) -> Callable[..., SimThread]:
    def make(**overrides: Any) -> SimThread:
        return sim_factory(**{**FAST, **overrides})

    return make


@pytest.fixture
def clients() -> Iterator[Callable[[SimThread], RawClient]]:
    opened: list[RawClient] = []

    def make(sim: SimThread) -> RawClient:
        client = RawClient(sim)
        opened.append(client)
        return client

    yield make
    for client in opened:
        client.close()


def assert_closed(client: RawClient, timeout: float = 3.0) -> None:
    """The server ends the connection (any frames still queued before it are drained)."""
    deadline = time.monotonic() + timeout
    with pytest.raises(ConnectionClosed):
        while time.monotonic() < deadline:
            client.ws.recv(timeout=deadline - time.monotonic())


def keys_in(block: dict[str, Any]) -> set[str]:
    return {item["key"] for item in block["content"]}


# ---- LOGIN, envelopes, heartbeats --------------------------------------------------------------


def test_login_response_envelope_and_heartbeats(make_sim, clients) -> None:
    sim = make_sim()
    client = clients(sim)
    client.ws.send(
        json.dumps(
            {
                "requests": [
                    {
                        "service": "ADMIN",
                        "command": "LOGIN",
                        "requestid": 7,  # Schwabdev sends ints; Schwab echoes a string
                        "SchwabClientCustomerId": SIM_CUSTOMER_ID,
                        "SchwabClientCorrelId": "my-correl",
                        "parameters": {
                            "Authorization": sim.state.tokens.login()[0],
                            "SchwabClientChannel": "N9",
                            "SchwabClientFunctionId": "APIAPP",
                        },
                    }
                ]
            }
        )
    )
    frame = client.recv()
    assert list(frame) == ["response"]
    item = frame["response"][0]
    assert list(item) == RESPONSE_KEYS
    assert item["requestid"] == "7"
    assert item["SchwabClientCorrelId"] == "my-correl"
    assert item["content"]["code"] == 0
    assert item["content"]["msg"].startswith("server=") and ";status=" in item["content"]["msg"]
    first = client.recv()  # one heartbeat right after the LOGIN response
    assert list(first) == ["notify"] and list(first["notify"][0]) == ["heartbeat"]
    beat = first["notify"][0]["heartbeat"]
    assert isinstance(beat, str) and beat.isdigit()
    assert 0 <= int(beat) / 1000 - REGULAR_SESSION.timestamp() < 30  # market time, as all times
    second = client.wait_for(is_heartbeat)
    third = client.wait_for(is_heartbeat)
    gap = int(third["notify"][0]["heartbeat"]) - int(second["notify"][0]["heartbeat"])
    assert 150 <= gap <= 600
    assert sim.state.stats["logins"] == 1 and sim.state.stats["connections"] == 1


@pytest.mark.parametrize("how", ["unknown", "expired", "revoked", "wrong_customer"])
def test_login_denied_code_3_then_close(make_sim, clients, how: str) -> None:
    sim = make_sim()
    client = clients(sim)
    token = sim.state.tokens.login()[0]
    if how == "unknown":
        token = "AT.not-a-token@"
    elif how == "expired":
        sim.state.tokens.expire_access_tokens()
    elif how == "revoked":
        sim.state.tokens.login()  # a new browser login invalidates older tokens
    if how == "wrong_customer":
        request = {
            "service": "ADMIN",
            "command": "LOGIN",
            "requestid": "0",
            "SchwabClientCustomerId": "someone-else",
            "SchwabClientCorrelId": SIM_CORREL_ID,
            "parameters": {"Authorization": token},
        }
        client.ws.send(json.dumps({"requests": [request]}))
        item = client.recv()["response"][0]
    else:
        item = client.login(token)
    assert item["content"]["code"] == 3
    assert item["command"] == "LOGIN" and item["service"] == "ADMIN"
    assert_closed(client)


def test_logout_success_then_close(make_sim, clients) -> None:
    client = clients(make_sim())
    client.login()
    item = client.command("ADMIN", "LOGOUT")
    assert item["content"] == {"code": 0, "msg": "SUCCESS"}
    assert_closed(client)


# ---- takeover and idle -------------------------------------------------------------------------


def test_second_login_takes_over_with_code_12(make_sim, clients) -> None:
    sim = make_sim()
    older, newer = clients(sim), clients(sim)
    older.login()
    older.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    assert newer.login()["content"]["code"] == 0
    frame = older.wait_for(lambda f: "service" in f.get("notify", [{}])[0])
    notice = frame["notify"][0]
    assert notice["service"] == "ADMIN" and notice["content"]["code"] == 12
    assert_closed(older)
    newer.command("LEVELONE_EQUITIES", "SUBS", keys="MSFT")
    assert keys_in(newer.data("LEVELONE_EQUITIES")) == {"MSFT"}
    assert sim.state.stats["takeovers"] == 1


def test_no_subscription_gets_admin_code_30_in_schwab_shape(make_sim, clients, frames) -> None:
    real = next(f for f in frames if f["name"].startswith("ADMIN notify code 30"))["message"]
    client = clients(make_sim(idle_timeout=0.5))
    client.login()
    frame = client.wait_for(lambda f: "service" in f.get("notify", [{}])[0], timeout=3)
    got, want = frame["notify"][0], real["notify"][0]
    assert list(frame) == list(real) and list(got) == list(want)
    assert list(got["content"]) == list(want["content"])
    assert got["content"] == want["content"]
    assert isinstance(got["timestamp"], int)
    assert_closed(client)


# ---- faults ------------------------------------------------------------------------------------


def test_fault_drop_closes_without_close_frame(make_sim, clients) -> None:
    sim = make_sim()
    client = clients(sim)
    client.login()
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    assert post(sim, "/sim/fault/drop") == {"fault": "drop", "connections": 1}
    with pytest.raises(ConnectionClosedError) as caught:
        while True:
            client.ws.recv(timeout=3)
    assert caught.value.rcvd is None  # no close frame: the 1006 a dead network gives


def test_fault_silence_sends_nothing_then_resumes(make_sim, clients) -> None:
    sim = make_sim()
    client = clients(sim)
    client.login()
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    client.data("LEVELONE_EQUITIES")
    post(sim, "/sim/fault/silence?seconds=0.8")
    arrivals = [time.monotonic()]
    while arrivals[-1] - arrivals[0] < 1.5:
        client.ws.recv(timeout=3)
        arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) > 0.6  # nothing at all, heartbeats included (interval 0.2 s, data 50/s)
    after = gaps[gaps.index(max(gaps)) + 1 :]
    assert len(after) > 5  # and it flows again


def test_fault_silence_needs_seconds(make_sim) -> None:
    sim = make_sim()
    with pytest.raises(Exception, match="400"):
        post(sim, "/sim/fault/silence?seconds=x")


def test_fault_garbage_sends_an_unparsable_frame(make_sim, clients) -> None:
    sim = make_sim()
    client = clients(sim)
    client.login()
    post(sim, "/sim/fault/garbage")
    texts = [client.ws.recv(timeout=2) for _ in range(4)]
    bad = [t for t in texts if not _parses(t)]
    assert len(bad) == 1 and bad[0].startswith('{"data":[')
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")  # still alive


def _post_raw(sim: SimThread, body: bytes, query: str = "") -> Any:
    url = f"{sim.base_url}/sim/fault/raw{query}"
    request = urllib.request.Request(url, method="POST", data=body)  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        return json.loads(answer.read())


def _next_text(client: RawClient, timeout: float = 2.0) -> str | bytes:
    """The next frame that is not a heartbeat, as sent."""
    while True:
        text = client.ws.recv(timeout=timeout)
        if not text.startswith('{"notify":[{"heartbeat"'):
            return text


def test_fault_raw_sends_the_body_as_one_frame_as_is(make_sim, clients) -> None:
    sim = make_sim(heartbeat_interval=5)
    client = clients(sim)
    client.login()
    text = '{"data":[{"service":"X","content":' + "[" * 3000 + "]" * 3000 + "}]}"
    assert _post_raw(sim, text.encode()) == {"fault": "raw", "bytes": len(text), "connections": 1}
    assert _next_text(client) == text
    assert _post_raw(sim, b"not json at all")["connections"] == 1
    assert _next_text(client) == "not json at all"
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")  # still alive
    assert sim.state.stats["raw_frames"] == 2 and sim.state.stats["fault_raw"] == 2


def test_fault_raw_armed_goes_out_just_before_the_next_answer_to_its_command(
    make_sim, clients
) -> None:
    sim = make_sim(heartbeat_interval=5)
    client = clients(sim)
    client.login()
    assert _post_raw(sim, b'{"armed":1}', "?on=SUBS") == {
        "fault": "raw",
        "bytes": 11,
        "connections": 0,
        "armed": "SUBS",
    }
    with pytest.raises(TimeoutError):
        _next_text(client, timeout=0.3)  # nothing yet
    client.send_request("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    assert _next_text(client) == '{"armed":1}'
    assert "response" in json.loads(_next_text(client))  # then the answer
    client.command("LEVELONE_EQUITIES", "SUBS", keys="MSFT")  # once only
    assert not any(f.get("armed") for f in client.backlog)


def test_a_request_nested_too_deep_is_a_bad_command_not_a_dead_socket(make_sim, clients) -> None:
    client = clients(make_sim(heartbeat_interval=5))
    client.login()
    client.ws.send('{"requests":' + "[" * 100_000 + "]" * 100_000 + "}")
    frame = client.wait_for(lambda f: "response" in f)
    assert frame["response"][0]["content"]["code"] == 21
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")  # still alive


@pytest.mark.parametrize(("body", "query"), [(b"", ""), (b"\xff\xfe", ""), (b"{}", "?on=NOPE")])
def test_fault_raw_refuses_a_bad_request(make_sim, body: bytes, query: str) -> None:
    with pytest.raises(Exception, match="400"):
        _post_raw(make_sim(), body, query)


def _parses(text: str | bytes) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def test_fault_code_3_denies_login_and_expires_tokens(make_sim, clients) -> None:
    sim = make_sim()
    client = clients(sim)
    token = sim.state.tokens.login()[0]
    login_id = client.send_request(
        "ADMIN",
        "LOGIN",
        Authorization=token,
        SchwabClientChannel="N9",
        SchwabClientFunctionId="APIAPP",
    )
    client.response(login_id)
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    assert post(sim, "/sim/fault/code/3")["connections"] == 1
    item = client.wait_for(lambda f: "response" in f)["response"][0]
    assert (item["service"], item["command"], item["requestid"]) == ("ADMIN", "LOGIN", login_id)
    assert item["content"]["code"] == 3
    assert_closed(client)
    retry = clients(sim)
    assert retry.login(token)["content"]["code"] == 3  # the old token is dead: refresh it


@pytest.mark.parametrize("code", [12, 30])
def test_fault_code_notify_then_close(make_sim, clients, code: int) -> None:
    sim = make_sim()
    client = clients(sim)
    client.login()
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    post(sim, f"/sim/fault/code/{code}")
    frame = client.wait_for(lambda f: "service" in f.get("notify", [{}])[0])
    assert frame["notify"][0]["content"]["code"] == code
    assert_closed(client)


@pytest.mark.parametrize(
    ("code", "command"), [(19, "SUBS"), (22, "SUBS"), (24, "ADD"), (9, "SUBS")]
)
def test_fault_code_answers_the_next_command(make_sim, clients, code: int, command: str) -> None:
    sim = make_sim()
    client = clients(sim)
    client.login()
    assert post(sim, f"/sim/fault/code/{code}")["armed"] is True
    assert client.command("LEVELONE_EQUITIES", command, keys="AAPL")["content"]["code"] == code
    assert client.command("LEVELONE_EQUITIES", command, keys="AAPL")["content"]["code"] == 0


def test_fault_code_rejects_unknown_codes(make_sim) -> None:
    with pytest.raises(Exception, match="400"):
        post(make_sim(), "/sim/fault/code/77")


def test_startup_fault_drops_on_schedule(make_sim, clients) -> None:
    sim = make_sim(startup_faults=["drop@0.6"])
    client = clients(sim)
    client.login()
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    with pytest.raises(ConnectionClosedError) as caught:
        while True:
            client.ws.recv(timeout=3)
    assert caught.value.rcvd is None
    assert sim.state.stats["fault_drop"] == 1


@pytest.mark.parametrize(
    "bad", ["drop", "drop:3@1", "silence@1", "silence:0@1", "code:77@1", "melt@1", "drop@1/0"]
)
def test_fault_spec_syntax_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="bad fault"):
        parse_fault(bad)


def test_fault_spec_syntax() -> None:
    spec = parse_fault("silence:3@10/60")
    assert (spec.name, spec.arg, spec.at, spec.every) == ("silence", 3.0, 10.0, 60.0)
    assert parse_fault("code:12@0").arg == 12


# ---- account activity --------------------------------------------------------------------------


def test_account_order_plays_its_life(make_sim, clients) -> None:
    sim = make_sim()
    client = clients(sim)
    client.login()
    client.command("ACCT_ACTIVITY", "SUBS", keys="Account Activity", fields="0,1,2,3")
    assert client.command("ACCT_ACTIVITY", "ADD", keys="x")["content"]["code"] == 24
    answer = post(sim, "/sim/account/order?symbol=AAPL&quantity=5&spacing=0.01")
    assert answer["connections"] == 1
    items = []
    while len(items) < len(answer["events"]):
        items.extend(client.data("ACCT_ACTIVITY")["content"])
    assert [i["2"] for i in items] == answer["events"]
    assert answer["events"][0] == "OrderCreated" and answer["events"][-1] == "OrderFillCompleted"
    assert [i["seq"] for i in items] == sorted(i["seq"] for i in items)
    for item in items:
        assert list(item) == ["seq", "key", "1", "2", "3"] and item["key"] == "Account Activity"
        event = json.loads(item["3"])  # field 3 is a JSON string
        assert event["BaseEvent"]["EventType"] == item["2"]
    fill = json.loads(items[-1]["3"])["BaseEvent"]["OrderFillCompletedEventOrderLegQuantityInfo"]
    assert fill["ExecutionInfo"]["ExecutionQuantity"] == {"lo": "5"}


# ---- replay ------------------------------------------------------------------------------------


@pytest.fixture
def fixture_jsonl(tmp_path: Path) -> Path:
    out = tmp_path / "fixtures.jsonl"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "fixtures_to_jsonl.py"), "-o", str(out)],
        check=True,
    )
    return out


def test_replay_sends_the_fixture_frames_as_they_are(make_sim, clients, fixture_jsonl) -> None:
    lines = fixture_jsonl.read_text().splitlines()
    services = []
    for line in lines:
        for block in json.loads(line).get("data", []):
            if block["service"] not in services:
                services.append(block["service"])
    sim = make_sim(replay=fixture_jsonl)
    client = clients(sim)
    client.login()
    for service in services:
        client.send_request(service, "SUBS", keys="ANY", fields="0,1,2,3")
    texts: list[str] = []
    while len(texts) < len(lines) + 1:
        text = client.ws.recv(timeout=3)
        assert isinstance(text, str)
        if not text.startswith('{"response"'):
            texts.append(text)
    assert texts[: len(lines)] == lines  # byte for byte, in file order
    assert is_heartbeat(json.loads(texts[-1]))  # then the simulator's own heartbeats


def test_replay_waits_for_a_subscription_and_keeps_pace(make_sim, clients, tmp_path) -> None:
    frames = [
        {"notify": [{"heartbeat": "1000000000000"}]},
        {
            "data": [
                {
                    "service": "LEVELONE_EQUITIES",
                    "timestamp": 1000000000000,
                    "command": "SUBS",
                    "content": [{"key": "AAPL", "1": 1.5}],
                }
            ]
        },
        {
            "data": [
                {
                    "service": "LEVELONE_EQUITIES",
                    "timestamp": 1000000000400,
                    "command": "SUBS",
                    "content": [{"key": "AAPL", "1": 1.6}],
                }
            ]
        },
    ]
    path = tmp_path / "paced.jsonl"
    path.write_text("".join(json.dumps(f) + "\n" for f in frames))
    client = clients(make_sim(replay=path, replay_pace=True, heartbeat_interval=5))
    client.login()
    assert client.recv() == frames[0]  # service-less: right after login
    with pytest.raises(TimeoutError):
        client.ws.recv(timeout=0.4)  # nothing until subscribed
    client.command("CHART_EQUITY", "SUBS", keys="AAPL")
    with pytest.raises(TimeoutError):
        client.ws.recv(timeout=0.3)  # a different service does not unlock it
    client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    assert client.wait_for(lambda f: "data" in f) == frames[1]
    started = time.monotonic()
    assert client.wait_for(lambda f: "data" in f) == frames[2]
    assert 0.3 < time.monotonic() - started < 1.0  # recorded 400 ms apart


# ---- the command -------------------------------------------------------------------------------


def test_sim_command_prints_where_and_how_then_stops_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "schwab_stream",
            "sim",
            "--port",
            "0",
            "--app-key",
            "k1",
            "--heartbeat-interval",
            "0.2",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline().rstrip("\n")
        prefix = "schwab-stream simulator listening on http://127.0.0.1:"
        assert first.startswith(prefix) and first[len(prefix) :].isdigit()
        base = first.rpartition(" ")[2]
        lines = [proc.stdout.readline() for _ in range(3)]
        export = next(line for line in lines if line.startswith("export "))
        assert f"SCHWAB_API_BASE_URL={base} " in export and "SCHWAB_APP_KEY=k1 " in export
        assert "SCHWAB_APP_SECRET=" in export and "SCHWAB_CALLBACK_URL=" in export
        with urllib.request.urlopen(base + "/sim/stats", timeout=5) as answer:  # noqa: S310
            assert json.loads(answer.read())["frames_sent"] == 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
