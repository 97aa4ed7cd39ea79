"""SchwabStreamClient: the one websocket to Schwab's streamer, kept alive for weeks.

I/O lives here and only here: connect, LOGIN, subscribe, read, reconnect. Frames are turned into
events by the sans-I/O `protocol` and `normalize` modules, and what a response code means comes
from the `codes` table; events go to an `EventSink` (the Redis publisher), which never makes the
reader wait. The connection state and the reconnect reasons are the enums of `state`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.backoff import Backoff
from schwab_stream.errors import (
    AuthError,
    LoginRequiredError,
    ProtocolError,
    StreamStopped,
    TokenFileError,
    TokenStoreUnavailable,
)
from schwab_stream.sink import EventSink
from schwab_stream.stream import protocol
from schwab_stream.stream.codes import OUTSIDE_COMMAND, CodeAction, action_for
from schwab_stream.stream.normalize import Normalizer
from schwab_stream.stream.protocol import ResponseCode
from schwab_stream.stream.state import ConnectionState, ReconnectReason
from schwab_stream.stream.subscriptions import (
    ACCT_ACTIVITY,
    Answer,
    Command,
    Outcome,
    SubscriptionBook,
    Verb,
)

log = logging.getLogger(__name__)

#: A connection that stayed up this long resets the backoff.
STABLE_AFTER_SECONDS = 60.0
#: Keys named in a refusal's status event and log line (its `info.keys` has the count)
_NAMED_KEYS = 20
#: The largest frame the websocket accepts (its `max_size`). Schwab's largest, a level-one
#: snapshot of hundreds of symbols, is well under 1 MiB; a bigger frame makes websockets close
#: the connection with 1009, which is a reconnect (counted as `frames_bad_total{reason=
#: "too_large"}`), never a frame read into memory without bound.
MAX_FRAME_BYTES = 8 * 1024 * 1024
#: Close code of a frame over `max_size` (RFC 6455 "message too big"), sent by websockets
_CLOSE_TOO_BIG = 1009
#: Longest wait between tries while the token file cannot be used (a full disk, a stuck lock):
#: short, so streaming resumes within seconds of the cause going away.
TOKEN_STORE_RETRY_MAX = 5.0

#: Actions that end the session (see `codes`).
_SESSION_ENDING = frozenset({CodeAction.RELOGIN, CodeAction.STOP, CodeAction.RECONNECT})


class _Reconnect(Exception):
    """End this session and connect again (after backoff unless `immediate`)."""

    def __init__(self, reason: str, kind: ReconnectReason, immediate: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind  # the reconnect counter's label
        self.immediate = immediate


@dataclass
class ClientStats:
    """Plain counters for telemetry; the hot path only touches ints."""

    frames: Counter[str] = field(default_factory=Counter)
    #: Frames we could not decode (`ProtocolError.kind`, `too_large` for one over the size bound,
    #: `internal` for one our code failed on) and items the normalizer could not use
    #: (`problems.Problem`), by kind: the `frames_bad_total` reasons
    bad_frames: Counter[str] = field(default_factory=Counter)
    reconnects: Counter[str] = field(default_factory=Counter)  # by ReconnectReason
    last_message: dict[str, float] = field(default_factory=dict)  # service -> monotonic
    state: ConnectionState = ConnectionState.DISCONNECTED
    #: Why a person must log in, while `state` is LOGIN_NEEDED (the error's words, no secret)
    login_reason: str = ""
    logged_in: bool = False
    subscribed: bool = False


class SchwabStreamClient:
    def __init__(
        self,
        auth: SchwabAuthClient,
        subscriptions: Mapping[str, Iterable[str]],
        sink: EventSink,
        *,
        watchdog_seconds: float = 45.0,
        command_timeout: float = 10.0,
        reconnect_max_delay: float = 60.0,
        reconnect_base_delay: float = 0.5,
        login_poll_seconds: float = 2.0,
        max_frame_bytes: int = MAX_FRAME_BYTES,
    ) -> None:
        self.auth = auth
        #: What is wanted, acknowledged and refused; `want()` changes it while streaming
        self.book = SubscriptionBook(subscriptions)
        self.sink = sink
        self.watchdog_seconds = watchdog_seconds
        self.command_timeout = command_timeout
        self.login_poll_seconds = login_poll_seconds
        self.max_frame_bytes = max_frame_bytes
        self.stats = ClientStats()
        self.normalizer = Normalizer(self.stats.bad_frames, self.book.streaming)
        self.backoff = Backoff(reconnect_base_delay, reconnect_max_delay, jitter=0.5)
        self._stop = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._creds: protocol.StreamerCreds | None = None
        self._request_id = 0
        self._waiting: dict[str, asyncio.Future[protocol.Response]] = {}
        self._command_lock = asyncio.Lock()
        self._last_rx = time.monotonic()
        self._end_reason: _Reconnect | StreamStopped | None = None
        self._code3 = False
        #: Set when the wanted set changes: wakes the subscription loop and an idle client
        self._changed = asyncio.Event()
        #: Set on every subscription answer and connection change (the control plane waits on it)
        self.book_changed = asyncio.Event()
        #: Told of each change of the wanted set (service -> added, removed) before it is sent:
        #: the back-fill holds an added key's bars from its first one
        self.on_change: Callable[[dict[str, tuple[list[str], list[str]]]], None] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def run(self) -> None:
        """Stream until `stop()`, reconnecting forever; raises StreamStopped on code 12."""
        try:
            await self._run()
        finally:
            self._set_disconnected()
            self.stats.state = ConnectionState.STOPPED

    async def _run(self) -> None:
        attempt = 0  # since the last reset, immediate reconnects included (for the reports)
        # The token file cannot be used right now (a full disk, a stuck lock): retried quickly,
        # said once per outage; not a dead login.
        store_retry = Backoff(0.5, TOKEN_STORE_RETRY_MAX, jitter=0.2)
        store_said = False
        while not self._stop.is_set():
            if not self.book.wanted:
                await self._idle()
                continue
            started = time.monotonic()
            immediate = False
            kind: ReconnectReason
            try:
                await self._session()
                reason, kind = "connection closed", ReconnectReason.CLOSED
            except TokenStoreUnavailable as exc:
                await self._token_store_unavailable(exc, store_retry, not store_said)
                store_said = True
                continue
            except (LoginRequiredError, TokenFileError) as exc:
                store_said = False
                await self._wait_for_login(exc)
                attempt = 0
                self.backoff.reset()
                continue
            except _Reconnect as exc:
                reason, kind, immediate = exc.reason, exc.kind, exc.immediate
            except (OSError, ConnectionClosed, InvalidHandshake, InvalidURI, TimeoutError) as exc:
                reason, kind = f"{type(exc).__name__}: {exc}", ReconnectReason.NETWORK
            except (httpx.HTTPError, AuthError) as exc:
                reason, kind = f"Schwab API: {type(exc).__name__}: {exc}", ReconnectReason.API_ERROR
            if store_said:  # this session got past the token file
                store_said = False
                store_retry.reset()
            self._set_disconnected()
            if self._stop.is_set():
                break
            if not self.book.wanted:  # everything was unsubscribed: Schwab closes (code 30)
                self._report("disconnected", reason, logging.INFO)
                continue
            if time.monotonic() - started > STABLE_AFTER_SECONDS:
                attempt = 0
                self.backoff.reset()
            attempt += 1
            self.stats.reconnects[kind] += 1
            self._report("disconnected", reason, logging.WARNING)
            delay = 0.0 if immediate else self.backoff.next()
            self.stats.state = ConnectionState.RECONNECTING
            self._report(
                "reconnecting",
                f"attempt {attempt} in {delay:.2f} s",
                logging.INFO,
                attempt=attempt,
                delay=round(delay, 3),
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    def want(self, wanted: Mapping[str, Iterable[str]]) -> dict[str, tuple[list[str], list[str]]]:
        """Make `wanted` the subscriptions, on the live connection (ADD and UNSUBS of the
        difference) and on every later one; returns service -> (keys added, keys removed)."""
        changes = self.book.set_wanted(wanted)
        if changes:
            if self.on_change is not None:  # before anything is sent for the change
                self.on_change(changes)
            self._changed.set()
        return changes

    async def _idle(self) -> None:
        """Nothing is wanted: Schwab would close a stream without subscriptions (code 30) and
        we would reconnect every 30 s, so say it once and wait for a subscription."""
        self.stats.state = ConnectionState.IDLE
        self._report(
            "idle",
            "nothing to subscribe: waiting for a subscription (settings, or `schwab-stream "
            "subscribe`) before connecting",
            logging.WARNING,
        )
        while not self.book.wanted and not self._stop.is_set():
            self._changed.clear()
            stop = asyncio.ensure_future(self._stop.wait())
            changed = asyncio.ensure_future(self._changed.wait())
            try:
                await asyncio.wait({stop, changed}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                changed.cancel()

    async def stop(self) -> None:
        """Log out politely and close; `run()` then returns."""
        self._stop.set()
        ws = self._ws
        if ws is None:
            return
        if self.stats.logged_in and self._creds is not None:
            with contextlib.suppress(
                TimeoutError, ConnectionClosed, _Reconnect, StreamStopped, OSError
            ):
                creds = self._creds
                await asyncio.wait_for(
                    self._send_command(
                        "ADMIN", "LOGOUT", lambda rid: protocol.logout_request(creds, rid)
                    ),
                    2.0,
                )
        await ws.close()

    async def _token_store_unavailable(
        self, exc: TokenStoreUnavailable, retry: Backoff, say: bool
    ) -> None:
        """The token file or its lock cannot be used now: the tokens may well be fine, so no
        login is needed. Say so once per outage, then try again soon (`retry`), so streaming
        resumes within seconds of the cause going away."""
        self.stats.state = ConnectionState.RECONNECTING
        if say:
            self._report(
                "token_file_unavailable",
                f"{exc.reason}: {exc}; retrying until it is usable again",
                logging.WARNING,
                reason=exc.reason,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), retry.next())

    async def _wait_for_login(self, exc: LoginRequiredError | TokenFileError) -> None:
        """A person must log in: say so once, then wait for `login` to write a new token file
        (polling the file, not Schwab, so a dead token is not hammered)."""
        self.stats.state = ConnectionState.LOGIN_NEEDED
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
        self.stats.state = ConnectionState.CONNECTING
        self._end_reason = None
        async with websockets.connect(
            info.streamer_socket_url,
            max_size=self.max_frame_bytes,
            compression=None,
            open_timeout=self.command_timeout,
            close_timeout=2.0,
            ping_interval=20.0,
            ping_timeout=20.0,
        ) as ws:
            self._ws = ws
            self._last_rx = time.monotonic()
            self.stats.state = ConnectionState.CONNECTED
            self._report("connected", info.streamer_socket_url, logging.INFO)
            reader = asyncio.create_task(self._read_loop(ws), name="stream-reader")
            watchdog = asyncio.create_task(self._watchdog(ws), name="stream-watchdog")
            subscriber: asyncio.Task[None] | None = None
            try:
                await self._login(token)
                subscriber = asyncio.create_task(self._keep_subscribed(), name="subscriber")
                await asyncio.wait({reader, subscriber}, return_when=asyncio.FIRST_COMPLETED)
                if subscriber.done():
                    subscriber.result()  # a code that ends the session, or a command timeout
            finally:
                self.book.disconnected()
                self.book_changed.set()
                watchdog.cancel()
                for task in (reader, subscriber):
                    if task is None:
                        continue
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                self._ws = None
        if self._end_reason is not None:
            raise self._end_reason

    async def _login(self, token: str) -> None:
        creds = self._require_creds()
        response = await self._send_command(
            "ADMIN", "LOGIN", lambda rid: protocol.login_request(creds, rid, token)
        )
        action = action_for(response.code, "LOGIN")
        if action is not CodeAction.OK:
            raise self._session_end(action, response.code, response.msg, "login")
        self.stats.logged_in = True
        self.stats.state = ConnectionState.LOGGED_IN
        self._report("logged_in", response.msg, logging.INFO)

    async def _keep_subscribed(self) -> None:
        """For the whole session: send what the book says, one command at a time, and wait for
        a change or a retry falling due. Ends only by raising (a code that ends the session, a
        command timeout)."""
        self.book.connected()
        said_subscribed = False
        while True:
            await self._subscribe_pending()
            if not said_subscribed and self.book.settled:
                said_subscribed = True
                self._say_subscribed()
            wake = self.book.wake_at()
            timeout = None if wake is None else max(0.0, wake - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
            self._changed.clear()

    async def _subscribe_pending(self) -> None:
        """Send every command the book has for now."""
        creds = self._require_creds()
        while True:
            command = self.book.next_command(time.monotonic())
            if command is None:
                return
            # an added level-one key starts with a snapshot; a removed one's merge state goes
            self.normalizer.reset(command.service, command.keys)
            response = await self._send_command(
                command.service, command.verb, functools.partial(_build, creds, command=command)
            )
            answer = self.book.on_answer(response.code, response.msg, time.monotonic())
            self.book_changed.set()
            self._on_subscription_answer(answer)

    def _on_subscription_answer(self, answer: Answer) -> None:
        command = answer.command
        where = f"{command.service} {command.verb}"
        if answer.outcome is Outcome.APPLIED:
            log.debug("%s %d keys: code %d", where, len(command.keys), answer.code)
        elif answer.outcome is Outcome.RETRYING:
            log.warning("%s got code %d (%s); sending it again", where, answer.code, answer.message)
        elif answer.outcome is Outcome.SESSION_END:
            raise self._session_end(answer.action, answer.code, answer.message, where)
        else:
            self._report_refusal(answer)

    def _report_refusal(self, answer: Answer) -> None:
        command = answer.command
        if command.verb is Verb.UNSUBS:
            state = "unsubscribe_failed"
        elif answer.action is CodeAction.SYMBOL_LIMIT:
            state = "symbol_limit"
        else:
            state = "subscribe_failed"
        named = ",".join(command.keys[:_NAMED_KEYS])
        more = len(command.keys) - _NAMED_KEYS
        named += f" and {more} more" if more > 0 else ""
        retry = self.book.wake_at()
        later = f"; tried again in {retry - time.monotonic():.0f} s" if retry is not None else ""
        self._report(
            state,
            f"{command.service} {command.verb} failed (code {answer.code}): {answer.message} "
            f"[keys: {named}]{later}",
            logging.ERROR,
            code=answer.code,
            service=command.service,
            keys=len(command.keys),
            symbols=list(command.keys[:_NAMED_KEYS]),
        )

    def _say_subscribed(self) -> None:
        self.stats.subscribed = True
        self.stats.state = ConnectionState.SUBSCRIBED
        active = self.book.active_counts()
        refused = self.book.refused_counts()
        detail = ", ".join(f"{s}={n}" for s, n in active.items()) or "nothing acknowledged"
        if refused:
            detail += "; refused: " + ", ".join(f"{s}={n}" for s, n in refused.items())
        info: dict[str, Any] = {"services": active}
        if refused:
            info["refused"] = refused
        self._report("subscribed", detail, logging.INFO, **info)

    def _session_end(
        self, action: CodeAction, code: int, msg: str, what: str
    ) -> _Reconnect | StreamStopped:
        """The exception that ends the session for a code whose action is RELOGIN, STOP or
        RECONNECT (`what` names the command, or "login" for a notice)."""
        if action is CodeAction.STOP:
            return StreamStopped(f"another session took over (code {code}): {msg}", code=code)
        if action is CodeAction.RELOGIN:
            self._code3 = True  # the next session refreshes the access token first
            return _Reconnect(
                f"{what} denied (code {code}): {msg}", ReconnectReason.CODE_3, immediate=True
            )
        if code == ResponseCode.STOP_STREAMING:
            return _Reconnect(
                f"streaming stopped by Schwab (code {code}): {msg}", ReconnectReason.CODE_30
            )
        return _Reconnect(f"{what} failed (code {code}): {msg}", ReconnectReason.LOGIN_FAILED)

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
            raise _Reconnect("not connected", ReconnectReason.CLOSED)
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
                    ReconnectReason.COMMAND_TIMEOUT,
                ) from None
            finally:
                self._waiting.pop(request_id, None)

    # --- reading ----------------------------------------------------------------------------

    async def _read_loop(self, ws: ClientConnection) -> None:
        stats = self.stats
        frames = stats.frames
        normalizer = self.normalizer
        submit = self.sink.submit
        last_message = stats.last_message
        held = self.book.streaming
        try:
            while True:
                raw = await ws.recv(decode=False)
                now = time.monotonic()
                recv_ns = time.time_ns()
                self._last_rx = now
                # Nothing one frame does may end the reader (it would leave a command waiting
                # for an answer no one reads): a frame we cannot read is a ProtocolError, and
                # anything else is a bug of ours, counted as `internal` and the frame skipped.
                try:
                    frame = protocol.decode_frame(raw)
                    if frame.data:
                        frames["data"] += 1
                        events: list[Any] = []
                        for message in frame.data:
                            if message.service in held:  # never a label the server chooses
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
                except ProtocolError as exc:
                    self._bad_frame(exc, raw)
                except Exception as exc:
                    self._bad_frame(
                        ProtocolError(
                            "internal",
                            f"{type(exc).__name__} while handling a frame (a bug: please report)",
                        ),
                        raw,
                    )
        except ConnectionClosed as exc:
            if self._end_reason is None and not self._stop.is_set():
                self._end_reason = self._closed_reason(exc)
        finally:
            # A command still waiting ends with the session's reason (code 12 must not read as
            # a mere closed socket, which would reconnect and fight the other session).
            ended = self._end_reason or _Reconnect(
                "connection closed while waiting", ReconnectReason.CLOSED
            )
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ended)

    def _closed_reason(self, exc: ConnectionClosed) -> _Reconnect:
        """Why the websocket closed; a frame over `max_frame_bytes` (we close with 1009) is
        also a bad frame, `too_large`, logged once."""
        if exc.sent is not None and exc.sent.code == _CLOSE_TOO_BIG:
            self._bad_frame(
                ProtocolError(
                    "too_large", f"a frame over {self.max_frame_bytes} bytes: connection closed"
                ),
                None,
            )
            return _Reconnect(
                f"websocket closed: a frame over {self.max_frame_bytes} bytes (1009)",
                ReconnectReason.CLOSED,
            )
        return _Reconnect(f"websocket closed: {exc}", ReconnectReason.CLOSED)

    def _bad_frame(self, exc: ProtocolError, raw: bytes | str | None) -> None:
        """Count a frame we could not use by its kind; log the first of each kind (its kind
        and size, never its content)."""
        kind = exc.kind
        self.stats.bad_frames[kind] += 1
        if self.stats.bad_frames[kind] == 1:
            log.warning(
                "malformed frame from the streamer (reported once per kind, counted as %s): %s%s",
                kind,
                exc,
                "" if raw is None else f" [{len(raw)} bytes]",
            )

    def _on_response(self, response: protocol.Response) -> None:
        future = self._waiting.get(response.requestid)
        if future is not None and not future.done():
            future.set_result(response)
            return
        # Not the answer to a command we wait for (a late one, after its timeout): no retry.
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
        action = action_for(code, OUTSIDE_COMMAND)
        if action is CodeAction.OK:
            return
        log.warning("streamer code %d from %s: %s", code, where, msg)
        if action in _SESSION_ENDING:
            self._end_reason = self._session_end(action, code, msg, "login")
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
                    f"no data or heartbeat for {silent:.1f} s (watchdog)", ReconnectReason.SILENCE
                )
                ws.transport.abort()
                return

    # --- reporting --------------------------------------------------------------------------

    def _set_disconnected(self) -> None:
        self.stats.logged_in = False
        self.stats.subscribed = False
        self.stats.state = ConnectionState.DISCONNECTED

    def _report(
        self, state: str, detail: str, level: int, code: int | None = None, **info: Any
    ) -> None:
        log.log(level, "%s: %s", state, detail, extra={"state": state, **info})
        self.sink.status(state, detail, code, **info)


def _build(creds: protocol.StreamerCreds, request_id: str, *, command: Command) -> bytes:
    """The request for a book command; ACCT_ACTIVITY's key is ours to choose: schwab-py uses
    the correl id, so do we."""
    keys = [creds.correl_id] if command.service == ACCT_ACTIVITY else command.keys
    if command.verb is Verb.UNSUBS:
        return protocol.unsubs_request(creds, request_id, command.service, keys)
    if command.verb is Verb.ADD:
        return protocol.add_request(creds, request_id, command.service, keys)
    return protocol.subs_request(creds, request_id, command.service, keys)


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
