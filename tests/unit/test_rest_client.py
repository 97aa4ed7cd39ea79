"""MarketDataClient against a fake Schwab (httpx.MockTransport) on a fake clock: what it sends,
what it makes of real answers, retries on 5xx, 429 (Retry-After pausing every caller) and network
failures, one token refresh on a 401, no retry on 400/404 or an unreadable answer, and the
counters telemetry reads."""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.config import Settings
from schwab_stream.errors import LoginRequiredError, RestError, RestReason
from schwab_stream.rest.client import MarketDataClient
from tests.unit.test_rest_models import HOURS_OPEN, PRICE_HISTORY_AAPL, QUOTES_AAPL

BASE = "https://api.schwab.test"
OLD, NEW = "old-access-token-xyz", "new-access-token-abc"

Reply = httpx.Response | Exception


class FakeTime:
    """A monotonic clock that only sleeps move; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


class FakeSchwab:
    """Answers market-data GETs from a script (then 200 with `body`), accepts only the current
    access token, and hands out NEW on a refresh."""

    def __init__(self, time_: FakeTime) -> None:
        self.time = time_
        self.token = OLD
        self.script: list[Reply] = []
        self.body = PRICE_HISTORY_AAPL
        self.requests: list[httpx.Request] = []
        self.sent_at: list[float] = []
        self.refreshes = 0
        self.refresh_reply: httpx.Response | None = None
        self.always_401 = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/oauth/token":
            self.refreshes += 1
            if self.refresh_reply is not None:
                return self.refresh_reply
            self.token = NEW
            return httpx.Response(
                200, json={"access_token": NEW, "refresh_token": "r2", "expires_in": 1800}
            )
        self.requests.append(request)
        self.sent_at.append(self.time.now)
        if self.always_401 or request.headers["Authorization"] != f"Bearer {self.token}":
            return httpx.Response(401, json={"errors": [{"status": 401, "title": "Unauthorized"}]})
        if self.script:
            reply = self.script.pop(0)
            if isinstance(reply, Exception):
                raise reply
            return reply
        return httpx.Response(200, content=self.body)


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def schwab(fake_time: FakeTime) -> FakeSchwab:
    return FakeSchwab(fake_time)


@pytest.fixture
def make_client(
    tmp_path: Path, schwab: FakeSchwab, fake_time: FakeTime
) -> Iterator[Callable[..., MarketDataClient]]:
    """A MarketDataClient on a SchwabAuthClient whose token file holds OLD, valid for 20 min."""
    made: list[tuple[SchwabAuthClient, httpx.AsyncClient]] = []
    path = tmp_path / "token.json"
    now = time.time()
    TokenStore(path).save(
        TokenRecord(
            access_token=OLD,
            refresh_token="r1",
            access_expires_at=now + 1200,
            login_at=now,
            refresh_expires_at=now + 86400,
        )
    )
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, app_key="key", app_secret="secret", api_base_url=BASE, token_path=path
    )

    def make(**kwargs: Any) -> MarketDataClient:
        http = httpx.AsyncClient(transport=httpx.MockTransport(schwab))
        auth = SchwabAuthClient(settings, http=http)
        made.append((auth, http))
        kwargs.setdefault("clock", fake_time.clock)
        kwargs.setdefault("sleep", fake_time.sleep)
        return MarketDataClient(auth, http=http, **kwargs)

    yield make


def error_body(status: int, title: str, detail: str = "") -> dict[str, Any]:
    return {"errors": [{"id": "e1", "status": str(status), "title": title, "detail": detail}]}


# --- what it sends and what it reads ------------------------------------------------------------


async def test_price_history_sends_minute_bars_between_two_times(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    client = make_client()
    answer = await client.price_history("AAPL", 1714734000000, 1715903999999)
    assert [c.datetime for c in answer.candles] == [1714734000000, 1715903940000]
    (request,) = schwab.requests
    assert request.url.path == "/marketdata/v1/pricehistory"
    assert dict(request.url.params) == {
        "symbol": "AAPL",
        "periodType": "day",
        "frequencyType": "minute",
        "frequency": "1",
        "startDate": "1714734000000",
        "endDate": "1715903999999",
        "needExtendedHoursData": "true",
    }
    assert request.headers["Authorization"] == f"Bearer {OLD}"
    assert request.headers["Accept"] == "application/json"
    assert len(request.headers["Schwab-Client-CorrelId"]) == 36
    await client.price_history("$SPX", 0, 1, extended=False)
    assert schwab.requests[1].url.params["needExtendedHoursData"] == "false"
    assert schwab.requests[1].url.params["symbol"] == "$SPX"
    assert client.stats.calls == {("price_history", "ok"): 2}


async def test_a_start_after_the_end_is_a_programming_error(
    make_client: Callable[..., MarketDataClient],
) -> None:
    with pytest.raises(ValueError):
        await make_client().price_history("AAPL", 2, 1)


async def test_quotes_in_chunks_with_invalid_symbols_reported_not_raised(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.body = QUOTES_AAPL
    client = make_client(symbols_per_call=2)
    answer = await client.quotes(["AAPL", "^IRX", "AAPL", "MSFT", "/ESZ21"])
    assert [r.url.params["symbols"] for r in schwab.requests] == ["AAPL,^IRX", "MSFT,/ESZ21"]
    assert {r.url.params["fields"] for r in schwab.requests} == {"quote,regular"}
    assert list(answer.quotes) == ["AAPL"]
    assert answer.invalid_symbols == ("^IRX", "/ESZ21", "ESM24.CME", "AMZN  220617C03170000") * 2
    assert answer.missing == ("MSFT",)
    assert client.stats.calls == {("quotes", "ok"): 2}
    assert client.stats.invalid_symbols == 8


async def test_no_symbols_no_request(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    answer = await make_client().quotes([])
    assert (answer.quotes, schwab.requests) == ({}, [])


@pytest.mark.parametrize("fields", [(), ("quote", "greeks")])
async def test_unknown_quote_fields_are_a_programming_error(
    make_client: Callable[..., MarketDataClient], fields: tuple[str, ...]
) -> None:
    with pytest.raises(ValueError):
        await make_client().quotes(["AAPL"], fields=fields)


async def test_market_hours(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.body = HOURS_OPEN
    client = make_client()
    hours = await client.market_hours(["equity", "option"], dt.date(2024, 10, 18))
    assert hours["equity"]["EQ"].is_open
    assert dict(schwab.requests[0].url.params) == {"markets": "equity,option", "date": "2024-10-18"}
    await client.market_hours(["equity"])
    assert dict(schwab.requests[1].url.params) == {"markets": "equity"}
    with pytest.raises(ValueError):
        await client.market_hours(["stocks"])


# --- retries ------------------------------------------------------------------------------------


async def test_5xx_and_network_failures_are_retried_with_backoff(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab, fake_time: FakeTime
) -> None:
    schwab.script = [
        httpx.Response(500, text="<html>Whitelabel Error Page (status=500)</html>"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.DecodingError("garbled gzip"),
    ]
    client = make_client(max_attempts=5)
    answer = await client.price_history("AAPL", 0, 1)
    assert answer.symbol == "AAPL"
    assert len(schwab.requests) == 5
    assert len(fake_time.sleeps) == 4
    assert 0.25 <= fake_time.sleeps[0] <= 0.5 and 1.0 <= fake_time.sleeps[2] <= 2.0
    assert client.stats.retries == {"price_history": 4}
    assert client.stats.calls == {("price_history", "ok"): 1}


async def test_5xx_on_every_attempt_is_a_server_error(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.script = [httpx.Response(503, json=error_body(503, "Service Unavailable"))] * 3
    client = make_client(max_attempts=3)
    with pytest.raises(RestError) as caught:
        await client.price_history("AAPL", 0, 1)
    error = caught.value
    assert (error.reason, error.status, error.attempts, error.transient) == (
        RestReason.SERVER_ERROR,
        503,
        3,
        True,
    )
    assert "HTTP 503 (Service Unavailable)" in str(error)
    assert client.stats.calls == {("price_history", "server_error"): 1}


async def test_network_failure_on_every_attempt(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.script = [httpx.ConnectTimeout("no")] * 2
    with pytest.raises(RestError) as caught:
        await make_client(max_attempts=2).price_history("AAPL", 0, 1)
    assert (caught.value.reason, caught.value.status) == (RestReason.NETWORK, None)
    assert "ConnectTimeout" in str(caught.value)


async def test_429_with_retry_after_waits_that_long(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab, fake_time: FakeTime
) -> None:
    schwab.script = [httpx.Response(429, headers={"Retry-After": "30"})]
    client = make_client()
    await client.price_history("AAPL", 0, 1)
    assert schwab.sent_at[1] - schwab.sent_at[0] == pytest.approx(30.0)
    assert client.stats.rate_limited == 1
    assert client.stats.retries == {"price_history": 1}
    assert client.stats.limiter_waits == 1


async def test_a_retry_after_past_the_cap_is_cut_to_it(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.script = [httpx.Response(429, headers={"Retry-After": "86400"})]
    await make_client(max_retry_after=45.0).price_history("AAPL", 0, 1)
    assert schwab.sent_at[1] - schwab.sent_at[0] == pytest.approx(45.0)


async def test_429_without_retry_after_backs_off(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab, fake_time: FakeTime
) -> None:
    schwab.script = [httpx.Response(429, json={"errors": [{"title": "Too Many Requests"}]})] * 2
    client = make_client()
    await client.price_history("AAPL", 0, 1)
    assert len(schwab.requests) == 3
    assert 0.25 <= schwab.sent_at[1] - schwab.sent_at[0] <= 0.5
    assert 0.5 <= schwab.sent_at[2] - schwab.sent_at[1] <= 1.0


async def test_a_429_pauses_every_caller_even_when_its_own_call_gives_up(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab, fake_time: FakeTime
) -> None:
    schwab.script = [httpx.Response(429, headers={"Retry-After": "30"})]
    client = make_client(max_attempts=1)
    with pytest.raises(RestError) as caught:
        await client.price_history("AAPL", 0, 1)
    assert caught.value.reason is RestReason.RATE_LIMITED
    fake_time.now += 1.0
    await client.quotes(["AAPL"])  # another endpoint, another caller
    assert schwab.sent_at[1] - schwab.sent_at[0] == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (400, RestReason.BAD_REQUEST),
        (404, RestReason.NOT_FOUND),
        (403, RestReason.UNAUTHORIZED),
        (413, RestReason.BAD_REQUEST),
        (302, RestReason.BAD_ANSWER),
    ],
)
async def test_client_errors_are_not_retried(
    make_client: Callable[..., MarketDataClient],
    schwab: FakeSchwab,
    status: int,
    reason: RestReason,
) -> None:
    schwab.script = [httpx.Response(status, json=error_body(status, "Nope", "no such thing"))]
    client = make_client()
    with pytest.raises(RestError) as caught:
        await client.price_history("AAPL", 0, 1)
    assert (caught.value.reason, caught.value.status, caught.value.transient) == (
        reason,
        status,
        False,
    )
    assert len(schwab.requests) == 1
    assert client.stats.calls == {("price_history", reason.value): 1}
    assert client.stats.retries == {}


async def test_schwabs_words_are_kept_short_and_never_carry_the_token(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    detail = f"token {OLD} refused\x1b[31m" + "x" * 500
    schwab.script = [httpx.Response(400, json=error_body(400, "Bad Request", detail))]
    with pytest.raises(RestError) as caught:
        await make_client().quotes(["AAPL"])
    message = str(caught.value)
    assert OLD not in message
    assert "\x1b" not in message
    assert message.startswith("quotes for 1 symbols: HTTP 400 (Bad Request: token *** refused")
    assert len(message) < 300


async def test_a_gateway_fault_is_named(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    fault = {"fault": {"faultstring": "Body buffer overflow", "detail": {"errorcode": "x"}}}
    schwab.script = [httpx.Response(413, json=fault)]
    with pytest.raises(RestError, match=r"HTTP 413 \(Body buffer overflow\)"):
        await make_client().price_history("AAPL", 0, 1)


@pytest.mark.parametrize("body", [b"", b"<html></html>", b'{"candles": null}'])
async def test_an_unreadable_answer_is_a_bad_answer_not_retried(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab, body: bytes
) -> None:
    schwab.body = body
    client = make_client()
    with pytest.raises(RestError) as caught:
        await client.price_history("AAPL", 0, 1)
    assert (caught.value.reason, caught.value.status) == (RestReason.BAD_ANSWER, 200)
    assert str(caught.value).startswith("price history for AAPL: unreadable price history")
    assert len(schwab.requests) == 1
    assert client.stats.calls == {("price_history", "bad_answer"): 1}


# --- 401 ----------------------------------------------------------------------------------------


async def test_a_401_refreshes_the_token_once_and_retries(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.token = "rotated-by-schwab"  # OLD is refused before its expiry
    schwab.script = []
    client = make_client(max_attempts=1)  # the retry after a refresh is not an attempt

    await client.price_history("AAPL", 0, 1)
    assert schwab.refreshes == 1
    assert [r.headers["Authorization"] for r in schwab.requests] == [
        f"Bearer {OLD}",
        f"Bearer {NEW}",
    ]
    assert client.stats.token_refreshes == 1
    assert client.stats.calls == {("price_history", "ok"): 1}


async def test_a_second_401_is_unauthorized(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.always_401 = True
    client = make_client()
    with pytest.raises(RestError) as caught:
        await client.market_hours(["equity"])
    assert (caught.value.reason, caught.value.status) == (RestReason.UNAUTHORIZED, 401)
    assert schwab.refreshes == 1
    assert len(schwab.requests) == 2


async def test_many_401s_at_once_cost_one_refresh(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.token = "rotated-by-schwab"
    client = make_client()
    await asyncio.gather(*(client.price_history(f"S{n}", 0, 1) for n in range(5)))
    assert schwab.refreshes == 1
    assert client.stats.calls == {("price_history", "ok"): 5}


async def test_a_dead_refresh_token_passes_through_as_login_required(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    schwab.token = "rotated-by-schwab"
    schwab.refresh_reply = httpx.Response(
        400,
        json={"error": "invalid_grant", "error_description": "refresh_token_authentication_error"},
    )
    client = make_client()
    with pytest.raises(LoginRequiredError):
        await client.quotes(["AAPL"])
    assert client.stats.calls == {("quotes", "auth"): 1}


# --- the limiter, shared ------------------------------------------------------------------------


class VirtualTime(FakeTime):
    """Concurrent sleepers on one clock: a sleep waits until `drive` moves the clock to its end;
    `drive` does so, earliest first, whenever every task is waiting."""

    def __init__(self) -> None:
        super().__init__()
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, len(self.sleeps), wake))
        await wake

    async def drive(self, work: Awaitable[Any]) -> Any:
        task = asyncio.ensure_future(work)
        while not task.done():
            for _ in range(50):  # let every task run until it sleeps (the fakes never do I/O)
                await asyncio.sleep(0)
            if self._sleepers and not task.done():
                wake_at, _, wake = heapq.heappop(self._sleepers)
                self.now = max(self.now, wake_at)
                wake.set_result(None)
        return task.result()


async def test_concurrent_calls_share_the_limit_first_come_first_served(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    virtual = VirtualTime()
    schwab.time = virtual
    client = make_client(requests_per_minute=60, burst=3, clock=virtual.clock, sleep=virtual.sleep)
    calls = asyncio.gather(*(client.price_history(f"S{n}", 0, 1) for n in range(8)))
    await virtual.drive(calls)
    assert [r.url.params["symbol"] for r in schwab.requests] == [f"S{n}" for n in range(8)]
    first = schwab.sent_at[0]
    assert [t - first for t in schwab.sent_at] == pytest.approx([0, 0, 0, 1, 2, 3, 4, 5])
    assert client.stats.limiter_waits == 5
    assert client.stats.limiter_wait_seconds == pytest.approx(1 + 2 + 3 + 4 + 5)


async def test_a_429_holds_the_calls_already_waiting_for_their_slot(
    make_client: Callable[..., MarketDataClient], schwab: FakeSchwab
) -> None:
    virtual = VirtualTime()
    schwab.time = virtual
    schwab.script = [httpx.Response(429, headers={"Retry-After": "20"})]
    client = make_client(requests_per_minute=60, burst=1, clock=virtual.clock, sleep=virtual.sleep)
    calls = asyncio.gather(*(client.price_history(f"S{n}", 0, 1) for n in range(4)))
    await virtual.drive(calls)
    first = schwab.sent_at[0]
    offsets = [t - first for t in schwab.sent_at]
    # S0 is refused at 0; S1 and S2 had slots at 1 and 2, inside the pause: nobody goes before 20
    assert offsets[0] == 0
    assert min(offsets[1:]) >= 20.0
    assert len(offsets) == 5
    assert client.stats.calls == {("price_history", "ok"): 4}


def test_the_constructor_refuses_nonsense(make_client: Callable[..., MarketDataClient]) -> None:
    for bad in ({"timeout": 0}, {"max_attempts": 0}, {"requests_per_minute": 0}, {"burst": 0}):
        with pytest.raises(ValueError):
            make_client(**bad)


def test_repr_names_no_secret(make_client: Callable[..., MarketDataClient]) -> None:
    text = repr(make_client())
    assert BASE in text and "secret" not in text and OLD not in text
