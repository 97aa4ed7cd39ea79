"""The simulator takes every form of request Schwab takes, over a real socket and real HTTP:
a bare LOGIN object, an authorize URL without response_type and state (a code still comes back,
`@` encoded as `%40`), and /sim/stats counts the commands by kind (issues #15 and #16)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from schwab_stream.sim.server import SimThread
from schwab_stream.sim.tokens import SIM_CORREL_ID, SIM_CUSTOMER_ID

from .sim_ws import RawClient


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def authorize(sim: SimThread, **query: str) -> tuple[int, str]:
    """GET /v1/oauth/authorize; (status, Location) without following the redirect."""
    url = f"{sim.base_url}/v1/oauth/authorize?{urlencode(query)}"
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(url, timeout=5) as answer:
            return answer.status, answer.headers.get("Location", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Location", "")


def test_authorize_without_response_type_and_state_redirects_with_a_code(sim: SimThread) -> None:
    config = sim.config
    status, location = authorize(sim, client_id=config.app_key, redirect_uri=config.callback_url)
    assert status == 302
    query = urlsplit(location).query
    assert query.startswith("code=C0.") and "%40&session=" in query and "state=" not in query
    (code,) = parse_qs(query)["code"]
    assert code.endswith("@")


def test_authorize_still_echoes_state_and_refuses_another_response_type(sim: SimThread) -> None:
    config = sim.config
    base = {"client_id": config.app_key, "redirect_uri": config.callback_url}
    status, location = authorize(sim, response_type="code", state="xyz", **base)
    assert status == 302 and parse_qs(urlsplit(location).query)["state"] == ["xyz"]
    assert authorize(sim, response_type="token", **base)[0] == 400


def test_a_bare_login_object_logs_in_and_add_streams_frames_that_say_subs(sim: SimThread) -> None:
    client = RawClient(sim)
    try:
        token, _ = sim.state.tokens.login()
        login = {
            "service": "ADMIN",
            "command": "LOGIN",
            "requestid": 0,
            "SchwabClientCustomerId": SIM_CUSTOMER_ID,
            "SchwabClientCorrelId": SIM_CORREL_ID,
            "parameters": {
                "Authorization": token,
                "SchwabClientChannel": "N9",
                "SchwabClientFunctionId": "APIAPP",
            },
        }
        client.ws.send(json.dumps(login))
        answer = client.response("0")
        assert answer["content"]["code"] == 0
        client.next_id = 1
        assert client.command("LEVELONE_EQUITIES", "ADD", keys="AAPL")["content"]["code"] == 0
        block = client.data("LEVELONE_EQUITIES")
        assert block["command"] == "SUBS" and block["content"][0]["key"] == "AAPL"
    finally:
        client.close()


def test_stats_count_commands_by_kind(sim_factory: Callable[..., SimThread]) -> None:
    sim = sim_factory(symbol_limit=2)
    client = RawClient(sim)
    try:
        client.login()
        client.command("LEVELONE_EQUITIES", "SUBS", keys="AAPL")
        refused = client.command("LEVELONE_EQUITIES", "ADD", keys="MSFT,GOOG,NVDA")
        assert refused["content"] == {
            "code": 19,
            "msg": "Reached symbol limit of 2; not subscribed: GOOG,NVDA",
        }
        client.command("LEVELONE_EQUITIES", "UNSUBS", keys="MSFT")
        client.command("LEVELONE_EQUITIES", "VIEW", fields="0,1,2")
    finally:
        client.close()
    with urllib.request.urlopen(sim.base_url + "/sim/stats", timeout=5) as answer:  # noqa: S310
        stats = json.loads(answer.read())
    assert stats["commands"] == {"LOGIN": 1, "SUBS": 1, "ADD": 1, "UNSUBS": 1, "VIEW": 1}
    assert stats["symbol_limit_hits"] == 1


@pytest.mark.parametrize("frame", ["[]", '{"requests": []}', '{"hello": 1}'])
def test_what_schwab_refuses_is_still_code_21(sim: SimThread, frame: str) -> None:
    client = RawClient(sim)
    try:
        client.ws.send(frame)
        answer = json.loads(client.ws.recv(timeout=3))
        assert answer["response"][0]["content"]["code"] == 21
    finally:
        client.close()
