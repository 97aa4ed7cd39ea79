"""SchwabStreamClient: the one websocket to Schwab's streamer, kept alive for weeks.

I/O lives here and only here: connect, LOGIN, subscribe, read, reconnect. Frames are turned into
events by the sans-I/O `protocol` and `normalize` modules; events go to the publisher, which never
makes the reader wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.errors import (
    AuthError,
    LoginRequiredError,
    ProtocolError,
    StreamStopped,
    TokenFileError,
)
from schwab_stream.publish.redis import TradingEventPublisher
from schwab_stream.stream import protocol
from schwab_stream.stream.normalize import Normalizer

log = logging.getLogger(__name__)

#: Codes after which the same command may simply be sent again (schwab-api.md §2.4).
RETRY_CODES = frozenset({20, 22, 23, 24, 25})
#: A connection that stayed up this long resets the backoff.
STABLE_AFTER_SECONDS = 60.0


class _Reconnect(Exception):
    """End this session and connect again (after backoff unless `immediate`)."""

    def __init__(self, reason: str, kind: str, immediate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # a short, bounded label for the reconnect counter
        self.immediate = immediate


@dataclass
class ClientStats:
    """Plain counters for telemetry; the hot path only touches ints."""

    frames: Counter[str] = field(default_factory=Counter)
    bad_frames: Counter[str] = field(default_factory=Counter)
    reconnects: Counter[str] = field(default_factory=Counter)
    last_message: dict[str, float] = field(default_factory=dict)  # service -> monotonic
    state: str = "starting"
    #: Why a person must log in, while `state` is "login_needed" (the error's words, no secret)
    login_reason: str = ""
    logged_in: bool = False
    subscribed: bool = False


class SchwabStreamClient:
    def __init__(
        self,
        auth: SchwabAuthClient,
        subscriptions: dict[str, list[str]],
        publisher: TradingEventPublisher,
        *,
        watchdog_seconds: float = 45.0,
        command_timeout: float = 10.0,
        reconnect_max_delay: float = 60.0,
        reconnect_base_delay: float = 0.5,
        login_poll_seconds: float = 2.0,
    ) -> None:
        self.auth = auth
        self.desired = {service: list(keys) for service, keys in subscriptions.items() if keys}
        self.publisher = publisher
        self.watchdog_seconds = watchdog_seconds
        self.command_timeout = command_timeout
        self.reconnect_max_delay = reconnect_max_delay
        self.reconnect_base_delay = reconnect_base_delay
        self.login_poll_seconds = login_poll_seconds
        self.normalizer = Normalizer()
        self.stats = ClientStats()
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._creds: protocol.StreamerCreds | None = None
        self._request_id = 0
        self._waiting: dict[str, asyncio.Future[protocol.Response]] = {}
        self._command_lock = asyncio.Lock()
        self._last_rx = time.monotonic()
        self._end_reason: _Reconnect | StreamStopped | None = None
        self._code3 = False

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Stream until `stop()`, reconnecting forever; raises StreamStopped on code 12."""
        attempt = 0
        while not self._stop.is_set():
            started = time.monotonic()
            immediate = False
            try:
                await self._session()
                reason, kind = "connection closed", "closed"
            except (LoginRequiredError, TokenFileError) as exc:
                await self._wait_for_login(exc)
                attempt = 0
                continue
            except _Reconnect as exc:
                reason, kind, immediate = exc.reason, exc.kind, exc.immediate
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                reason, kind = f"{type(exc).__name__}: {exc}", "network"
            except (httpx.HTTPError, AuthError) as exc:
                reason, kind = f"Schwab API: {type(exc).__name__}: {exc}", "api_error"
            self._set_disconnected()
            if self._stop.is_set():
                break
            if time.monotonic() - started > STABLE_AFTER_SECONDS:
                attempt = 0
            attempt += 1
            self.stats.reconnects[kind] += 1
            self._report("disconnected", reason, logging.WARNING)
            delay = 0.0 if immediate else self._backoff(attempt)
            self._report(
                "reconnecting",
                f"attempt {attempt} in {delay:.2f} s",
                logging.INFO,
                attempt=attempt,
                delay=round(delay, 3),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)
        self.stats.state = "stopped"

    async def stop(self) -> None:
        """Log out politely and close; `run()` then returns."""
        self._stop.set()
        ws = self._ws
        if ws is None:
            return
        if self.stats.logged_in and self._creds is not None:
            with contextlib.suppress(TimeoutError, ConnectionClosed, _Reconnect, OSError):
                creds = self._creds
                await asyncio.wait_for(
                    self._send_command(
                        "ADMIN", "LOGOUT", lambda rid: protocol.logout_request(creds, rid)
                    ),
                    2.0,
                )
        await ws.close()

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self.reconnect_max_delay, self.reconnect_base_delay * 2.0 ** (attempt - 1))
        return ceiling * (0.5 + random.random() / 2)

    async def _wait_for_login(self, exc: LoginRequiredError | TokenFileError) -> None:
        """A person must log in: say so once, then wait for `login` to write a new token file
        (polling the file, not Schwab, so a dead token is not hammered)."""
        self.stats.state = "login_needed"
        self.stats.login_reason = str(exc)
        self._report("login_needed", str(exc), logging.ERROR)
        await wait_for_new_login(self.auth.store.path, self._stop, self.login_poll_seconds)
        if not self._stop.is_set():
            self._report("token_refreshed", "a new token file was picked up", logging.INFO)

    # --- one connection ---------------------------------------------------------------------

    async def _session(self) -> None:
        if self._code3:
            self._code3 = False
            await self.auth.refresh(force=True)
        # userPreference first: a 401 there refreshes the token, and LOGIN must get the new one.
        prefs = await self.auth.user_preference()
        token = await self.auth.access_token()
        info = prefs.streamer
        self._creds = protocol.StreamerCreds(
            customer_id=info.customer_id,
            correl_id=info.correl_id,
            channel=info.channel,
            function_id=info.function_id,
        )
        self.stats.state = "connecting"
        self._end_reason = None
        async with websockets.connect(
            info.streamer_socket_url,
            max_size=None,
            compression=None,
            open_timeout=self.command_timeout,
            close_timeout=2.0,
            ping_interval=20.0,
            ping_timeout=20.0,
        ) as ws:
            self._ws = ws
            self._last_rx = time.monotonic()
            self.stats.state = "connected"
            self._report("connected", info.streamer_socket_url, logging.INFO)
            reader = asyncio.create_task(self._read_loop(ws), name="stream-reader")
            watchdog = asyncio.create_task(self._watchdog(ws), name="stream-watchdog")
            try:
                await self._login(token)
                await self._subscribe_all()
                await reader
            finally:
                watchdog.cancel()
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                self._ws = None
        if self._end_reason is not None:
            raise self._end_reason

    async def _login(self, token: str) -> None:
        creds = self._require_creds()
        response = await self._send_command(
            "ADMIN", "LOGIN", lambda rid: protocol.login_request(creds, rid, token)
        )
        if response.code == 3:
            self._code3 = True
            raise _Reconnect(f"login denied (code 3): {response.msg}", "code_3", immediate=True)
        if response.code != 0:
            raise _Reconnect(
                f"login failed (code {response.code}): {response.msg}", f"code_{response.code}"
            )
        self.stats.logged_in = True
        self.stats.state = "logged_in"
        self._report("logged_in", response.msg, logging.INFO)

    async def _subscribe_all(self) -> None:
        if not self.desired:
            self._report(
                "idle",
                "no subscriptions configured: Schwab will close the stream (code 30)",
                logging.WARNING,
            )
            return
        for service, keys in self.desired.items():
            await self._subscribe(service, keys)
        self.stats.subscribed = True
        self.stats.state = "subscribed"
        self._report(
            "subscribed",
            ", ".join(f"{s}={len(k)}" for s, k in self.desired.items()),
            logging.INFO,
            services={s: len(k) for s, k in self.desired.items()},
        )

    async def _subscribe(self, service: str, keys: list[str]) -> None:
        creds = self._require_creds()
        # ACCT_ACTIVITY's key is ours to choose; schwab-py uses the correl id, so do we.
        wire_keys = [creds.correl_id] if service == "ACCT_ACTIVITY" else keys
        self.normalizer.reset(service)
        for attempt in range(1, 4):
            response = await self._send_command(
                service, "SUBS", lambda rid: protocol.subs_request(creds, rid, service, wire_keys)
            )
            code = response.code
            if code == 0:
                return
            if code in RETRY_CODES and attempt < 3:
                log.warning(
                    "%s SUBS got code %d (%s); retrying (%d/3)",
                    service,
                    code,
                    response.msg,
                    attempt,
                )
                await asyncio.sleep(0.2 * attempt)
                continue
            if code == 3:
                self._code3 = True
                raise _Reconnect(
                    f"{service} SUBS denied (code 3): {response.msg}", "code_3", immediate=True
                )
            if code == 12:
                raise StreamStopped(f"another session took over (code 12): {response.msg}")
            state = "symbol_limit" if code == 19 else "subscribe_failed"
            self._report(
                state,
                f"{service} SUBS failed (code {code}): {response.msg}",
                logging.ERROR,
                code=code,
                service=service,
                keys=len(keys),
            )
            return

    def _require_creds(self) -> protocol.StreamerCreds:
        assert self._creds is not None
        return self._creds

    async def _send_command(
        self, service: str, command: str, build: Callable[[str], bytes]
    ) -> protocol.Response:
        """Send one command (built for its request id) and wait for its response: one at a
        time, with a timeout, so a silent server can never hang us (schwab-py#237)."""
        ws = self._ws
        if ws is None:
            raise _Reconnect("not connected", "closed")
        async with self._command_lock:
            self._request_id += 1
            request_id = str(self._request_id)
            future: asyncio.Future[protocol.Response] = asyncio.get_running_loop().create_future()
            self._waiting[request_id] = future
            try:
                await ws.send(build(request_id).decode())
                return await asyncio.wait_for(future, self.command_timeout)
            except TimeoutError:
                raise _Reconnect(
                    f"no response to {service} {command} in {self.command_timeout:.0f} s",
                    "command_timeout",
                ) from None
            finally:
                self._waiting.pop(request_id, None)

    # --- reading ----------------------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        stats = self.stats
        frames = stats.frames
        normalizer = self.normalizer
        submit = self.publisher.submit
        last_message = stats.last_message
        try:
            while True:
                raw = await ws.recv(decode=False)
                now = time.monotonic()
                recv_ns = time.time_ns()
                self._last_rx = now
                try:
                    frame = protocol.decode_frame(raw)
                except ProtocolError as exc:
                    self._bad_frame(exc, raw)
                    continue
                if frame.data:
                    frames["data"] += 1
                    events: list[Any] = []
                    for message in frame.data:
                        last_message[message.service] = now
                        events.extend(normalizer.feed(message, recv_ns))
                    submit(events)
                    for problem in normalizer.new_problems():
                        log.warning("stream data problem (reported once per kind): %s", problem)
                if frame.responses:
                    frames["response"] += 1
                    for response in frame.responses:
                        self._on_response(response)
                if frame.notifies:
                    for notify in frame.notifies:
                        self._on_notify(notify, now)
        except ConnectionClosed as exc:
            if self._end_reason is None and not self._stop.is_set():
                self._end_reason = _Reconnect(f"websocket closed: {exc}", "closed")
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(_Reconnect("connection closed while waiting", "closed"))

    def _bad_frame(self, exc: ProtocolError, raw: bytes | str) -> None:
        kind = str(exc).split(":", 1)[0]
        self.stats.bad_frames[kind] += 1
        if self.stats.bad_frames[kind] == 1:
            log.warning(
                "malformed frame from the streamer (reported once per kind, counted): %s "
                "[%d bytes]",
                exc,
                len(raw),
            )

    def _on_response(self, response: protocol.Response) -> None:
        future = self._waiting.get(response.requestid)
        if future is not None and not future.done():
            future.set_result(response)
            return
        self._on_code(response.code, response.msg, f"{response.service} {response.command}")

    def _on_notify(self, notify: protocol.Notify, now: float) -> None:
        if notify.heartbeat is not None:
            self.stats.frames["heartbeat"] += 1
            self.stats.last_message["heartbeat"] = now
            return
        self.stats.frames["notify"] += 1
        if notify.code is not None:
            self._on_code(notify.code, notify.msg or "", f"{notify.service or 'ADMIN'} notify")

    def _on_code(self, code: int, msg: str, where: str) -> None:
        """Codes that arrive outside a command: log each, and end the session when Schwab does."""
        if code == 0:
            return
        log.warning("streamer code %d from %s: %s", code, where, msg)
        if code == 12:
            self._end_reason = StreamStopped(f"another session took over (code 12): {msg}")
        elif code == 3:
            self._code3 = True
            self._end_reason = _Reconnect(f"login denied (code 3): {msg}", "code_3", immediate=True)
        elif code == 30:
            self._end_reason = _Reconnect(
                f"streaming stopped by Schwab (code 30): {msg}", "code_30"
            )
        else:
            self._report("stream_code", f"{where}: {msg}", logging.WARNING, code=code)

    async def _watchdog(self, ws: ClientConnection) -> None:
        """Silence (no data, no heartbeat) past the threshold means a dead connection."""
        interval = min(1.0, self.watchdog_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            silent = time.monotonic() - self._last_rx
            if silent > self.watchdog_seconds:
                self._end_reason = _Reconnect(
                    f"no data or heartbeat for {silent:.1f} s (watchdog)", "silence"
                )
                ws.transport.abort()
                return

    # --- reporting --------------------------------------------------------------------------

    def _set_disconnected(self) -> None:
        self.stats.logged_in = False
        self.stats.subscribed = False
        self.stats.state = "disconnected"

    def _report(
        self, state: str, detail: str, level: int, code: int | None = None, **info: Any
    ) -> None:
        log.log(level, "%s: %s", state, detail, extra={"state": state, **info})
        self.publisher.status(state, detail, code, **info)


async def wait_for_new_login(path: Path, stop: asyncio.Event, poll: float) -> None:
    """Return when the token file at `path` changes (or `stop` is set)."""

    def stamp() -> tuple[float, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return (st.st_mtime, st.st_size)

    before = stamp()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll)
        now = stamp()
        if now is not None and now != before:
            return
