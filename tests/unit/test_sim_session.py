"""The simulator's streamer Session driven directly: no sockets, a fake clock, exact timings.

A `Rig` holds one `Hub` whose wall clock (envelope timestamps, the market, the token authority)
and monotonic `now` (heartbeats, idle timeout, rate, silence) both move only when a test says so.
The websocket tests in tests/integration/test_sim_protocol.py prove the same rules end to end.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from schwab_stream.sim.codes import CODE_MESSAGES, LOGIN_MSG
from schwab_stream.sim.hub import Hub
from schwab_stream.sim.session import Session
from schwab_stream.sim.state import SimConfig, SimState
from schwab_stream.sim.tokens import SIM_CORREL_ID, SIM_CUSTOMER_ID

T0 = 1_718_719_200.0  # 2024-06-18 10:00 New York, a Tuesday in the regular session
Frame = dict[str, Any]


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Rig:
    """One hub, its sessions, and the two clocks they run on."""

    def __init__(self, **config: Any) -> None:
        self.wall = Clock(T0)
        self.state = SimState(SimConfig(**config))
        self.state.tokens.clock = self.wall
        self.hub = Hub(self.state, clock=self.wall)
        self.now = 1000.0

    def session(self) -> Session:
        return self.hub.connect(self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall.t += seconds

    def token(self) -> str:
        return self.state.tokens.login()[0]

    def send(self, session: Session, *requests: Frame | str) -> list[Frame]:
        """Send one frame with these requests; returns its response items."""
        text = requests[0] if isinstance(requests[0], str) else json.dumps({"requests": requests})
        assert isinstance(text, str)
        session.receive(text, self.now)
        frames = drain(session)
        assert len(frames) == 1 and list(frames[0]) == ["response"], frames
        items: list[Frame] = frames[0]["response"]
        return items

    def command(self, session: Session, service: str, command: str, **params: str) -> Frame:
        """One request; its response item."""
        (item,) = self.send(session, request(service, command, **params))
        return item

    def login(self, session: Session, token: str | None = None) -> Frame:
        item = self.command(session, "ADMIN", "LOGIN", Authorization=token or self.token())
        return item

    def run(self, session: Session, seconds: float, step: float = 0.01) -> list[Frame]:
        """Poll every `step` seconds for `seconds`; every frame produced, decoded."""
        frames: list[Frame] = []
        for _ in range(round(seconds / step)):
            self.advance(step)
            session.poll(self.now)
            frames += drain(session)
        return frames


_ids = iter(range(10**6))


def request(service: str, command: str, rid: Any = None, **params: str) -> Frame:
    return {
        "service": service,
        "command": command,
        "requestid": str(next(_ids)) if rid is None else rid,
        "SchwabClientCustomerId": SIM_CUSTOMER_ID,
        "SchwabClientCorrelId": SIM_CORREL_ID,
        "parameters": params,
    }


def drain(session: Session) -> list[Frame]:
    frames = []
    while session.outbox:
        text = session.outbox.popleft()
        try:
            frames.append(json.loads(text))
        except ValueError:
            frames.append({"unparsable": text})
    return frames


def code(item: Frame) -> int:
    value: int = item["content"]["code"]
    return value


def heartbeats(frames: list[Frame]) -> list[int]:
    return [
        int(f["notify"][0]["heartbeat"]) for f in frames if "heartbeat" in f.get("notify", [{}])[0]
    ]


def notices(frames: list[Frame]) -> list[int]:
    return [
        f["notify"][0]["content"]["code"] for f in frames if "service" in f.get("notify", [{}])[0]
    ]


def data(frames: list[Frame], service: str) -> list[Frame]:
    return [block for f in frames for block in f.get("data", []) if block["service"] == service]


def logged_in(rig: Rig) -> Session:
    session = rig.session()
    assert code(rig.login(session)) == 0
    drain(session)
    return session


# ---- LOGIN and heartbeats -----------------------------------------------------------------------


def test_login_answers_in_schwab_shape_with_the_requestid_as_a_string() -> None:
    rig = Rig()
    session = rig.session()
    login = request("ADMIN", "LOGIN", rid=7, Authorization=rig.token())
    login["SchwabClientCorrelId"] = "my-correl"
    (item,) = rig.send(session, login)
    assert item == {
        "service": "ADMIN",
        "command": "LOGIN",
        "requestid": "7",
        "SchwabClientCorrelId": "my-correl",
        "timestamp": int(T0 * 1000),
        "content": {"code": 0, "msg": LOGIN_MSG},
    }
    assert session.logged_in and not session.closing
    assert rig.state.stats["logins"] == 1


def test_one_heartbeat_right_after_login_then_one_every_interval() -> None:
    rig = Rig(heartbeat_interval=10.0)
    session = rig.session()
    rig.login(session)
    session.poll(rig.now)
    assert heartbeats(drain(session)) == [int(T0 * 1000)]
    assert session.next_wakeup(rig.now) == pytest.approx(rig.now + 10.0)
    frames = rig.run(session, 9.9, step=0.1)
    assert heartbeats(frames) == []
    frames = rig.run(session, 20.0, step=0.1)
    stamps = heartbeats(frames)
    assert len(stamps) == 2 and stamps[1] - stamps[0] == pytest.approx(10_000, abs=1)
    assert rig.state.stats["heartbeats"] == 3


def test_no_heartbeat_before_login() -> None:
    rig = Rig(heartbeat_interval=1.0)
    session = rig.session()
    assert rig.run(session, 5.0, step=0.5) == []
    assert session.next_wakeup(rig.now) == float("inf")


@pytest.mark.parametrize("how", ["unknown", "expired", "revoked", "not_a_string"])
def test_login_with_a_bad_token_is_code_3_then_close(how: str) -> None:
    rig = Rig(access_ttl=60.0)
    session = rig.session()
    token: Any = rig.token()
    if how == "unknown":
        token = "AT.not-a-token@"
    elif how == "expired":
        rig.advance(60.0)  # the token authority runs on the rig's wall clock
    elif how == "revoked":
        rig.token()  # a new browser login invalidates older tokens
    else:
        token = 12345
    (item,) = rig.send(session, request("ADMIN", "LOGIN", Authorization=token))
    assert (item["service"], item["command"], code(item)) == ("ADMIN", "LOGIN", 3)
    assert item["content"]["msg"] == CODE_MESSAGES[3]
    assert session.closing and not session.logged_in
    session.receive(json.dumps({"requests": [request("ADMIN", "LOGIN")]}), rig.now)
    assert drain(session) == []  # a closing session answers nothing more
    assert rig.state.stats["login_denied"] == 1


def test_login_for_another_customer_is_code_3() -> None:
    rig = Rig()
    session = rig.session()
    login = request("ADMIN", "LOGIN", Authorization=rig.token())
    login["SchwabClientCustomerId"] = "someone-else"
    (item,) = rig.send(session, login)
    assert code(item) == 3 and "SchwabClientCustomerId" in item["content"]["msg"]
    assert session.closing


def test_login_on_another_service_is_code_21_and_not_a_login() -> None:
    rig = Rig()
    session = rig.session()
    item = rig.command(session, "LEVELONE_EQUITIES", "LOGIN", Authorization=rig.token())
    assert code(item) == 21 and not session.logged_in and not session.closing


# ---- response codes -----------------------------------------------------------------------------


def test_a_command_before_login_is_code_20_and_the_connection_stays() -> None:
    rig = Rig()
    session = rig.session()
    item = rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    assert code(item) == 20 and item["content"]["msg"].endswith("LOGIN first")
    assert not session.closing and session.subs == {}
    assert code(rig.login(session)) == 0


@pytest.mark.parametrize("form", ["bare", "object", "array"])
def test_every_request_form_schwab_takes_is_answered(form: str) -> None:
    """A bare request object (Schwabdev's LOGIN), `requests` as an object, or as an array."""
    rig = Rig()
    session = rig.session()

    def frame(req: Frame) -> str:
        wrapped = {"bare": req, "object": {"requests": req}, "array": {"requests": [req]}}
        return json.dumps(wrapped[form])

    login = request("ADMIN", "LOGIN", rid=0, Authorization=rig.token())
    (item,) = rig.send(session, frame(login))
    assert (item["command"], item["requestid"], code(item)) == ("LOGIN", "0", 0)
    drain(session)
    (item,) = rig.send(session, frame(request("LEVELONE_EQUITIES", "ADD", rid=1, keys="AAPL")))
    assert item["content"] == {"code": 0, "msg": "ADD command succeeded"}
    assert data(rig.run(session, 0.2), "LEVELONE_EQUITIES")


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[]",
        '[{"service": "ADMIN", "command": "LOGIN", "requestid": "1"}]',
        '{"requests": []}',
        '{"requests": {}}',
        '{"requests": "LOGIN"}',
        '{"parameters": {}}',
        '{"requests": [1]}',
        '{"requests": [{"service": "LEVELONE_EQUITIES", "command": "SUBS"}]}',
        '{"requests": [{"service": "LEVELONE_EQUITIES", "command": "SUBS", "requestid": "5",'
        ' "parameters": ["keys"]}]}',
    ],
)
def test_a_malformed_frame_or_request_is_code_21(frame: str) -> None:
    rig = Rig()
    session = logged_in(rig)
    (item,) = rig.send(session, frame)
    assert code(item) == 21 and item["content"]["msg"].startswith("Bad command format")
    assert not session.closing
    assert code(rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL")) == 0


@pytest.mark.parametrize(
    ("command", "params"),
    [
        ("SUBS", {"fields": "0,1"}),  # no keys
        ("SUBS", {"keys": " , "}),  # empty keys
        ("SUBS", {"keys": "AAPL", "fields": "one,two"}),
        ("VIEW", {}),  # VIEW needs fields
        ("FROB", {"keys": "AAPL"}),
    ],
)
def test_a_bad_subscription_is_code_21_and_changes_nothing(
    command: str, params: dict[str, str]
) -> None:
    rig = Rig()
    session = logged_in(rig)
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="MSFT", fields="0,1")
    item = rig.command(session, "LEVELONE_EQUITIES", command, **params)
    assert code(item) == 21
    sub = session.subs["LEVELONE_EQUITIES"]
    assert list(sub.keys) == ["MSFT"] and sub.fields == ["1"]


def test_admin_commands_other_than_login_and_logout_are_code_21() -> None:
    rig = Rig()
    session = logged_in(rig)
    item = rig.command(session, "ADMIN", "QOS")
    assert code(item) == 21 and not session.closing


def test_an_unknown_service_is_code_11() -> None:
    rig = Rig()
    session = logged_in(rig)
    for service in ("TIMESALE_EQUITY", "FOREX_BOOK", "NEWS"):
        item = rig.command(session, service, "SUBS", keys="AAPL")
        assert code(item) == 11 and item["content"]["msg"].endswith(f"({service})")
    assert session.subs == {} and rig.state.stats["code_11"] == 3


def test_a_changed_customer_or_correl_id_is_code_20() -> None:
    rig = Rig()
    session = logged_in(rig)
    for key, value in (("SchwabClientCustomerId", "other"), ("SchwabClientCorrelId", "other")):
        req = request("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
        req[key] = value
        (item,) = rig.send(session, req)
        assert code(item) == 20 and "changed" in item["content"]["msg"]
    assert session.subs == {}


def test_the_symbol_limit_subscribes_what_fits_and_names_the_rest_with_19() -> None:
    rig = Rig(symbol_limit=3)
    session = logged_in(rig)
    assert code(rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL,MSFT")) == 0
    item = rig.command(session, "NASDAQ_BOOK", "SUBS", keys="AAPL,MSFT,GOOG")
    assert code(item) == 19
    assert item["content"]["msg"] == "Reached symbol limit of 3; not subscribed: MSFT,GOOG"
    assert list(session.subs["NASDAQ_BOOK"].keys) == ["AAPL"]
    assert not session.closing and rig.state.stats["symbol_limit_hits"] == 1


def test_logout_succeeds_then_closes_and_ends_the_frame() -> None:
    rig = Rig()
    session = logged_in(rig)
    items = rig.send(
        session,
        request("ADMIN", "LOGOUT"),
        request("LEVELONE_EQUITIES", "SUBS", keys="AAPL"),
    )
    assert [(i["command"], i["content"]) for i in items] == [
        ("LOGOUT", {"code": 0, "msg": "SUCCESS"})
    ]
    assert session.closing and session.subs == {}
    assert session.next_wakeup(rig.now) == rig.now  # the edge flushes and closes at once


def test_every_request_of_a_frame_is_answered_in_one_response_frame_in_order() -> None:
    rig = Rig()
    session = logged_in(rig)
    items = rig.send(
        session,
        request("LEVELONE_EQUITIES", "SUBS", rid="a", keys="AAPL"),
        request("NEWS", "SUBS", rid="b", keys="AAPL"),
        request("CHART_EQUITY", "SUBS", rid="c", keys="AAPL"),
    )
    assert [(i["requestid"], code(i)) for i in items] == [("a", 0), ("b", 11), ("c", 0)]


# ---- SUBS, ADD, UNSUBS, VIEW --------------------------------------------------------------------


def test_subs_replaces_add_adds_and_merges_fields_unsubs_removes() -> None:
    rig = Rig()
    session = logged_in(rig)
    item = rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL,MSFT", fields="0,1,2")
    assert item["content"] == {"code": 0, "msg": "SUBS command succeeded"}
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="GOOG", fields="0,3")
    sub = session.subs["LEVELONE_EQUITIES"]
    assert list(sub.keys) == ["GOOG"] and sub.fields == ["3"]
    item = rig.command(session, "LEVELONE_EQUITIES", "ADD", keys="AAPL,GOOG", fields="8,1")
    assert item["content"] == {"code": 0, "msg": "ADD command succeeded"}
    sub = session.subs["LEVELONE_EQUITIES"]
    assert list(sub.keys) == ["GOOG", "AAPL"] and sub.fields == ["1", "3", "8"]
    item = rig.command(session, "LEVELONE_EQUITIES", "UNSUBS", keys="GOOG,NVDA")
    assert item["content"] == {"code": 0, "msg": "UNSUBS command succeeded"}
    assert list(session.subs["LEVELONE_EQUITIES"].keys) == ["AAPL"]
    rig.command(session, "LEVELONE_EQUITIES", "UNSUBS", keys="AAPL")
    assert "LEVELONE_EQUITIES" not in session.subs


def test_add_without_a_subscription_creates_one_whose_data_frames_say_subs() -> None:
    # Real data frames say "SUBS" whatever command subscribed the keys (docs/schwab-api.md §10)
    rig = Rig()
    session = logged_in(rig)
    rig.command(session, "LEVELONE_EQUITIES", "ADD", keys="AAPL", fields="0,1")
    (block,) = data(rig.run(session, 0.1), "LEVELONE_EQUITIES")
    assert block["command"] == "SUBS" and [i["key"] for i in block["content"]] == ["AAPL"]
    rig.command(session, "CHART_FUTURES", "ADD", keys="/ES")
    rig.command(session, "ACCT_ACTIVITY", "SUBS", keys="acct")
    rig.hub.play_order("AAPL", 1, "BUY", 0.0, rig.now)
    blocks = [b for f in rig.run(session, 0.5) for b in f.get("data", [])]
    assert {b["service"] for b in blocks} >= {"LEVELONE_EQUITIES", "ACCT_ACTIVITY"}
    assert {b["command"] for b in blocks} == {"SUBS"}


def test_level_one_is_a_snapshot_first_then_only_changes_and_a_new_subs_starts_over() -> None:
    rig = Rig(rate=10.0, time_scale=60.0)
    session = logged_in(rig)
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL", fields="0,1,2,3,8")
    blocks = data(rig.run(session, 3.0), "LEVELONE_EQUITIES")
    first, rest = blocks[0]["content"][0], [b["content"][0] for b in blocks[1:]]
    assert first["key"] == "AAPL" and first["cusip"] == "037833100"
    assert set(first) == {
        "key",
        "delayed",
        "assetMainType",
        "assetSubType",
        "cusip",
        "1",
        "2",
        "3",
        "8",
    }
    assert rest and all(
        "cusip" not in item and set(item) <= {"key", "1", "2", "3", "8"} for item in rest
    )
    known = {f: first[f] for f in ("1", "2", "3", "8")}
    for item in rest:  # a delta carries exactly the fields whose value changed
        changed = {f: v for f, v in item.items() if f != "key"}
        assert changed and all(known[f] != v for f, v in changed.items()), (known, item)
        known.update(changed)
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL", fields="0,1")
    again = data(rig.run(session, 0.2), "LEVELONE_EQUITIES")[0]["content"][0]
    assert "cusip" in again


@pytest.mark.parametrize(
    "service", ["LEVELONE_EQUITIES", "NASDAQ_BOOK", "CHART_EQUITY", "SCREENER_EQUITY"]
)
def test_no_data_for_a_key_in_any_frame_after_its_unsubs_answer(service: str) -> None:
    rig = Rig(rate=50.0, book_interval=0.05, time_scale=120.0)
    session = logged_in(rig)
    keys = "NASDAQ_VOLUME_0,NASDAQ_TRADES_0" if service == "SCREENER_EQUITY" else "AAPL,MSFT"
    kept, gone = keys.split(",")
    rig.command(session, service, "SUBS", keys=keys)
    before = [i["key"] for b in data(rig.run(session, 3.0), service) for i in b["content"]]
    assert gone in before
    session.receive(json.dumps({"requests": [request(service, "UNSUBS", keys=gone)]}), rig.now)
    frames = drain(session) + rig.run(session, 3.0)
    (answer,) = [f for f in frames if "response" in f]
    assert answer["response"][0]["content"] == {"code": 0, "msg": "UNSUBS command succeeded"}
    after = frames[frames.index(answer) + 1 :]
    keys_after = [i["key"] for b in data(after, service) for i in b["content"]]
    assert kept in keys_after and gone not in keys_after


def test_stats_count_the_commands_by_kind() -> None:
    rig = Rig()
    session = logged_in(rig)
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    rig.command(session, "LEVELONE_EQUITIES", "ADD", keys="MSFT")
    rig.command(session, "LEVELONE_EQUITIES", "ADD", keys="GOOG")
    rig.command(session, "LEVELONE_EQUITIES", "VIEW", fields="0,1")
    rig.command(session, "LEVELONE_EQUITIES", "UNSUBS", keys="MSFT")
    rig.command(session, "LEVELONE_EQUITIES", "FROB", keys="MSFT")
    rig.command(session, "ADMIN", "LOGOUT")
    assert rig.state.commands == {
        "LOGIN": 1,
        "SUBS": 1,
        "ADD": 2,
        "VIEW": 1,
        "UNSUBS": 1,
        "other": 1,
        "LOGOUT": 1,
    }


def test_add_snapshots_only_the_new_key() -> None:
    rig = Rig(rate=10.0, time_scale=60.0)
    session = logged_in(rig)
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL", fields="0,1,2,3,8")
    rig.run(session, 0.5)
    rig.command(session, "LEVELONE_EQUITIES", "ADD", keys="MSFT")
    items = [i for b in data(rig.run(session, 2.0), "LEVELONE_EQUITIES") for i in b["content"]]
    msft = [i for i in items if i["key"] == "MSFT"]
    assert "cusip" in msft[0]
    assert all("cusip" not in i for i in items if i["key"] == "AAPL")


def test_view_replaces_the_fields_of_every_key() -> None:
    rig = Rig(rate=10.0, time_scale=60.0)
    session = logged_in(rig)
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL,MSFT", fields="0,1,2")
    rig.run(session, 0.5)
    item = rig.command(session, "LEVELONE_EQUITIES", "VIEW", fields="0,3,8")
    assert item["content"] == {"code": 0, "msg": "VIEW command succeeded"}
    assert session.subs["LEVELONE_EQUITIES"].fields == ["3", "8"]
    items = [i for b in data(rig.run(session, 2.0), "LEVELONE_EQUITIES") for i in b["content"]]
    seen = {f for i in items for f in i if f != "key"}
    assert seen == {"3", "8"}
    assert {i["key"] for i in items} == {"AAPL", "MSFT"}


def test_view_of_an_unsubscribed_service_succeeds_and_subscribes_nothing() -> None:
    rig = Rig()
    session = logged_in(rig)
    assert code(rig.command(session, "LEVELONE_FOREX", "VIEW", fields="0,1")) == 0
    assert session.subs == {}


def test_account_activity_keeps_one_key_and_refuses_add_with_24() -> None:
    rig = Rig()
    session = logged_in(rig)
    rig.command(session, "ACCT_ACTIVITY", "SUBS", keys="Account Activity,second")
    assert list(session.subs["ACCT_ACTIVITY"].keys) == ["Account Activity"]
    item = rig.command(session, "ACCT_ACTIVITY", "ADD", keys="x")
    assert code(item) == 24 and "not supported" in item["content"]["msg"]
    assert list(session.subs["ACCT_ACTIVITY"].keys) == ["Account Activity"]


def test_an_order_plays_on_account_activity_spaced_and_in_sequence() -> None:
    rig = Rig()
    session = logged_in(rig)
    rig.command(session, "ACCT_ACTIVITY", "SUBS", keys="Account Activity")
    kinds, connections = rig.hub.play_order("AAPL", 5, "BUY", 0.5, rig.now)
    assert connections == 1 and kinds[0] == "OrderCreated" and kinds[-1] == "OrderFillCompleted"
    early = data(rig.run(session, 0.4, step=0.1), "ACCT_ACTIVITY")
    assert [i["2"] for b in early for i in b["content"]] == kinds[:1]
    items = [
        i for b in data(rig.run(session, 5.0, step=0.1), "ACCT_ACTIVITY") for i in b["content"]
    ]
    assert [i["2"] for i in items] == kinds[1:]
    assert [i["seq"] for i in items] == list(range(2, len(kinds) + 1))
    assert json.loads(items[-1]["3"])["BaseEvent"]["EventType"] == "OrderFillCompleted"


# ---- data rate and services ---------------------------------------------------------------------


def test_data_frames_come_at_the_configured_rate_with_services_taking_turns() -> None:
    rig = Rig(rate=20.0, book_interval=0.05, time_scale=60.0)
    session = logged_in(rig)
    rig.command(session, "NASDAQ_BOOK", "SUBS", keys="AAPL")
    rig.command(session, "LEVELONE_FOREX", "SUBS", keys="EUR/USD")
    frames = [f for f in rig.run(session, 2.0) if "data" in f]
    assert 38 <= len(frames) <= 41
    services = [f["data"][0]["service"] for f in frames]
    assert services[:4] == ["NASDAQ_BOOK", "LEVELONE_FOREX", "NASDAQ_BOOK", "LEVELONE_FOREX"]


def test_a_key_of_the_wrong_kind_gets_no_data_and_no_error() -> None:
    rig = Rig(rate=10.0)
    session = logged_in(rig)
    assert code(rig.command(session, "LEVELONE_OPTIONS", "SUBS", keys="AAPL")) == 0
    assert data(rig.run(session, 1.0), "LEVELONE_OPTIONS") == []


# ---- idle timeout (code 30) ---------------------------------------------------------------------


def test_no_subscription_for_idle_timeout_after_login_is_code_30_then_close() -> None:
    rig = Rig(idle_timeout=30.0, heartbeat_interval=100.0)
    session = logged_in(rig)
    assert notices(rig.run(session, 29.9, step=0.1)) == []
    frames = rig.run(session, 0.2, step=0.1)
    assert notices(frames) == [30]
    (notice,) = [f["notify"][0] for f in frames if "service" in f.get("notify", [{}])[0]]
    assert notice["service"] == "ADMIN" and notice["content"]["msg"] == CODE_MESSAGES[30]
    assert session.closing


def test_being_subscribed_holds_off_code_30_and_the_last_unsubs_restarts_the_clock() -> None:
    rig = Rig(idle_timeout=5.0, heartbeat_interval=100.0)
    session = logged_in(rig)
    rig.run(session, 4.0, step=0.5)
    rig.command(session, "CHART_EQUITY", "SUBS", keys="AAPL")
    assert notices(rig.run(session, 20.0, step=0.5)) == []
    rig.command(session, "CHART_EQUITY", "UNSUBS", keys="AAPL")
    assert notices(rig.run(session, 4.5, step=0.5)) == []
    assert notices(rig.run(session, 1.0, step=0.5)) == [30]


def test_a_refused_subscription_leaves_the_idle_clock_running() -> None:
    rig = Rig(idle_timeout=5.0, heartbeat_interval=100.0)
    session = logged_in(rig)
    rig.run(session, 3.0, step=0.5)
    rig.command(session, "NEWS", "SUBS", keys="AAPL")  # code 11: nothing subscribed
    assert notices(rig.run(session, 2.5, step=0.5)) == [30]


# ---- takeover and faults ------------------------------------------------------------------------


def test_a_second_login_takes_over_the_first_with_code_12() -> None:
    rig = Rig()
    older = logged_in(rig)
    rig.command(older, "LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    newer = rig.session()
    assert code(rig.login(newer)) == 0
    assert notices(drain(older)) == [12] and older.closing
    assert not newer.closing and rig.hub.active[SIM_CUSTOMER_ID] is newer
    assert rig.state.stats["takeovers"] == 1
    rig.hub.on_close(older)
    assert rig.hub.active[SIM_CUSTOMER_ID] is newer  # the old one closing does not log out the new


def test_a_second_login_on_the_same_connection_is_no_takeover() -> None:
    rig = Rig()
    session = logged_in(rig)
    assert code(rig.login(session)) == 0
    assert not session.closing and rig.state.stats["takeovers"] == 0


def test_an_armed_code_answers_the_next_matching_command_once_without_applying_it() -> None:
    rig = Rig()
    session = logged_in(rig)
    assert rig.hub.apply_code(22) == 0  # armed: touches no connection now
    assert code(rig.command(session, "LEVELONE_EQUITIES", "ADD", keys="AAPL")) == 0  # not SUBS
    item = rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="MSFT")
    assert item["content"] == {"code": 22, "msg": CODE_MESSAGES[22]}
    assert list(session.subs["LEVELONE_EQUITIES"].keys) == ["AAPL"]
    assert code(rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="MSFT")) == 0


def test_an_armed_success_code_applies_the_command_and_answers_with_it() -> None:
    rig = Rig()
    session = logged_in(rig)
    rig.hub.apply_code(26)
    assert code(rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="MSFT")) == 26
    assert list(session.subs["LEVELONE_EQUITIES"].keys) == ["MSFT"]


def test_code_3_answers_the_login_again_with_3_and_closes() -> None:
    rig = Rig()
    session = rig.session()
    token = rig.token()
    rig.send(session, request("ADMIN", "LOGIN", rid="login-9", Authorization=token))
    assert rig.hub.apply_code(3) == 1
    frames = drain(session)
    (item,) = frames[0]["response"]
    assert (item["command"], item["requestid"], code(item)) == ("LOGIN", "login-9", 3)
    assert session.closing and not rig.state.tokens.is_access_valid(token)


@pytest.mark.parametrize("which", [12, 30])
def test_codes_12_and_30_end_every_logged_in_connection(which: int) -> None:
    rig = Rig()
    one = logged_in(rig)
    waiting = rig.session()  # not logged in: untouched
    assert rig.hub.apply_code(which) == 1
    assert notices(drain(one)) == [which] and one.closing
    assert drain(waiting) == [] and not waiting.closing


def test_silence_sends_nothing_at_all_then_resumes() -> None:
    rig = Rig(heartbeat_interval=0.5, rate=10.0)
    session = logged_in(rig)
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    session.silence(2.0, rig.now)
    assert session.next_wakeup(rig.now) == pytest.approx(rig.now + 2.0)
    assert rig.run(session, 1.9, step=0.1) == []
    frames = rig.run(session, 1.0, step=0.1)
    assert heartbeats(frames) and data(frames, "LEVELONE_EQUITIES")
    assert len(data(frames, "LEVELONE_EQUITIES")) <= 11  # no burst of what silence held back


def test_garbage_is_one_unparsable_frame() -> None:
    rig = Rig()
    session = logged_in(rig)
    session.garbage()
    (frame,) = drain(session)
    assert (
        frame["unparsable"].startswith('{"data":[') and str(int(T0 * 1000)) in frame["unparsable"]
    )
    assert rig.state.stats["garbage_frames"] == 1


def test_replay_holds_each_frame_until_the_client_can_take_it(tmp_path: Path) -> None:
    lines = [
        '{"notify":[{"heartbeat":"1000000000000"}]}',
        '{"data":[{"service":"LEVELONE_EQUITIES","timestamp":1,"command":"SUBS","content":[]}]}',
    ]
    path = tmp_path / "replay.jsonl"
    path.write_text("\n".join(lines) + "\n")
    rig = Rig(replay=path, heartbeat_interval=1.0)
    session = logged_in(rig)
    session.poll(rig.now)
    assert list(session.outbox) == lines[:1]  # byte for byte; no heartbeat of the simulator's own
    session.outbox.clear()
    rig.command(session, "CHART_EQUITY", "SUBS", keys="AAPL")
    assert rig.run(session, 2.0, step=0.1) == []  # another service does not unlock it
    rig.command(session, "LEVELONE_EQUITIES", "SUBS", keys="AAPL")
    session.poll(rig.now)
    assert list(session.outbox)[:1] == lines[1:]
    session.outbox.clear()
    assert len(heartbeats(rig.run(session, 2.05, step=0.1))) == 2  # the file is done: heartbeats
