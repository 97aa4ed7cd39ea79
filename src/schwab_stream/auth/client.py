"""SchwabAuthClient: code exchange, refresh and userPreference, with Schwab's failure modes handled.

Why not authlib: the failures users hit (schwab-py#222, #231, #94) are all in the token
lifecycle, not the HTTP. Here the access token is refreshed ahead of expiry and at once on a 401,
one refresh happens at a time per process (asyncio lock) and per machine (file lock, re-read after
taking it), a token written by `schwab-stream login` is picked up without a restart, and a dead
refresh token becomes one LoginRequiredError that names the fix.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.backoff import Backoff
from schwab_stream.config import Settings
from schwab_stream.errors import (
    AuthError,
    ConfigError,
    LoginRequiredError,
    TokenFileError,
    TokenStoreUnavailable,
)
from schwab_stream.expiry import (
    ExpiryWarnings,
    format_duration,
    format_when,
    next_warning_in,
    warning_message,
)
from schwab_stream.telemetry.logging import register_secret

log = logging.getLogger(__name__)

#: Upper bound on how long refresh_forever sleeps, so a new token file is noticed promptly.
POLL_INTERVAL = 15.0
#: Longest pause between refresh_forever's attempts while Schwab keeps failing.
MAX_FAILURE_BACKOFF = 60.0

_DEAD_REFRESH_ERRORS = (
    "refresh_token_authentication_error",
    "unsupported_token_type",
    "invalid_client",
    "invalid_grant",
)


@dataclass(frozen=True)
class StreamerInfo:
    """`streamerInfo[0]` of userPreference: where the websocket is and who we are on it."""

    streamer_socket_url: str
    customer_id: str
    correl_id: str
    channel: str
    function_id: str


@dataclass(frozen=True)
class Account:
    account_number: str
    primary: bool
    type: str
    nickname: str
    display_id: str


@dataclass(frozen=True)
class UserPreference:
    streamer: StreamerInfo
    accounts: tuple[Account, ...]
    raw: Mapping[str, Any] = field(repr=False)


def parse_user_preference(body: Any) -> UserPreference:
    """Pick the streamer credentials out of userPreference; only `streamerInfo[0]` matters."""
    infos = body.get("streamerInfo") if isinstance(body, dict) else None
    if not isinstance(infos, list) or not infos or not isinstance(infos[0], dict):
        raise AuthError("userPreference answered without streamerInfo: the app cannot stream")
    info = infos[0]
    try:
        streamer = StreamerInfo(
            streamer_socket_url=str(info["streamerSocketUrl"]),
            customer_id=str(info["schwabClientCustomerId"]),
            correl_id=str(info["schwabClientCorrelId"]),
            channel=str(info["schwabClientChannel"]),
            function_id=str(info["schwabClientFunctionId"]),
        )
    except KeyError as exc:
        raise AuthError(f"userPreference streamerInfo lacks {exc.args[0]}") from None
    accounts = tuple(
        Account(
            account_number=str(acct.get("accountNumber", "")),
            primary=bool(acct.get("primaryAccount", False)),
            type=str(acct.get("type", "")),
            nickname=str(acct.get("nickName", "")),
            display_id=str(acct.get("displayAcctId", "")),
        )
        for acct in body.get("accounts") or []
        if isinstance(acct, dict)
    )
    return UserPreference(streamer=streamer, accounts=accounts, raw=body)


def new_state() -> str:
    """A 30-character random OAuth `state`, as authlib makes for schwab-py."""
    return secrets.token_urlsafe(23)[:30]


#: Called as (record, threshold seconds, message) when an expiry warning is logged.
ExpiryWarning = Callable[[TokenRecord, float, str], None]


class SchwabAuthClient:
    """Tokens and REST calls for one Schwab app and one token file.

    `clock` is the wall clock every expiry is judged on (tests pass a fake one); sleeps stay real.
    """

    #: Attempts for one call when Schwab times out, answers 429 or 5xx.
    retry_attempts = 4
    #: First backoff delay in seconds; doubles per attempt, with jitter, up to retry_max_delay.
    retry_base_delay = 0.5
    retry_max_delay = 8.0

    def __init__(
        self,
        settings: Settings,
        store: TokenStore | None = None,
        http: httpx.AsyncClient | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not settings.app_key:
            raise ConfigError("SCHWAB_APP_KEY is not set: put your Schwab app key in .env")
        if not settings.app_secret.get_secret_value():
            raise ConfigError("SCHWAB_APP_SECRET is not set: put your Schwab app secret in .env")
        register_secret(settings.app_secret.get_secret_value())
        self.settings = settings
        self._clock = clock
        self.store = store or TokenStore(settings.resolved_token_path)
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(15.0, connect=10.0))
        self._owns_http = http is None
        self._base = settings.api_base_url.rstrip("/")
        self._record: TokenRecord | None = None
        self._fingerprint: tuple[int, int, int] | None = None
        self._lock = asyncio.Lock()
        self._warnings = ExpiryWarnings()

    def __repr__(self) -> str:
        return f"SchwabAuthClient(api_base_url={self._base!r}, token_path={str(self.store.path)!r})"

    # --- login ----------------------------------------------------------------------------

    def authorize_url(self, state: str) -> str:
        """The URL a person opens to log in; Schwab redirects to the callback with code + state."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.app_key,
                "redirect_uri": self.settings.callback_url,
                "state": state,
            }
        )
        return f"{self._base}/v1/oauth/authorize?{query}"

    async def exchange_code(self, code: str) -> TokenRecord:
        """Trade a login code for tokens and save them; this login starts the 7-day clock."""
        started = self._clock()
        response = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.settings.callback_url,
                "client_id": self.settings.app_key,
            },
            what="code exchange",
        )
        if response.status_code in (400, 401, 403):
            error = _error_code(response)
            hint = (
                "check SCHWAB_APP_KEY and SCHWAB_APP_SECRET"
                if error == "invalid_client"
                else "codes are single-use and live about 30 s: run `schwab-stream login` again "
                "and finish promptly; check SCHWAB_CALLBACK_URL matches the app registration"
            )
            status = f"HTTP {response.status_code} {error}".rstrip()
            raise AuthError(f"Schwab refused the authorization code ({status}): {hint}")
        record = self._record_from(response, started, previous=None, what="code exchange")
        async with self.store.alocked():
            self.store.save(record)
            self._adopt(record)
        log.info("logged in; refresh token valid until %s", format_when(record.refresh_expires_at))
        return record

    # --- tokens ---------------------------------------------------------------------------

    async def access_token(self) -> str:
        """A valid access token, refreshed first when it is within the margin of expiry."""
        record = self._current()
        if self._usable(record):
            return record.access_token
        try:
            return (await self.refresh()).access_token
        except (AuthError, TokenStoreUnavailable) as exc:  # not a dead login: use what is left
            left = record.access_seconds_left(self._clock())
            if left > 0:
                log.warning(
                    "token refresh failed (%s); the current access token has %.0f s left", exc, left
                )
                return record.access_token
            raise

    async def refresh(self, force: bool = False) -> TokenRecord:
        """Refresh unless not needed; `force` after a 401 or streamer code 3.

        Single-flight: a caller that waited while another task or process refreshed gets that
        result and makes no HTTP call of its own.
        """
        seen = self._record.access_token if self._record else None
        async with self._lock:
            current = self._current()
            if seen is not None and current.access_token != seen and self._usable(current):
                return current
            if not force and self._usable(current):
                return current
            async with self.store.alocked():
                on_disk = self._reload()
                if on_disk.access_token != current.access_token and self._usable(on_disk):
                    log.info("another process refreshed the access token; using it")
                    return on_disk
                started = self._clock()
                response = await self._token_request(
                    {"grant_type": "refresh_token", "refresh_token": on_disk.refresh_token},
                    what="token refresh",
                )
                if response.status_code == 401 and _error_code(response) == "invalid_client":
                    # The app's credentials, not the token: a login would not help.
                    raise AuthError(
                        "Schwab refused the app's credentials on a token refresh (HTTP 401 "
                        "invalid_client): check SCHWAB_APP_KEY and SCHWAB_APP_SECRET, then "
                        "restart; the refresh token itself may still be good"
                    )
                if response.status_code in (400, 401):
                    raise LoginRequiredError(
                        _dead_refresh_message(response, on_disk, self._clock())
                    )
                record = self._record_from(
                    response, started, previous=on_disk, what="token refresh"
                )
                self.store.save(record)
                self._adopt(record)
        now = self._clock()
        log.info(
            "access token refreshed; valid for %.0f s, refresh token for %s",
            record.access_seconds_left(now),
            format_duration(record.refresh_seconds_left(now)),
        )
        return record

    async def refresh_forever(
        self,
        on_refresh: Callable[[TokenRecord], None] | None = None,
        on_expiry_warning: ExpiryWarning | None = None,
    ) -> None:
        """Keep the access token fresh ahead of expiry until cancelled.

        Transient failures (network, 429, 5xx, a busy or broken token file) are logged and retried
        with backoff; only a dead refresh token ends it, as LoginRequiredError. `on_refresh` is
        called with every new token, including one another process or `login` wrote;
        `on_expiry_warning` with (record, threshold, message) each time the refresh token's
        expiry warning is logged (48 h, 24 h, 1 h ahead, once each per login).
        """
        announced: str | None = None
        # 4x a call's first delay (2 s), doubling up to a minute
        backoff = Backoff(self.retry_base_delay * 4, MAX_FAILURE_BACKOFF)
        while True:
            try:
                record = self._current()
                if announced is not None and record.access_token != announced:
                    _notify(on_refresh, record)
                announced = record.access_token
                self._warn_refresh_expiry(record, on_expiry_warning)
                now = self._clock()
                wait = record.access_seconds_left(now) - self.settings.token_refresh_margin
                if wait > 0:
                    warning = next_warning_in(record.refresh_seconds_left(now))
                    until = POLL_INTERVAL if warning is None else warning
                    await asyncio.sleep(min(wait, POLL_INTERVAL, until))
                    continue
                record = await self.refresh()
            except LoginRequiredError:
                raise
            except (AuthError, TokenFileError) as exc:
                delay = backoff.next()
                log.warning("background token refresh failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.reset()
            if record.access_token != announced:
                announced = record.access_token
                _notify(on_refresh, record)
            # A margin close to the token's lifetime must not turn this into a busy loop.
            await asyncio.sleep(1.0)

    def token_seconds_left(self) -> tuple[float | None, float | None]:
        """(access, refresh) seconds left, from the record last loaded (no I/O)."""
        if self._record is None:
            return (None, None)
        now = self._clock()
        return (self._record.access_seconds_left(now), self._record.refresh_seconds_left(now))

    # --- REST -----------------------------------------------------------------------------

    async def user_preference(self) -> UserPreference:
        """GET /trader/v1/userPreference; a 401 forces one refresh and one retry."""
        response = await self._get_user_preference()
        if response.status_code == 401:
            log.info("userPreference answered 401; refreshing the access token once")
            await self.refresh(force=True)
            response = await self._get_user_preference()
            if response.status_code == 401:
                raise AuthError(
                    "userPreference answered HTTP 401 even after a token refresh: "
                    "check the Schwab app has the Trader API product"
                )
        if response.status_code != 200:
            raise AuthError(f"userPreference failed with HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise AuthError("userPreference answered with something other than JSON") from None
        return parse_user_preference(body)

    async def _get_user_preference(self) -> httpx.Response:
        token = await self.access_token()
        return await self._send(
            "GET",
            f"{self._base}/trader/v1/userPreference",
            what="userPreference",
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    # --- internals ------------------------------------------------------------------------

    def _usable(self, record: TokenRecord) -> bool:
        return record.access_seconds_left(self._clock()) > self.settings.token_refresh_margin

    def _current(self) -> TokenRecord:
        """The record in memory, re-read when the file changed on disk (e.g. a new login)."""
        fingerprint = self.store.fingerprint()
        if self._record is None or (fingerprint is not None and fingerprint != self._fingerprint):
            return self._reload()
        return self._record

    def _reload(self) -> TokenRecord:
        fingerprint = self.store.fingerprint()
        record = self.store.load()
        _register_tokens(record)
        previous, self._record, self._fingerprint = self._record, record, fingerprint
        if previous is not None and record.login_at != previous.login_at:
            log.info(
                "a new login (%s) was picked up from %s; its refresh token lasts until %s",
                format_when(record.login_at),
                self.store.path,
                format_when(record.refresh_expires_at),
            )
        return record

    def _adopt(self, record: TokenRecord) -> None:
        _register_tokens(record)
        self._record, self._fingerprint = record, self.store.fingerprint()

    def _record_from(
        self,
        response: httpx.Response,
        started: float,
        *,
        previous: TokenRecord | None,
        what: str,
    ) -> TokenRecord:
        if response.status_code != 200:
            error = _error_code(response)
            raise AuthError(f"{what} failed with HTTP {response.status_code} {error}".rstrip())
        try:
            return TokenRecord.from_token_response(response.json(), now=started, previous=previous)
        except ValueError as exc:
            raise AuthError(f"{what}: unexpected token response ({exc})") from None

    async def _token_request(self, form: dict[str, str], *, what: str) -> httpx.Response:
        return await self._send(
            "POST",
            f"{self._base}/v1/oauth/token",
            what=what,
            data=form,
            auth=httpx.BasicAuth(
                self.settings.app_key, self.settings.app_secret.get_secret_value()
            ),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=UTF-8"},
        )

    async def _send(self, method: str, url: str, *, what: str, **kwargs: Any) -> httpx.Response:
        """One HTTP call, retried with exponential backoff and jitter on timeouts, 429 and 5xx."""
        last = ""
        backoff = Backoff(self.retry_base_delay, self.retry_max_delay)
        for attempt in range(1, self.retry_attempts + 1):
            retry_after = 0.0
            try:
                response = await self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                last = type(exc).__name__
            else:
                if response.status_code != 429 and response.status_code < 500:
                    return response
                last = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
            if attempt == self.retry_attempts:
                break
            # Schwab's Retry-After, when it asks for longer, up to the longest backoff
            delay = max(backoff.next(), min(retry_after, self.retry_max_delay))
            log.warning(
                "%s to %s failed (%s); retry %d of %d in %.1f s",
                what,
                urlsplit(url).path,
                last,
                attempt,
                self.retry_attempts - 1,
                delay,
            )
            await asyncio.sleep(delay)
        raise AuthError(f"{what}: Schwab did not answer after {self.retry_attempts} tries ({last})")

    def _warn_refresh_expiry(
        self, record: TokenRecord, on_warning: ExpiryWarning | None = None
    ) -> None:
        """Log once per threshold (48 h, 24 h, 1 h) so a person can log in before streams stop."""
        left = record.refresh_seconds_left(self._clock())
        threshold = self._warnings.due(record.login_at, left)
        if threshold is None:
            return
        message = warning_message(left, record.refresh_expires_at)
        log.warning(message)
        if on_warning is not None:
            try:
                on_warning(record, threshold, message)
            except Exception:
                log.exception("on_expiry_warning callback failed")


def _register_tokens(record: TokenRecord) -> None:
    """Let the log redactor mask these values wherever a library might print them."""
    for value in (record.access_token, record.refresh_token, record.id_token):
        register_secret(value)


def _notify(on_refresh: Callable[[TokenRecord], None] | None, record: TokenRecord) -> None:
    if on_refresh is None:
        return
    try:
        on_refresh(record)
    except Exception:
        log.exception("on_refresh callback failed")


def _error_code(response: httpx.Response) -> str:
    """Schwab's `error` field as a safe identifier (descriptions may echo token digests)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    code = body.get("error") if isinstance(body, dict) else None
    return re.sub(r"[^A-Za-z0-9_.-]", "", str(code))[:64] if code else ""


def _dead_refresh_message(response: httpx.Response, record: TokenRecord, now: float) -> str:
    text = response.text
    reasons = [name for name in _DEAD_REFRESH_ERRORS if name in text]
    reason = ", ".join(reasons) or f"HTTP {response.status_code}"
    if record.refresh_seconds_left(now) <= 0:
        why = f"it expired at {format_when(record.refresh_expires_at)}, 7 days after the login"
    else:
        why = (
            f"it was revoked, most likely by a newer login (this one was at "
            f"{format_when(record.login_at)})"
        )
    return f"Schwab refused the refresh token ({reason}): {why}; run `schwab-stream login`"


def _retry_after(response: httpx.Response) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0
