"""What every streamer connection shares: the market, who is logged in, armed codes, replay.

Schwab allows one streamer per user, so the hub is where a second LOGIN ends the first (code 12);
fault codes armed through the control API wait here for the next matching command on any
connection. The hub makes the sessions and is the `session.Host` they see.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from schwab_stream.sim.codes import ARMABLE, CLIENT_COMMANDS
from schwab_stream.sim.orders import order_life
from schwab_stream.sim.registry import Market
from schwab_stream.sim.replay import ReplayFrame, load_replay
from schwab_stream.sim.services import ACCT_SERVICE
from schwab_stream.sim.session import Session
from schwab_stream.sim.state import SimConfig, SimState


class Hub:
    """What every connection shares: market, who is logged in, armed fault codes, replay.

    `clock` is the wall clock the market clock runs on (tests pass a fake one); envelope
    timestamps and heartbeats carry market time, as every other time the simulator sends.
    """

    def __init__(self, state: SimState, clock: Callable[[], float] = time.time) -> None:
        self.state = state
        self.config: SimConfig = state.config
        start = self.config.market_time
        self.market = Market(
            self.config.seed,
            self.config.time_scale,
            clock,
            start_ms=None if start is None else int(start.timestamp() * 1000),
            hours=self.config.hours,
            gap_rate=self.config.bar_gap_rate,
        )
        self.sessions: set[Session] = set()
        self.active: dict[str, Session] = {}
        self.armed: list[int] = []
        #: Raw frames armed for the answer to a command: (command, frame text), in order
        self.armed_raw: list[tuple[str, str]] = []
        self.replay: list[ReplayFrame] | None = (
            load_replay(self.config.replay) if self.config.replay is not None else None
        )
        self.acct_seq = 0

    def connect(self, now: float) -> Session:
        """A new connection's session, counted among the hub's sessions."""
        session = Session(self, now)
        self.sessions.add(session)
        return session

    def count(self, name: str, n: int = 1) -> None:
        self.state.stats[name] += n

    def count_command(self, command: str) -> None:
        self.state.commands[command if command in CLIENT_COMMANDS else "other"] += 1

    def stamp_ms(self) -> int:
        """What envelope timestamps and heartbeats carry: market time."""
        return self.market.now_ms()

    def access_valid(self, token: str) -> bool:
        return self.state.tokens.is_access_valid(token)

    def next_account_seq(self) -> int:
        """ACCT_ACTIVITY's `seq`: one sequence across all connections."""
        self.acct_seq += 1
        return self.acct_seq

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
        """The first armed code that applies to `command`, disarmed (None if there is none)."""
        for i, code in enumerate(self.armed):
            if command in ARMABLE[code]:
                del self.armed[i]
                return code
        return None

    def take_raw(self, command: str) -> list[str]:
        """The raw frames armed for `command`'s answer, disarmed (each goes out once, just
        before the response to the next such command on any connection)."""
        if not self.armed_raw:
            return []
        taken = [text for armed, text in self.armed_raw if armed == command]
        if taken:
            self.armed_raw = [(armed, text) for armed, text in self.armed_raw if armed != command]
        return taken

    def raw(self, text: str, command: str | None) -> int:
        """Send `text` as one frame to every live connection now, or arm it for the answer to
        the next `command`; returns how many connections it went to now."""
        if command is not None:
            self.armed_raw.append((command, text))
            return 0
        sessions = [s for s in self.sessions if not s.closing]
        for session in sessions:
            session.raw(text)
        return len(sessions)

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
        messages = order_life(self.market, symbol, quantity, side, self.market.now_ms())
        targets = [s for s in self.logged_in() if ACCT_SERVICE in s.subs]
        for session in targets:
            for i, (kind, data) in enumerate(messages):
                session.queue_account(now + i * spacing, kind, data)
        return [kind for kind, _ in messages], len(targets)
