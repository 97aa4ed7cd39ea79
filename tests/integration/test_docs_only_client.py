"""A client written from Schwab's documentation alone (httpx for OAuth, a raw websocket and json for
the streamer, no project code) logs in to the simulator, subscribes and gets valid data.

Every request below is the one schwab-py/authlib send (docs/schwab-protocol.md §2.1, §3, §5).
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from websockets.sync.client import connect

from schwab_stream.sim.server import SimThread
from tests.conftest import REGULAR_SESSION

APP_KEY = "docs-app-key"
APP_SECRET = "docs-app-secret"
CALLBACK = "https://127.0.0.1:8182"


def oauth_tokens(http: httpx.Client) -> dict[str, Any]:
    """authorize -> callback with code and state -> token exchange (Basic client auth)."""
    state = secrets.token_urlsafe(22)
    answer = http.get(
        "/v1/oauth/authorize",
        params={
            "response_type": "code",
            "client_id": APP_KEY,
            "redirect_uri": CALLBACK,
            "state": state,
        },
    )
    assert answer.status_code in (302, 303)
    redirect = urlsplit(answer.headers["location"])
    assert f"{redirect.scheme}://{redirect.netloc}" == CALLBACK
    query = parse_qs(redirect.query)
    assert query["state"] == [state]
    basic = base64.b64encode(f"{APP_KEY}:{APP_SECRET}".encode()).decode()
    answer = http.post(
        "/v1/oauth/token",
        headers={
            "Authorization": f"Basic {basic}",
            "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
        },
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "redirect_uri": CALLBACK,
        },
    )
    assert answer.status_code == 200, answer.text
    tokens: dict[str, Any] = answer.json()
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 1800
    return tokens


def request(info: dict[str, Any], rid: int, service: str, command: str, **params: str) -> str:
    return json.dumps(
        {
            "requests": [
                {
                    "service": service,
                    "requestid": str(rid),
                    "command": command,
                    "SchwabClientCustomerId": info["schwabClientCustomerId"],
                    "SchwabClientCorrelId": info["schwabClientCorrelId"],
                    "parameters": params,
                }
            ]
        }
    )


def test_docs_only_client_gets_quotes_and_a_nasdaq_book(
    sim_factory: Callable[..., SimThread],
) -> None:
    sim = sim_factory(
        app_key=APP_KEY, app_secret=APP_SECRET, callback_url=CALLBACK, book_interval=0.2
    )
    with httpx.Client(base_url=sim.base_url, follow_redirects=False, timeout=5) as http:
        tokens = oauth_tokens(http)
        prefs = http.get(
            "/trader/v1/userPreference",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        assert prefs.status_code == 200
        info = prefs.json()["streamerInfo"][0]

    with connect(info["streamerSocketUrl"], open_timeout=5) as ws:
        ws.send(
            request(
                info,
                0,
                "ADMIN",
                "LOGIN",
                Authorization=tokens["access_token"],
                SchwabClientChannel=info["schwabClientChannel"],
                SchwabClientFunctionId=info["schwabClientFunctionId"],
            )
        )
        login = json.loads(ws.recv(timeout=5))  # LOGIN must be acknowledged first
        assert login["response"][0]["requestid"] == "0"
        assert login["response"][0]["content"]["code"] == 0
        ws.send(
            request(
                info,
                1,
                "LEVELONE_EQUITIES",
                "SUBS",
                keys="AAPL,MSFT",
                fields=",".join(str(n) for n in range(52)),
            )
        )
        ws.send(request(info, 2, "NASDAQ_BOOK", "SUBS", keys="AAPL", fields="0,1,2,3"))

        responses: dict[str, dict[str, Any]] = {}
        quotes: dict[str, dict[str, Any]] = {}
        books: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while (len(quotes) < 2 or len(books) < 2) and time.monotonic() < deadline:
            frame = json.loads(ws.recv(timeout=5))
            for item in frame.get("response", []):
                responses[item["requestid"]] = item
            for block in frame.get("data", []):
                for item in block["content"]:
                    if block["service"] == "LEVELONE_EQUITIES":
                        quotes.setdefault(item["key"], {}).update(item)  # merge the deltas
                    elif block["service"] == "NASDAQ_BOOK":
                        books.append(item)

    assert [responses[r]["content"]["code"] for r in ("1", "2")] == [0, 0]
    assert login["response"][0]["content"]["msg"].startswith("server=")
    assert set(quotes) == {"AAPL", "MSFT"}
    for key, quote in quotes.items():
        assert quote["assetMainType"] == "EQUITY" and len(quote["cusip"]) == 9
        assert 0 < quote["1"] < quote["2"], key
        assert quote["11"] <= quote["3"] <= quote["10"]
        assert isinstance(quote["8"], int) and quote["8"] > 0
        assert isinstance(quote["15"], str) and quote["15"]
        assert abs(quote["34"] / 1000 - REGULAR_SESSION.timestamp()) < 60  # the market clock
    for book in books:
        assert book["key"] == "AAPL"
        bids, asks = book["2"], book["3"]
        assert bids[0]["0"] < asks[0]["0"]
        assert [b["0"] for b in bids] == sorted((b["0"] for b in bids), reverse=True)
        assert [a["0"] for a in asks] == sorted(a["0"] for a in asks)
        for level in bids + asks:
            assert level["1"] == sum(m["1"] for m in level["3"])
            assert level["2"] == len(level["3"])
