"""The token lifecycle over real HTTP against the simulator: login (both ways), exchange,
refresh, expiry of either token, 401s, revocation, a newer login, transient failures, broken
files, import."""

from __future__ import annotations

import asyncio
import json
import logging
import stat
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.auth.login import code_from_redirect, login
from schwab_stream.auth.sim_login import ScriptedPerson, approve, login_against_simulator
from schwab_stream.auth.token_store import TokenRecord, TokenStore, import_schwab_py
from schwab_stream.config import Settings
from schwab_stream.embedded_redis import free_port
from schwab_stream.errors import AuthError, ConfigError, LoginRequiredError, TokenFileError
from schwab_stream.sim.server import SimThread
from schwab_stream.sim.tokens import SIM_CHANNEL, SIM_CORREL_ID, SIM_CUSTOMER_ID, SIM_FUNCTION_ID

from .pipeline_helpers import sim_post, sim_stats

MakeSim = Callable[..., SimThread]
MakeSettings = Callable[..., Settings]


class FakeClock:
    """A wall clock that moves only when told: token expiry judged without waiting or racing."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def client_for(settings: Settings, clock: Callable[[], float] = time.time) -> SchwabAuthClient:
    client = SchwabAuthClient(settings, clock=clock)
    client.retry_base_delay = 0.01
    client.retry_max_delay = 0.05
    return client


def secrets_of(sim: SimThread) -> list[str]:
    values = [sim.config.app_secret]
    for grant in sim.state.tokens.grants:
        values.append(grant.refresh_token)
        values.extend(grant.access)
    return values


async def test_browser_login_with_local_https_callback(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    path = tmp_path / "conf" / "token.json"
    settings = auth_settings(sim, path)
    seen: dict[str, object] = {}

    def browser(url: str) -> bool:
        def run() -> None:
            # The lock is not held while the person is at the login page.
            with TokenStore(path).locked(timeout=1):
                seen["lock_free"] = True
            redirect = approve(url)
            forged = redirect.replace("state=", "state=forged")
            # verify=False: the login server's certificate is self-signed, made at run time.
            seen["forged"] = httpx.get(forged, verify=False).status_code  # noqa: S501
            seen["real"] = httpx.get(redirect, verify=False).status_code  # noqa: S501

        threading.Thread(target=run, daemon=True).start()
        return True

    record = await login(settings, open_browser=browser, echo=lambda line: None, timeout=20)
    assert seen == {"lock_free": True, "forged": 400, "real": 200}
    assert TokenStore(path).load() == record
    assert record.login_at == pytest.approx(time.time(), abs=5)
    assert (await sim_stats(sim))["token_exchanges"] == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    client = client_for(settings)
    pref = await client.user_preference()
    await client.aclose()
    assert pref.streamer.streamer_socket_url == sim.state.streamer_url
    assert (pref.streamer.customer_id, pref.streamer.correl_id) == (SIM_CUSTOMER_ID, SIM_CORREL_ID)
    assert (pref.streamer.channel, pref.streamer.function_id) == (SIM_CHANNEL, SIM_FUNCTION_ID)
    assert pref.accounts and pref.accounts[0].primary
    assert record.access_token not in repr(pref) + repr(client)


@pytest.mark.parametrize("path", ["/", "/callback/"])
async def test_a_callback_url_with_a_trailing_slash_logs_in_byte_for_byte(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path, path: str
) -> None:
    """Issue #14 item 8: an app registered with a trailing slash must log in, so the URL goes
    to Schwab (and the simulator, which compares byte for byte like Schwab) exactly as set."""
    sim = oauth_sim(callback_url=f"https://127.0.0.1:{free_port()}{path}")
    settings = auth_settings(sim, tmp_path / "token.json")
    assert settings.callback_url == sim.config.callback_url
    assert f"redirect_uri={quote(sim.config.callback_url, safe='')}" in SchwabAuthClient(
        settings
    ).authorize_url("s")

    def browser(url: str) -> bool:
        def run() -> None:
            httpx.get(approve(url), verify=False)  # noqa: S501 - self-signed at run time

        threading.Thread(target=run, daemon=True).start()
        return True

    record = await login(settings, open_browser=browser, echo=lambda line: None, timeout=20)
    assert TokenStore(settings.token_path).load() == record
    person = ScriptedPerson()  # and the paste-the-URL way
    await login(settings, manual=True, read_line=person.read_line, echo=person.echo)
    assert (await sim_stats(sim))["token_exchanges"] == 2

    # Without its slash the URL is another one: the simulator refuses it, as Schwab does.
    other = auth_settings(sim, tmp_path / "other.json", callback_url=sim.config.callback_url[:-1])
    with pytest.raises(AuthError, match="HTTP 400"):
        await login_against_simulator(other)


async def test_browser_login_times_out_with_a_clear_message(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    with pytest.raises(AuthError, match=r"no login callback.*--manual"):
        await login(settings, open_browser=None, echo=lambda line: None, timeout=0.3)
    assert not (tmp_path / "token.json").exists()


async def test_manual_login_pastes_the_redirect_url(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    person = ScriptedPerson()
    record = await login(settings, manual=True, read_line=person.read_line, echo=person.echo)
    assert "response_type=code" in person.authorize_url()
    assert any("30 s" in line for line in person.shown)
    assert TokenStore(settings.token_path).load() == record
    assert (await sim_stats(sim))["token_exchanges"] == 1


async def test_manual_login_rejects_a_foreign_state(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    person = ScriptedPerson()

    def paste_other() -> str:
        return person.read_line().replace("state=", "state=other")

    with pytest.raises(AuthError, match="state does not match"):
        await login(settings, manual=True, read_line=paste_other, echo=person.echo)
    with pytest.raises(AuthError, match="no code"):
        code_from_redirect("https://127.0.0.1:8182/?state=x", "x")
    with pytest.raises(AuthError, match="no redirect URL"):
        await login(settings, manual=True, read_line=lambda: "", echo=person.echo)
    assert (await sim_stats(sim))["token_exchanges"] == 0
    assert not settings.token_path.exists()


async def test_codes_are_single_use_and_short_lived(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    client = client_for(settings)
    state = "s" * 30
    code = code_from_redirect(approve(client.authorize_url(state)), state)
    assert code.endswith("@")
    await client.exchange_code(code)
    with pytest.raises(AuthError, match=r"refused the authorization code.*invalid_grant"):
        await client.exchange_code(code)
    sim.state.tokens.code_ttl = 0.0
    stale = code_from_redirect(approve(client.authorize_url(state)), state)
    with pytest.raises(AuthError, match="single-use"):
        await client.exchange_code(stale)
    await client.aclose()
    assert (await sim_stats(sim))["token_exchanges"] == 1


async def test_wrong_app_secret_names_the_settings(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json", app_secret="not-the-secret")
    with pytest.raises(AuthError, match=r"invalid_client.*SCHWAB_APP_SECRET") as info:
        await login_against_simulator(settings)
    assert "not-the-secret" not in str(info.value)
    assert not settings.token_path.exists()
    with pytest.raises(ConfigError, match="SCHWAB_APP_KEY"):
        SchwabAuthClient(auth_settings(sim, tmp_path / "t.json", app_key=""))


async def test_a_wrong_app_secret_on_refresh_is_not_a_dead_login(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    """Schwab answers 401 invalid_client to bad app credentials, 400 to a dead refresh token:
    the first must name the settings, not send the person to log in again."""
    sim = oauth_sim()
    good = auth_settings(sim, tmp_path / "token.json")
    await login_against_simulator(good)
    client = client_for(auth_settings(sim, tmp_path / "token.json", app_secret="not-the-secret"))
    with pytest.raises(AuthError, match=r"invalid_client.*SCHWAB_APP_SECRET") as info:
        await client.refresh(force=True)
    assert not isinstance(info.value, LoginRequiredError)
    assert "newer login" not in str(info.value) and "not-the-secret" not in str(info.value)
    await client.aclose()


async def test_refresh_keeps_the_login_clock(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    first = await login_against_simulator(settings)
    client = client_for(settings)
    assert await client.access_token() == first.access_token  # fresh: no refresh
    assert await client.refresh() is not None
    assert (await sim_stats(sim))["token_refreshes"] == 0
    second = await client.refresh(force=True)
    assert second.access_token != first.access_token
    assert second.refresh_token == first.refresh_token
    assert (second.login_at, second.refresh_expires_at) == (
        first.login_at,
        first.refresh_expires_at,
    )
    assert TokenStore(settings.token_path).load() == second
    assert (await sim_stats(sim))["token_refreshes"] == 1
    access_left, refresh_left = client.token_seconds_left()
    assert access_left is not None and 1790 < access_left <= 1800
    assert refresh_left is not None and refresh_left > 6.9 * 86400
    assert sim.state.tokens.is_access_valid(second.access_token)
    await client.aclose()


async def test_access_token_refreshes_within_the_margin_once_for_many_callers(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    # On the client's own clock, so a slow machine cannot make the first call refresh too: access
    # tokens live 1800 s and are refreshed inside the last 300 s.
    sim = oauth_sim(access_ttl=1800.0)
    settings = auth_settings(sim, tmp_path / "token.json", token_refresh_margin=300.0)
    first = await login_against_simulator(settings)
    clock = FakeClock()
    client = client_for(settings, clock)
    assert await client.access_token() == first.access_token
    clock.advance(1400.0)  # 400 s left: outside the margin
    assert await client.access_token() == first.access_token
    assert (await sim_stats(sim))["token_refreshes"] == 0
    clock.advance(200.0)  # 200 s left: inside it
    tokens = await asyncio.gather(*(client.access_token() for _ in range(5)))
    assert len(set(tokens)) == 1 and tokens[0] != first.access_token
    assert (await sim_stats(sim))["token_refreshes"] == 1
    # The new token's life is counted on the same clock: fresh again, no second refresh.
    assert client.token_seconds_left()[0] == pytest.approx(1800.0, abs=1.0)
    assert await client.access_token() == tokens[0]
    assert (await sim_stats(sim))["token_refreshes"] == 1
    await client.aclose()


async def test_expired_access_token_gets_401_then_one_forced_refresh(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    record = await login_against_simulator(settings)
    await sim_post(sim, "/sim/tokens/expire-access")
    assert not sim.state.tokens.is_access_valid(record.access_token)
    client = client_for(settings)
    pref = await client.user_preference()
    assert pref.streamer.customer_id == SIM_CUSTOMER_ID
    assert (await sim_stats(sim))["user_preferences"] == 2
    assert (await sim_stats(sim))["token_refreshes"] == 1
    await client.aclose()


async def test_access_token_past_its_lifetime_is_refreshed_before_use(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    # (a refreshed token lives 2 s: on a loaded machine 0.3 s ran out before it was used)
    sim = oauth_sim(access_ttl=2.0)
    settings = auth_settings(sim, tmp_path / "token.json", token_refresh_margin=0.1)
    record = await login_against_simulator(settings)
    await asyncio.sleep(2.1)
    assert not sim.state.tokens.is_access_valid(record.access_token)
    client = client_for(settings)
    await client.user_preference()
    # refreshed ahead, never sent the dead token
    assert (await sim_stats(sim))["user_preferences"] == 1
    assert (await sim_stats(sim))["token_refreshes"] == 1
    await client.aclose()


async def test_expired_refresh_token_needs_a_login(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim(refresh_ttl=0.3)
    settings = auth_settings(sim, tmp_path / "token.json")
    await login_against_simulator(settings)
    await asyncio.sleep(0.4)
    client = client_for(settings)
    with pytest.raises(LoginRequiredError) as info:
        await client.refresh(force=True)
    message = str(info.value)
    assert "invalid_client" in message and "`schwab-stream login`" in message
    assert "\n" not in message
    assert not any(secret in message for secret in secrets_of(sim))
    await client.aclose()


async def test_revoked_refresh_token_needs_a_login(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    await login_against_simulator(settings)
    await sim_post(sim, "/sim/tokens/revoke")
    client = client_for(settings)
    with pytest.raises(LoginRequiredError, match="refresh_token_authentication_error") as info:
        await client.refresh(force=True)
    assert "schwab-stream login" in str(info.value)
    assert not any(secret in str(info.value) for secret in secrets_of(sim))
    await client.aclose()


async def test_second_login_voids_the_first_and_is_picked_up_without_restart(
    oauth_sim: MakeSim,
    auth_settings: MakeSettings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="schwab_stream")
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    other = auth_settings(sim, tmp_path / "elsewhere" / "token.json")
    first = await login_against_simulator(settings)
    running = client_for(settings)
    assert await running.access_token() == first.access_token

    await login_against_simulator(other)  # another machine logs in: our tokens are void
    assert not sim.state.tokens.is_access_valid(first.access_token)
    with pytest.raises(LoginRequiredError, match="newer login"):
        await running.refresh(force=True)

    second = await login_against_simulator(settings)  # `schwab-stream login` on this machine
    assert not [r for r in caplog.records if "a new login" in r.getMessage()]
    assert await running.access_token() == second.access_token
    picked = [r.getMessage() for r in caplog.records if "a new login" in r.getMessage()]
    assert len(picked) == 1 and str(settings.token_path) in picked[0]  # said, once
    await running.user_preference()
    assert (await sim_stats(sim))["token_refreshes"] == 0
    await running.aclose()


async def test_transient_failures_are_retried_then_reported(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim(access_ttl=10.0)
    settings = auth_settings(sim, tmp_path / "token.json", token_refresh_margin=9.5)
    first = await login_against_simulator(settings)
    clock = FakeClock()
    client = client_for(settings, clock)

    await sim_post(sim, "/sim/tokens/fail-next?status=503&count=2")
    await client.refresh(force=True)
    await sim_post(sim, "/sim/tokens/fail-next?status=429&count=1")
    await client.refresh(force=True)
    assert (await sim_stats(sim))["token_refreshes"] == 2

    await sim_post(sim, "/sim/tokens/fail-next?status=500&count=10")
    with pytest.raises(AuthError, match=r"after 4 tries \(HTTP 500\)"):
        await client.refresh(force=True)
    # Still valid but inside the margin: the refresh fails, the current token is still served.
    clock.advance(0.6)
    current = client.store.load()
    assert current.access_token != first.access_token
    assert await client.access_token() == current.access_token
    await client.aclose()

    dead_port = auth_settings(sim, settings.token_path, api_base_url="http://127.0.0.1:9")
    unreachable = client_for(dead_port)
    with pytest.raises(AuthError, match="ConnectError"):
        await unreachable.refresh(force=True)
    await unreachable.aclose()


async def test_refresh_forever_refreshes_ahead_and_stops_only_for_a_dead_token(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim(access_ttl=1.2)
    settings = auth_settings(sim, tmp_path / "token.json", token_refresh_margin=0.8)
    await login_against_simulator(settings)
    client = client_for(settings)
    refreshed: list[TokenRecord] = []
    task = asyncio.create_task(client.refresh_forever(refreshed.append))
    await asyncio.sleep(0.8)
    # More failures than one call retries: refresh_forever logs, backs off and carries on.
    await sim_post(sim, "/sim/tokens/fail-next?status=503&count=6")
    deadline = time.monotonic() + 5
    while len(refreshed) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert len(refreshed) >= 2 and not task.done()
    assert all(sim.state.tokens.is_access_valid(r.access_token) for r in refreshed[-1:])
    await sim_post(sim, "/sim/tokens/revoke")
    with pytest.raises(LoginRequiredError):
        await asyncio.wait_for(task, 5)
    await client.aclose()


async def test_corrupt_or_missing_file_is_a_clear_error(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    settings = auth_settings(sim, tmp_path / "token.json")
    client = client_for(settings)
    with pytest.raises(LoginRequiredError, match="no token file"):
        await client.access_token()
    settings.token_path.write_text('{"format": "schwab-stream-tok')
    with pytest.raises(TokenFileError, match="corrupt") as info:
        await client.access_token()
    assert str(settings.token_path) in str(info.value)
    assert "schwab-stream login" in str(info.value)
    await client.aclose()


async def test_import_of_a_schwab_py_file_keeps_the_login(
    oauth_sim: MakeSim, auth_settings: MakeSettings, tmp_path: Path
) -> None:
    sim = oauth_sim()
    schwab_py_user = auth_settings(sim, tmp_path / "their.json")
    theirs = await login_against_simulator(schwab_py_user)
    schwab_py_file = tmp_path / "schwab-py-token.json"
    schwab_py_file.write_text(
        json.dumps(
            {
                "creation_timestamp": int(theirs.login_at),
                "token": {
                    "expires_in": 1800,
                    "token_type": "Bearer",
                    "scope": "api",
                    "refresh_token": theirs.refresh_token,
                    "access_token": theirs.access_token,
                    "id_token": theirs.id_token,
                    "expires_at": int(theirs.access_expires_at),
                },
            }
        )
    )
    settings = auth_settings(sim, tmp_path / "ours" / "token.json")
    imported = import_schwab_py(schwab_py_file)
    TokenStore(settings.token_path).save(imported)
    client = client_for(settings)
    await client.user_preference()
    refreshed = await client.refresh(force=True)
    assert refreshed.login_at == int(theirs.login_at)
    assert (await sim_stats(sim))["token_exchanges"] == 1  # no new browser login
    await client.aclose()
