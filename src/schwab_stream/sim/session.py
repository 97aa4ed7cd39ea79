"""One streamer connection's protocol state machine, sans-I/O: text in, frames out.

The I/O edge (streamer.py) feeds `receive(text, now)`, calls `poll(now)`, sleeps until
`next_wakeup(now)` and writes `outbox`; `now` is any monotonic clock, so tests drive a session
with a fake one and no sockets. Envelope timestamps come from the host's market clock, which
tests fake too. What connections share (market, takeover, armed codes, replay) is the `Host`.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from schwab_stream.sim import wire
from schwab_stream.sim.codes import CODE_MESSAGES, LOGIN_MSG, SUCCESS_CODES
from schwab_stream.sim.feed import Feed
from schwab_stream.sim.registry import Market
from schwab_stream.sim.replay import ReplayFrame
from schwab_stream.sim.services import ACCT_SERVICE, ALL_SERVICES
from schwab_stream.sim.state import SimConfig
from schwab_stream.sim.subscriptions import BadRequest, Sub, apply
from schwab_stream.sim.tokens import SIM_ACCOUNT, SIM_CUSTOMER_ID

#: Generated frames per poll before the writer yields (keeps the reader and timers responsive).
MAX_FRAMES_PER_POLL = 64
#: New instruments a poll makes before it yields too, after the frame that made them: a host
#: that fell behind while the frames after a bulk ADD made their share each would otherwise make
#: a second's worth of frames, and of new instruments, at once (docs/simulator.md, "Cost").
NEW_INSTRUMENTS_PER_POLL = 8


class Host(Protocol):
    """What a session needs from what all connections share (`hub.Hub` in the server)."""

    @property
    def config(self) -> SimConfig: ...
    @property
    def market(self) -> Market: ...
    @property
    def replay(self) -> list[ReplayFrame] | None: ...
    def count(self, name: str, n: int = 1) -> None: ...
    def count_command(self, command: str) -> None: ...
    def stamp_ms(self) -> int: ...
    def access_valid(self, token: str) -> bool: ...
    def on_login(self, session: Session) -> None: ...
    def take_armed(self, command: str) -> int | None: ...
    def take_raw(self, command: str) -> list[str]: ...
    def next_account_seq(self) -> int: ...


def client_requests(frame: Any) -> list[Any] | None:
    """The requests of a client frame, in every form Schwab takes (None: code 21).

    `{"requests":[...]}` is the documented form; `{"requests":{...}}` and a bare request object
    (`{"service":"ADMIN","command":"LOGIN",...}`, Schwabdev's LOGIN since its first release) are
    accepted by Schwab too (docs/schwab-api.md §10). An empty list or a non-object is refused.
    """
    if not isinstance(frame, dict):
        return None
    if "requests" not in frame:
        return [frame] if frame.keys() & {"service", "command", "requestid"} else None
    requests = frame["requests"]
    if isinstance(requests, dict):
        return [requests]
    return requests if isinstance(requests, list) and requests else None


class Session:
    """One websocket's protocol state (sans-I/O): frames in via receive(), frames out in outbox."""

    def __init__(self, hub: Host, now: float) -> None:
        self.hub = hub
        self.config = hub.config
        self.outbox: deque[str] = deque()
        self.closing = False  # the I/O edge closes (with a close frame) once outbox is flushed
        self.logged_in = False
        self.customer_id = ""
        self.correl_id = ""
        self.login_requestid = ""
        self.subs: dict[str, Sub] = {}
        self.feed = Feed(hub.config, hub.market)
        self.idle_deadline: float | None = None
        self.next_heartbeat = math.inf
        self.next_data = now
        self.silence_until = 0.0
        self.account: deque[tuple[float, str, str]] = deque()
        self.replay_index = 0
        self.replay_at = 0.0
        self.wake: Callable[[], None] = lambda: None  # set by the I/O edge

    # ---- inbound -------------------------------------------------------------------------

    def receive(self, text: str, now: float) -> None:
        """Handle one client frame: every request in it gets one response item, in order."""
        if self.closing:
            return
        try:
            frame = msgspec.json.decode(text)
        except (msgspec.DecodeError, RecursionError):  # nested too deep: a bad command too
            frame = None
        requests = client_requests(frame)
        if requests is None:
            self._respond(
                [self._item("", "", "", 21, 'Bad command format: expected {"requests":[...]}')]
            )
            return
        items = []
        for request in requests:
            items.append(self._handle(request, now))
            if self.closing:
                break
        for item in items:  # raw frames armed for one of these commands go out just before
            for raw in self.hub.take_raw(item["command"]):
                self.raw(raw)
        self._respond(items)

    def _handle(self, req: Any, now: float) -> dict[str, Any]:
        if not isinstance(req, dict):
            return self._item("", "", "", 21, "Bad command format: a request must be an object")
        service, command, rid = req.get("service"), req.get("command"), req.get("requestid")
        correl = req.get("SchwabClientCorrelId")
        if isinstance(correl, str) and not self.logged_in:
            self.correl_id = correl
        rid_text = "" if rid is None or isinstance(rid, (dict, list)) else str(rid)
        svc = service if isinstance(service, str) else ""
        cmd = command if isinstance(command, str) else ""
        if cmd:
            self.hub.count_command(cmd)
        if not svc or not cmd or not rid_text:
            return self._item(
                svc,
                cmd,
                rid_text,
                21,
                "Bad command format: service, command and requestid are required",
            )
        params = req.get("parameters", {})
        if not isinstance(params, dict):
            return self._item(svc, cmd, rid_text, 21, "Bad command format: bad parameters")
        if cmd == "LOGIN":
            return self._login(req, svc, rid_text, params, now)
        if not self.logged_in:
            return self._item(svc, cmd, rid_text, 20, "Stream connection not found: LOGIN first")
        if req.get("SchwabClientCustomerId", self.customer_id) != self.customer_id or (
            isinstance(correl, str) and correl != self.correl_id
        ):
            return self._item(
                svc, cmd, rid_text, 20, "Stream connection not found: customer or correl id changed"
            )
        armed = self.hub.take_armed(cmd)
        if armed is not None and armed not in SUCCESS_CODES:
            message = CODE_MESSAGES[armed]
            if armed == 19:
                message = f"Reached symbol limit; not subscribed: {params.get('keys', '')}"
            return self._item(svc, cmd, rid_text, armed, message)
        if svc == "ADMIN":
            if cmd == "LOGOUT":
                self.hub.count("logouts")
                self.closing = True
                return self._item(svc, cmd, rid_text, 0, "SUCCESS")
            return self._item(svc, cmd, rid_text, 21, f"Bad command format: ADMIN {cmd}")
        if svc not in ALL_SERVICES:
            return self._item(svc, cmd, rid_text, 11, f"{CODE_MESSAGES[11]} ({svc})")
        try:
            code, message = apply(self.subs, svc, cmd, params, now, self.config.symbol_limit)
        except BadRequest as exc:
            return self._item(svc, cmd, rid_text, 21, f"Bad command format: {exc}")
        self._update_idle(now)
        if code == 19:
            self.hub.count("symbol_limit_hits")
        if armed is not None and code == 0:
            code = armed
        return self._item(svc, cmd, rid_text, code, message)

    def _login(
        self, req: dict[str, Any], svc: str, rid: str, params: dict[str, Any], now: float
    ) -> dict[str, Any]:
        if svc != "ADMIN":
            return self._item(
                svc, "LOGIN", rid, 21, "Bad command format: LOGIN is an ADMIN command"
            )
        token = params.get("Authorization")
        customer = req.get("SchwabClientCustomerId")
        self.login_requestid = rid
        if not isinstance(token, str) or not self.hub.access_valid(token):
            self.hub.count("login_denied")
            self.closing = True
            return self._item(svc, "LOGIN", rid, 3, CODE_MESSAGES[3])
        if customer != SIM_CUSTOMER_ID:
            self.hub.count("login_denied")
            self.closing = True
            return self._item(
                svc,
                "LOGIN",
                rid,
                3,
                "Login Denied.: SchwabClientCustomerId does not match the token",
            )
        first = not self.logged_in
        self.logged_in = True
        self.customer_id = customer
        self.hub.count("logins")
        self.hub.on_login(self)
        if first:
            self.next_heartbeat = 0.0  # one right after the LOGIN response, as Schwab does
            self._update_idle(now)
        return self._item(svc, "LOGIN", rid, 0, LOGIN_MSG)

    def _update_idle(self, now: float) -> None:
        """Code 30 comes idle_timeout after the subscriptions last became (or started) empty."""
        if any(sub.keys for sub in self.subs.values()):
            self.idle_deadline = None
        elif self.idle_deadline is None and self.logged_in:
            self.idle_deadline = now + self.config.idle_timeout

    # ---- outbound helpers ----------------------------------------------------------------

    def _item(self, svc: str, cmd: str, rid: str, code: int, msg: str) -> dict[str, Any]:
        if code not in SUCCESS_CODES:
            self.hub.count(f"code_{code}")
        return wire.response_item(svc, cmd, rid, self.correl_id, code, msg, self.hub.stamp_ms())

    def _respond(self, items: list[dict[str, Any]]) -> None:
        self.outbox.append(wire.response_frame(items))
        self.hub.count("responses")

    def end_with_notify(self, code: int) -> None:
        """Schwab's unsolicited ends (12 takeover, 30 stop streaming): ADMIN notify, then close."""
        self.hub.count(f"code_{code}")
        self.outbox.append(wire.admin_notify(code, CODE_MESSAGES[code], self.hub.stamp_ms()))
        self.closing = True
        self.wake()

    def deny_login(self) -> None:
        """Code 3 on a live connection: the LOGIN response a dead token gets, then close."""
        self._respond([self._item("ADMIN", "LOGIN", self.login_requestid, 3, CODE_MESSAGES[3])])
        self.closing = True
        self.wake()

    def silence(self, seconds: float, now: float) -> None:
        self.silence_until = max(self.silence_until, now + seconds)
        self.wake()

    def garbage(self) -> None:
        self.outbox.append(wire.garbage(self.hub.stamp_ms()))
        self.hub.count("garbage_frames")
        self.wake()

    def raw(self, text: str) -> None:
        """Send `text` as one frame, as is (the raw fault: any frame a test can write)."""
        self.outbox.append(text)
        self.hub.count("raw_frames")
        self.wake()

    def queue_account(self, due: float, kind: str, data: str) -> None:
        self.account.append((due, kind, data))
        self.wake()

    def silenced(self, now: float) -> bool:
        return now < self.silence_until

    # ---- timed output --------------------------------------------------------------------

    def next_wakeup(self, now: float) -> float:
        """When poll() next has something to do (the I/O edge sleeps until then or a wake)."""
        if self.silenced(now):
            return self.silence_until
        if self.closing:
            return now
        if not self.logged_in:
            return math.inf
        times = [self.next_heartbeat if self._heartbeats_on() else math.inf]
        if self.idle_deadline is not None:
            times.append(self.idle_deadline)
        if self.account and ACCT_SERVICE in self.subs:
            times.append(self.account[0][0])
        if self.hub.replay is not None:
            if self._replay_ready():
                times.append(self.replay_at)
        elif self.subs:
            times.append(self.next_data)
        return min(times)

    def poll(self, now: float) -> None:
        """Produce whatever is due at `now`: code 30, heartbeats, account activity, data."""
        if self.closing or not self.logged_in or self.silenced(now):
            return
        if self.idle_deadline is not None and now >= self.idle_deadline:
            self.end_with_notify(30)
            return
        if self._heartbeats_on() and now >= self.next_heartbeat:
            self.outbox.append(wire.heartbeat(self.hub.stamp_ms()))
            self.hub.count("heartbeats")
            self.next_heartbeat = now + self.config.heartbeat_interval
        while self.account and self.account[0][0] <= now and ACCT_SERVICE in self.subs:
            _, kind, data = self.account.popleft()
            self._account_frame(kind, data)
        if self.hub.replay is not None:
            self._replay(now)
            return
        if not self.subs:
            self.next_data = now
            return
        if self.next_data < now - 1.0:  # fell behind (silence, slow client): do not burst
            self.next_data = now
        interval = 1.0 / self.config.rate if self.config.rate > 0 else math.inf
        produced = 0
        instruments = self.hub.market.instruments
        known = len(instruments)
        while self.next_data <= now and produced < MAX_FRAMES_PER_POLL:
            self.next_data += interval
            block = self.feed.next_block(self.subs, now)
            if block is not None:
                svc, content = block
                self.outbox.append(self._data(svc, content))
                self.hub.count("data_frames")
            produced += 1
            if len(instruments) - known >= NEW_INSTRUMENTS_PER_POLL:
                break

    def _heartbeats_on(self) -> bool:
        replay = self.hub.replay
        return replay is None or self.replay_index >= len(replay)

    def _account_frame(self, kind: str, data: str) -> None:
        sub = self.subs[ACCT_SERVICE]
        item = {
            "seq": self.hub.next_account_seq(),
            "key": next(iter(sub.keys)),
            "1": SIM_ACCOUNT,
            "2": kind,
            "3": data,
        }
        self.outbox.append(self._data(ACCT_SERVICE, [item]))
        self.hub.count("data_frames")

    def _data(self, svc: str, content: list[dict[str, Any]]) -> str:
        return wire.data_frame(svc, content, self.hub.stamp_ms())

    # ---- replay --------------------------------------------------------------------------

    def _replay_ready(self) -> bool:
        replay = self.hub.replay
        assert replay is not None
        if self.replay_index >= len(replay):
            return False
        services = replay[self.replay_index].services
        return not services or any(s in self.subs for s in services)

    def _replay(self, now: float) -> None:
        """Recorded frames in file order, each once the client can take it (see replay.py)."""
        replay = self.hub.replay
        assert replay is not None
        sent = 0
        while self._replay_ready() and now >= self.replay_at and sent < MAX_FRAMES_PER_POLL:
            frame = replay[self.replay_index]
            self.outbox.append(frame.text)
            self.hub.count("replayed_frames")
            self.replay_index += 1
            sent += 1
            if self.config.replay_pace and self.replay_index < len(replay):
                self.replay_at = now + replay[self.replay_index].gap_after(frame)
