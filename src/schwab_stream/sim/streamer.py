"""The simulator's streamer websocket: Schwab's envelopes, commands, codes, heartbeats and data.

`Session` is the per-connection protocol state machine (sans-I/O: text in, frames out, driven by
`receive` and `poll` with an explicit clock); `Hub` is what connections share (market model,
one-connection-per-user takeover, armed fault codes, replay frames); `_websocket` is the aiohttp
edge that feeds a Session and writes what it produces. Shapes follow ../shared/schwab-api.md
§2.2-2.4 and the real frames in tests/fixtures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from schwab_stream.sim.market import (
    ACCT_SERVICE,
    ALL_SERVICES,
    BOOK_SERVICES,
    CHART_SERVICES,
    FIELD_COUNTS,
    LEVELONE_SERVICES,
    SCREENER_SERVICES,
    Market,
)
from schwab_stream.sim.replay import ReplayFrame, load_replay
from schwab_stream.sim.server import SimState
from schwab_stream.sim.tokens import SIM_ACCOUNT, SIM_CUSTOMER_ID

#: Codes a fault can arm for the next matching command -> the commands it applies to.
ARMABLE: dict[int, frozenset[str]] = {
    9: frozenset({"SUBS", "ADD", "UNSUBS", "VIEW", "LOGOUT"}),
    11: frozenset({"SUBS", "ADD"}),
    19: frozenset({"SUBS", "ADD"}),
    20: frozenset({"SUBS", "ADD", "UNSUBS", "VIEW", "LOGOUT"}),
    21: frozenset({"SUBS", "ADD", "UNSUBS", "VIEW", "LOGOUT"}),
    22: frozenset({"SUBS"}),
    23: frozenset({"UNSUBS"}),
    24: frozenset({"ADD"}),
    25: frozenset({"VIEW"}),
    26: frozenset({"SUBS"}),
    27: frozenset({"UNSUBS"}),
    28: frozenset({"ADD"}),
    29: frozenset({"VIEW"}),
}
#: Codes that act at once on every logged-in connection.
IMMEDIATE_CODES = frozenset({3, 12, 30})
SUCCESS_CODES = frozenset({0, 26, 27, 28, 29})

CODE_MESSAGES: dict[int, str] = {
    3: "Login Denied.: token is invalid or has expired.",
    9: "Unknown failure. Contact TraderAPI@Schwab.com with the SchwabClientCorrelId.",
    11: "Service not available or temporary down.",
    12: "Close connection: a limit of 1 Streamer connection at any given time from a given user.",
    19: "Reached symbol limit.",
    20: "Stream connection not found.",
    21: "Bad command format.",
    22: "SUBS command failed.",
    23: "UNSUBS command failed.",
    24: "ADD command failed.",
    25: "VIEW command failed.",
    30: "Stop streaming due to empty subscription",
}
LOGIN_MSG = "server=s0sim01-1;status=NP"

#: A malformed frame, modelled on a real unparsable one (schwab-py's test fixture).
GARBAGE = (
    '{"data":[{"service":"LEVELONE_FUTURES", "timestamp":%d,"command":"SUBS","content":'
    '[{"key":"/GOOG","delayed":false,"1":\ufffd,"2":\ufffd,"3":\ufffd,"6":"?","7":"?",'
    '"16":"Symbol not found","21":"unavailable","22":"Unknown"}]}]}'
)
#: Generated frames per poll before the writer yields (keeps the reader and timers responsive).
MAX_FRAMES_PER_POLL = 64

_encode = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Sub:
    """One service's subscription on a connection and what was last sent for it."""

    command: str  # the command that created it, echoed in data frames
    fields: list[str]
    keys: dict[str, None] = field(default_factory=dict)  # ordered set
    last: dict[str, dict[str, Any]] = field(default_factory=dict)  # level one: last sent values
    due: dict[str, float] = field(default_factory=dict)  # books, screeners: next snapshot time
    bar_sent: dict[str, int] = field(default_factory=dict)  # charts: start of last bar sent
    cursor: int = 0  # rotation over keys when symbols_per_frame > 0

    def forget(self, key: str) -> None:
        self.last.pop(key, None)
        self.due.pop(key, None)
        self.bar_sent.pop(key, None)


class BadRequest(Exception):
    """A request that gets code 21 (bad command format)."""


class Hub:
    """What every connection shares: market, who is logged in, armed fault codes, replay."""

    def __init__(self, state: SimState) -> None:
        self.state = state
        self.config = state.config
        self.market = Market(self.config.seed, self.config.time_scale)
        self.sessions: set[Session] = set()
        self.active: dict[str, Session] = {}
        self.armed: list[int] = []
        self.replay: list[ReplayFrame] | None = (
            load_replay(self.config.replay) if self.config.replay is not None else None
        )
        self.acct_seq = 0

    def count(self, name: str, n: int = 1) -> None:
        self.state.stats[name] += n

    def logged_in(self) -> list[Session]:
        return [s for s in self.sessions if s.logged_in and not s.closing]

    def on_login(self, session: Session) -> None:
        """One streamer per user: a new LOGIN ends the older connection with code 12."""
        older = self.active.get(session.customer_id)
        if older is not None and older is not session and not older.closing:
            older.end_with_notify(12)
            self.count("takeovers")
        self.active[session.customer_id] = session

    def on_close(self, session: Session) -> None:
        self.sessions.discard(session)
        if self.active.get(session.customer_id) is session:
            del self.active[session.customer_id]

    def take_armed(self, command: str) -> int | None:
        for i, code in enumerate(self.armed):
            if command in ARMABLE[code]:
                del self.armed[i]
                return code
        return None

    def apply_code(self, code: int) -> int:
        """Behave as Schwab does for `code`; returns how many connections it touched now."""
        if code == 3:
            self.state.tokens.expire_access_tokens()
            sessions = self.logged_in()
            for session in sessions:
                session.deny_login()
            return len(sessions)
        if code in (12, 30):
            sessions = self.logged_in()
            for session in sessions:
                session.end_with_notify(code)
            return len(sessions)
        self.armed.append(code)
        return 0

    def play_order(
        self, symbol: str, quantity: int, side: str, spacing: float, now: float
    ) -> tuple[list[str], int]:
        """Queue an order's life (created .. filled) on every ACCT_ACTIVITY subscriber.

        Returns (message types, number of connections it went to)."""
        messages = self.market.order_life(symbol, quantity, side, self.market.now_ms())
        targets = [s for s in self.logged_in() if ACCT_SERVICE in s.subs]
        for session in targets:
            for i, (kind, data) in enumerate(messages):
                session.queue_account(now + i * spacing, kind, data)
        return [kind for kind, _ in messages], len(targets)


class Session:
    """One websocket's protocol state (sans-I/O): frames in via receive(), frames out in outbox."""

    def __init__(self, hub: Hub, now: float) -> None:
        self.hub = hub
        self.config = hub.config
        self.outbox: deque[str] = deque()
        self.closing = False  # the I/O edge closes (with a close frame) once outbox is flushed
        self.logged_in = False
        self.customer_id = ""
        self.correl_id = ""
        self.login_requestid = ""
        self.subs: dict[str, Sub] = {}
        self.idle_deadline: float | None = None
        self.next_heartbeat = math.inf
        self.next_data = now
        self.silence_until = 0.0
        self.round_robin = 0
        self.seq: dict[str, int] = {}
        self.account: deque[tuple[float, str, str]] = deque()
        self.replay_index = 0
        self.replay_at = 0.0
        self.wake: Callable[[], None] = lambda: None  # set by the I/O edge
        hub.sessions.add(self)

    # ---- inbound -------------------------------------------------------------------------

    def receive(self, text: str, now: float) -> None:
        """Handle one client frame: every request in it gets one response item, in order."""
        if self.closing:
            return
        try:
            frame = msgspec.json.decode(text)
        except msgspec.DecodeError:
            frame = None
        requests = frame.get("requests") if isinstance(frame, dict) else None
        if not isinstance(requests, list) or not requests:
            self._respond(
                [self._item("", "", "", 21, 'Bad command format: expected {"requests":[...]}')]
            )
            return
        items = []
        for request in requests:
            items.append(self._handle(request, now))
            if self.closing:
                break
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
            code, message = self._subscription(svc, cmd, params, now)
        except BadRequest as exc:
            return self._item(svc, cmd, rid_text, 21, f"Bad command format: {exc}")
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
        if not isinstance(token, str) or not self.hub.state.tokens.is_access_valid(token):
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

    def _subscription(
        self, svc: str, cmd: str, params: dict[str, Any], now: float
    ) -> tuple[int, str]:
        """Apply SUBS/ADD/UNSUBS/VIEW; returns (code, msg)."""
        if cmd not in ("SUBS", "ADD", "UNSUBS", "VIEW"):
            raise BadRequest(f"unknown command {cmd}")
        raw_fields = params.get("fields")
        fields = self._fields(svc, raw_fields, required=cmd == "VIEW")
        sub = self.subs.get(svc)
        if cmd == "VIEW":
            if sub is not None:
                sub.fields = fields
            return 0, "VIEW command succeeded"
        keys = self._keys(params.get("keys"))
        if svc == ACCT_SERVICE:
            if cmd == "ADD":
                return 24, "ADD command is not supported for ACCT_ACTIVITY; use SUBS"
            keys = keys[:1]
        if cmd == "UNSUBS":
            if sub is not None:
                for key in keys:
                    if key in sub.keys:
                        del sub.keys[key]
                        sub.forget(key)
                if not sub.keys:
                    del self.subs[svc]
            self._update_idle(now)
            return 0, "UNSUBS command succeeded"
        if cmd == "SUBS" or sub is None:
            sub = Sub(cmd, fields)
            self.subs[svc] = sub
        elif raw_fields is not None:
            sub.fields = sorted(set(sub.fields) | set(fields), key=int)
        others = sum(len(s.keys) for name, s in self.subs.items() if name != svc)
        limit = self.config.symbol_limit
        rejected = []
        for key in keys:
            if key in sub.keys:
                continue
            if others + len(sub.keys) >= limit:
                rejected.append(key)
                continue
            sub.keys[key] = None
            if svc in BOOK_SERVICES or svc in SCREENER_SERVICES:
                sub.due[key] = now
        if not sub.keys:
            del self.subs[svc]
        self._update_idle(now)
        if rejected:
            self.hub.count("symbol_limit_hits")
            return 19, (f"Reached symbol limit of {limit}; not subscribed: " + ",".join(rejected))
        return 0, f"{cmd} command succeeded"

    @staticmethod
    def _keys(raw: Any) -> list[str]:
        if not isinstance(raw, str):
            raise BadRequest("parameters.keys must be a comma-separated string")
        keys = list(dict.fromkeys(k.strip() for k in raw.split(",") if k.strip()))
        if not keys:
            raise BadRequest("parameters.keys is empty")
        return keys

    @staticmethod
    def _fields(svc: str, raw: Any, required: bool) -> list[str]:
        """Requested numeric fields, without 0 (the symbol always comes back as `key`)."""
        count = FIELD_COUNTS.get(svc, 0)
        if raw is None and not required:
            return [str(n) for n in range(1, count)]
        if not isinstance(raw, str):
            raise BadRequest("parameters.fields must be a comma-separated string of numbers")
        parts = [p.strip() for p in raw.split(",") if p.strip()]
        if not parts or not all(p.isdigit() for p in parts):
            raise BadRequest(f"bad fields {raw!r}")
        return [str(n) for n in sorted({int(p) for p in parts}) if 0 < n < count]

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
        return {
            "service": svc,
            "command": cmd,
            "requestid": rid,
            "SchwabClientCorrelId": self.correl_id,
            "timestamp": wall_ms(),
            "content": {"code": code, "msg": msg},
        }

    def _respond(self, items: list[dict[str, Any]]) -> None:
        self.outbox.append(_encode({"response": items}).decode())
        self.hub.count("responses")

    def _notify_admin(self, code: int, msg: str) -> None:
        frame = {
            "notify": [
                {"service": "ADMIN", "timestamp": wall_ms(), "content": {"code": code, "msg": msg}}
            ]
        }
        self.outbox.append(_encode(frame).decode())

    def end_with_notify(self, code: int) -> None:
        """Schwab's unsolicited ends (12 takeover, 30 stop streaming): ADMIN notify, then close."""
        self.hub.count(f"code_{code}")
        self._notify_admin(code, CODE_MESSAGES[code])
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
        self.outbox.append(GARBAGE % wall_ms())
        self.hub.count("garbage_frames")
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
            self.outbox.append(f'{{"notify":[{{"heartbeat":"{wall_ms()}"}}]}}')
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
        while self.next_data <= now and produced < MAX_FRAMES_PER_POLL:
            self.next_data += interval
            frame = self._next_data_frame(now)
            if frame is not None:
                self.outbox.append(frame)
                self.hub.count("data_frames")
            produced += 1

    def _heartbeats_on(self) -> bool:
        replay = self.hub.replay
        return replay is None or self.replay_index >= len(replay)

    def _account_frame(self, kind: str, data: str) -> None:
        sub = self.subs[ACCT_SERVICE]
        self.hub.acct_seq += 1
        item = {
            "seq": self.hub.acct_seq,
            "key": next(iter(sub.keys)),
            "1": SIM_ACCOUNT,
            "2": kind,
            "3": data,
        }
        self.outbox.append(self._data(ACCT_SERVICE, sub, [item]))
        self.hub.count("data_frames")

    def _data(self, svc: str, sub: Sub, content: list[dict[str, Any]]) -> str:
        frame = {
            "data": [
                {"service": svc, "timestamp": wall_ms(), "command": sub.command, "content": content}
            ]
        }
        return _encode(frame).decode()

    def _next_data_frame(self, now: float) -> str | None:
        """The next service in round-robin order that has something to send."""
        services = [s for s in self.subs if s != ACCT_SERVICE]
        for _ in range(len(services)):
            svc = services[self.round_robin % len(services)]
            self.round_robin += 1
            content = self._content(svc, self.subs[svc], now)
            if content:
                return self._data(svc, self.subs[svc], content)
        return None

    def _pick(self, sub: Sub) -> list[str]:
        keys = list(sub.keys)
        per_frame = self.config.symbols_per_frame
        if per_frame <= 0 or per_frame >= len(keys):
            return keys
        start = sub.cursor % len(keys)
        sub.cursor = start + per_frame
        return (keys[start:] + keys[:start])[:per_frame]

    def _content(self, svc: str, sub: Sub, now: float) -> list[dict[str, Any]]:
        market = self.hub.market
        now_ms = market.now_ms()
        content: list[dict[str, Any]] = []
        if svc in LEVELONE_SERVICES:
            for key in self._pick(sub):
                inst = market.for_service(svc, key)
                if inst is None:
                    continue
                market.step(inst, now_ms)
                extras, values = market.levelone(svc, inst, now_ms)
                last = sub.last.get(key)
                if last is None:
                    item = {"key": key, **extras}
                    item.update((f, values[f]) for f in sub.fields)
                    sub.last[key] = {f: values[f] for f in sub.fields}
                else:
                    changed = {f: values[f] for f in sub.fields if last.get(f, None) != values[f]}
                    if not changed:
                        continue
                    last.update(changed)
                    item = {"key": key, **changed}
                content.append(item)
        elif svc in BOOK_SERVICES or svc in SCREENER_SERVICES:
            for key in [k for k in sub.keys if sub.due.get(k, 0.0) <= now][: self._limit()]:
                sub.due[key] = now + self.config.book_interval
                if svc in BOOK_SERVICES:
                    inst = market.for_service(svc, key)
                    if inst is None:
                        continue
                    market.step(inst, now_ms)
                    body = market.book(svc, inst, now_ms)
                else:
                    screened = market.screener(svc, key, now_ms)
                    if screened is None:
                        continue
                    body = screened
                item = {"key": key}
                item.update((f, body[f]) for f in sub.fields if f in body)
                content.append(item)
        elif svc in CHART_SERVICES:
            for key in self._pick(sub):
                inst = market.for_service(svc, key)
                if inst is None:
                    continue
                inst.catch_up(now_ms)
                sent = sub.bar_sent.get(key)
                if sent is None:  # bars finished before the subscription are history, not stream
                    sub.bar_sent[key] = inst.bars[-1].start_ms if inst.bars else 0
                    continue
                for bar in inst.bars:
                    if bar.start_ms > sent:
                        seq = self.seq.get(svc, 0)
                        self.seq[svc] = seq + 1
                        values = market.chart_item(svc, bar)
                        item = {"seq": seq, "key": key}
                        item.update((f, values[f]) for f in sub.fields if f in values)
                        content.append(item)
                        sub.bar_sent[key] = bar.start_ms
        return content

    def _limit(self) -> int | None:
        return self.config.symbols_per_frame or None

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


# ---- aiohttp edge ----------------------------------------------------------------------------

HUB_KEY: web.AppKey[Hub] = web.AppKey("sim_streamer_hub", Hub)


class Connection:
    """Binds a Session to one aiohttp websocket: one writer task, wakes, and hard aborts."""

    def __init__(self, ws: web.WebSocketResponse, request: web.Request, session: Session) -> None:
        self.ws = ws
        self.transport = request.transport
        self.session = session
        self.event = asyncio.Event()
        session.wake = self.event.set

    def abort(self) -> None:
        """Drop without a close frame (the network dying under the client)."""
        if self.transport is not None:
            self.transport.abort()

    async def pump(self) -> None:
        """Write what the session produces; a bug in the simulator ends the socket with 1011."""
        try:
            await self._pump()
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("simulator stream failed")
            await self.ws.close(code=1011, message=b"simulator error")

    async def _pump(self) -> None:
        session, ws, stats = self.session, self.ws, self.session.hub.state.stats
        loop = asyncio.get_running_loop()
        while not ws.closed:
            self.event.clear()
            now = loop.time()
            session.poll(now)
            if not session.silenced(now):
                while session.outbox:
                    await ws.send_str(session.outbox.popleft())
                    stats["frames_sent"] += 1
                if session.closing:
                    await ws.close(code=1000, message=b"stream closed by server")
                    return
            delay = session.next_wakeup(loop.time()) - loop.time()
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), None if math.isinf(delay) else delay)


#: The open websocket connections (the control API's faults act on them).
CONNS_KEY = web.AppKey("sim_streamer_connections", list[Connection])


async def _websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    ws = web.WebSocketResponse(timeout=2.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    conn = Connection(ws, request, Session(hub, loop.time()))
    request.app[CONNS_KEY].append(conn)
    hub.count("connections")
    pump = asyncio.create_task(conn.pump())
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                conn.session.receive(msg.data, loop.time())
            elif msg.type is WSMsgType.BINARY:
                conn.session.receive(msg.data.decode("utf-8", "replace"), loop.time())
            conn.event.set()
    finally:
        hub.on_close(conn.session)
        request.app[CONNS_KEY].remove(conn)
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump
    return ws


async def _close_all(app: web.Application) -> None:
    """On shutdown, close streams politely so runner.cleanup() does not wait on them."""
    conns: list[Connection] = app[CONNS_KEY]
    for conn in conns.copy():
        with contextlib.suppress(Exception):
            await conn.ws.close(code=1001, message=b"simulator shutting down")


def setup(app: web.Application, state: SimState) -> None:
    """Register the streamer websocket route (GET /ws) and its shared hub."""
    app[HUB_KEY] = Hub(state)
    app[CONNS_KEY] = []
    app.router.add_get("/ws", _websocket)
    app.on_shutdown.append(_close_all)
