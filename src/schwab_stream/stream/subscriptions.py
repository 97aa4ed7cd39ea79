"""SubscriptionBook: what is wanted on the streamer, what Schwab acknowledged, what it refused, and
which command to send next.

Sans-I/O, like the publisher's core: the stream client tells it about connections and answers
and asks `next_command(now)`; the control plane hands it the wanted set. Every rule with state
lives here:

* A new connection starts from nothing: every wanted key is sent again (what a reconnect
  replays is the wanted set of that moment, never the configuration of start-up).
* A change is the difference between wanted and acknowledged: `ADD` for new keys, `UNSUBS` for
  keys nobody wants any more, never a resubscribe of the others. `SUBS` (which replaces a
  service's whole list) is only sent for a service with nothing acknowledged on the connection,
  and for ACCT_ACTIVITY, which accepts nothing else.
* Commands go one at a time and in chunks of `chunk` keys.
* A transient code (20, 22-25) sends the same command again shortly, `COMMAND_ATTEMPTS` times in
  all. A refusal (19 symbol limit, 9, 11, 21, ...) marks the keys refused: they are tried again
  after a backoff on the same connection, and at once on the next one.
* Data is only used for held keys: `streaming` maps each wanted service to its keys and the
  `recv_ns` of each key's last data (0 until some arrives); the normalizer checks and stamps it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from schwab_stream.backoff import Backoff
from schwab_stream.stream.codes import COMMAND_ATTEMPTS, CodeAction, action_for

#: Keys per command. Schwab documents no limit; Schwabdev says 500 keys per subscription
#: (UNVERIFIED, docs/schwab-protocol.md), so a bigger change goes out in several commands.
CHUNK_KEYS = 500
#: Backoff of a command answered with a transient code (20, 22-25).
TRANSIENT_RETRY_BASE = 0.2
TRANSIENT_RETRY_CAP = 1.0
#: Backoff of refused keys: a symbol limit or an unavailable service may clear later (another
#: program unsubscribes, Schwab recovers), and trying every few minutes costs Schwab nothing.
REFUSED_RETRY_BASE = 5.0
REFUSED_RETRY_CAP = 300.0
#: The one service whose key we choose and which accepts only SUBS and UNSUBS.
ACCT_ACTIVITY = "ACCT_ACTIVITY"


class Verb(StrEnum):
    SUBS = "SUBS"
    ADD = "ADD"
    UNSUBS = "UNSUBS"


class KeyState(StrEnum):
    """Where one wanted key stands on the current connection."""

    #: Wanted; not acknowledged on this connection yet (or not connected)
    PENDING = "pending"
    #: Acknowledged by Schwab
    ACTIVE = "active"
    #: Refused by Schwab; tried again at `retry_at`
    REFUSED = "refused"


class Outcome(StrEnum):
    """What an answer did."""

    #: The change took effect
    APPLIED = "applied"
    #: A transient code: the same command goes again shortly
    RETRYING = "retrying"
    #: Refused: the keys are marked refused (SUBS/ADD) or stay subscribed (UNSUBS)
    REFUSED = "refused"
    #: A code that ends the session (3, 12, 30): the client acts on `Answer.action`
    SESSION_END = "session_end"


@dataclass(frozen=True, slots=True)
class Command:
    service: str
    verb: Verb
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Answer:
    command: Command
    outcome: Outcome
    code: int
    message: str
    action: CodeAction


@dataclass(frozen=True, slots=True)
class Refusal:
    code: int
    message: str
    #: `now` of the refusal and of the next try
    at: float
    retry_at: float


@dataclass(frozen=True, slots=True)
class KeyStatus:
    """One wanted key as `status()` reports it (times are the book's `now` clock)."""

    service: str
    key: str
    state: KeyState
    #: When Schwab acknowledged it on this connection (ACTIVE only)
    active_since: float | None
    #: `recv_ns` of its last data, 0 if none since the bridge started
    last_data_ns: int
    refusal: Refusal | None


@dataclass
class _Service:
    wanted: dict[str, None] = field(default_factory=dict)
    #: Acknowledged on this connection: key -> when
    active: dict[str, float] = field(default_factory=dict)
    refused: dict[str, Refusal] = field(default_factory=dict)
    #: When a refused UNSUBS may be tried again
    unsubs_retry_at: float = 0.0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(REFUSED_RETRY_BASE, REFUSED_RETRY_CAP, jitter=0.2)
    )


class SubscriptionBook:
    def __init__(
        self, wanted: Mapping[str, Iterable[str]] | None = None, *, chunk: int = CHUNK_KEYS
    ):
        if chunk < 1:
            raise ValueError("chunk must be at least one key")
        self.chunk = chunk
        self._services: dict[str, _Service] = {}
        #: service -> key -> recv_ns of its last data (0: none yet). The normalizer reads it:
        #: data for a key missing here is not used.
        self.streaming: dict[str, dict[str, int]] = {}
        self._online = False
        #: The command out, and how many times it was sent
        self._inflight: tuple[Command, int] | None = None
        #: A command answered with a transient code: (command, attempts so far, when to resend)
        self._again: tuple[Command, int, float] | None = None
        self._transient = Backoff(TRANSIENT_RETRY_BASE, TRANSIENT_RETRY_CAP, jitter=0.5)
        if wanted:
            self.set_wanted(wanted)

    # --- what is wanted -------------------------------------------------------------------------

    def set_wanted(
        self, wanted: Mapping[str, Iterable[str]]
    ) -> dict[str, tuple[list[str], list[str]]]:
        """Replace the wanted set; returns service -> (keys added, keys removed)."""
        changes: dict[str, tuple[list[str], list[str]]] = {}
        new = {service: dict.fromkeys(keys) for service, keys in wanted.items()}
        for service in {**self._services, **new}:
            keys = new.get(service, {})
            entry = self._services.get(service)
            if entry is None:
                if not keys:
                    continue
                entry = self._services[service] = _Service()
            added = [k for k in keys if k not in entry.wanted]
            removed = [k for k in entry.wanted if k not in keys]
            if added or removed:
                changes[service] = (added, removed)
            entry.wanted = keys
            for key in removed:
                entry.refused.pop(key, None)
            marks = self.streaming.setdefault(service, {})
            for key in removed:
                marks.pop(key, None)
            for key in added:
                marks.setdefault(key, 0)
            if not keys:
                del self.streaming[service]
        return changes

    @property
    def wanted(self) -> dict[str, list[str]]:
        return {s: list(e.wanted) for s, e in self._services.items() if e.wanted}

    # --- the connection -----------------------------------------------------------------------

    def connected(self) -> None:
        """A new connection, logged in: nothing is subscribed on it yet."""
        self._reset_connection()
        self._online = True

    def disconnected(self) -> None:
        self._reset_connection()
        self._online = False

    def _reset_connection(self) -> None:
        self._inflight = None
        self._again = None
        self._transient.reset()
        for entry in self._services.values():
            entry.active.clear()
            entry.refused.clear()
            entry.unsubs_retry_at = 0.0
            entry.backoff.reset()

    # --- commands -----------------------------------------------------------------------------

    def next_command(self, now: float) -> Command | None:
        """The command to send now, or None (then wait until `wake_at()` or a change)."""
        if not self._online or self._inflight is not None:
            return None
        if self._again is not None:
            again, attempts, at = self._again
            if now < at:
                return None
            self._again = None
            self._inflight = (again, attempts + 1)
            return again
        command = self._plan(now)
        if command is not None:
            self._inflight = (command, 1)
        return command

    def _plan(self, now: float) -> Command | None:
        for service, entry in self._services.items():
            # Removals first: they free room under the symbol limit for what is added.
            gone = [k for k in entry.active if k not in entry.wanted]
            if gone and now >= entry.unsubs_retry_at:
                return Command(service, Verb.UNSUBS, tuple(gone[: self.chunk]))
            due = [
                k
                for k in entry.wanted
                if k not in entry.active
                and (k not in entry.refused or entry.refused[k].retry_at <= now)
            ]
            if due:
                verb = Verb.SUBS if service == ACCT_ACTIVITY or not entry.active else Verb.ADD
                return Command(service, verb, tuple(due[: self.chunk]))
        # A service nobody wants any more and nothing left on the wire: forget it.
        for service in [s for s, e in self._services.items() if not e.wanted and not e.active]:
            del self._services[service]
        return None

    def on_answer(self, code: int, message: str, now: float) -> Answer:
        """Schwab's answer to the command out."""
        if self._inflight is None:
            raise RuntimeError("an answer with no command out")
        command, attempts = self._inflight
        self._inflight = None
        action = action_for(code, command.verb)
        entry = self._services.setdefault(command.service, _Service())
        if action is CodeAction.OK:
            self._transient.reset()
            if command.verb is Verb.UNSUBS:
                for key in command.keys:
                    entry.active.pop(key, None)
            else:
                for key in command.keys:
                    entry.active[key] = now
                    entry.refused.pop(key, None)
                if not entry.refused:
                    entry.backoff.reset()
            return Answer(command, Outcome.APPLIED, code, message, action)
        if action is CodeAction.RETRY and attempts < COMMAND_ATTEMPTS:
            self._again = (command, attempts, now + self._transient.next())
            return Answer(command, Outcome.RETRYING, code, message, action)
        if action in (CodeAction.RELOGIN, CodeAction.STOP, CodeAction.RECONNECT):
            return Answer(command, Outcome.SESSION_END, code, message, action)
        self._transient.reset()
        delay = entry.backoff.next()
        if command.verb is Verb.UNSUBS:
            entry.unsubs_retry_at = now + delay
        else:
            for key in command.keys:
                if key in entry.wanted:
                    entry.refused[key] = Refusal(code, message, now, now + delay)
        return Answer(command, Outcome.REFUSED, code, message, action)

    def wake_at(self) -> float | None:
        """When a retry falls due (None: nothing scheduled; a change wakes the caller)."""
        if not self._online or self._inflight is not None:
            return None
        if self._again is not None:
            return self._again[2]
        times = [
            refusal.retry_at
            for entry in self._services.values()
            for refusal in entry.refused.values()
        ]
        times.extend(
            e.unsubs_retry_at
            for e in self._services.values()
            if e.unsubs_retry_at and any(k not in e.wanted for k in e.active)
        )
        return min(times, default=None)

    # --- what to report -------------------------------------------------------------------------

    @property
    def settled(self) -> bool:
        """Connected, nothing out, and every wanted key acknowledged or refused (a refused key's
        retry does not count): the moment to say `subscribed`."""
        if not self._online or self._inflight is not None or self._again is not None:
            return False
        return all(
            k in e.active or k in e.refused for e in self._services.values() for k in e.wanted
        ) and not any(k not in e.wanted for e in self._services.values() for k in e.active)

    def state_of(self, service: str, key: str) -> KeyState | None:
        """The key's state, or None when it is not wanted."""
        entry = self._services.get(service)
        if entry is None or key not in entry.wanted:
            return None
        if key in entry.active:
            return KeyState.ACTIVE
        if key in entry.refused:
            return KeyState.REFUSED
        return KeyState.PENDING

    def on_wire(self, service: str, key: str) -> bool:
        """True while Schwab holds the key for us (acknowledged, even if no longer wanted)."""
        entry = self._services.get(service)
        return entry is not None and key in entry.active

    def refusal(self, service: str, key: str) -> Refusal | None:
        entry = self._services.get(service)
        return None if entry is None else entry.refused.get(key)

    def active_counts(self) -> dict[str, int]:
        """Acknowledged keys per service (wanted ones only)."""
        counts = {s: sum(1 for k in e.wanted if k in e.active) for s, e in self._services.items()}
        return {s: n for s, n in counts.items() if n}

    def refused_counts(self) -> dict[str, int]:
        return {s: len(e.refused) for s, e in self._services.items() if e.refused}

    def status(self) -> Iterator[KeyStatus]:
        """Every wanted key, in service and key order of wanting."""
        for service, entry in self._services.items():
            marks = self.streaming.get(service, {})
            for key in entry.wanted:
                state = self.state_of(service, key)
                assert state is not None
                yield KeyStatus(
                    service=service,
                    key=key,
                    state=state,
                    active_since=entry.active.get(key),
                    last_data_ns=marks.get(key, 0),
                    refusal=entry.refused.get(key),
                )

    def silent_keys(self, now: float, after: float) -> list[tuple[str, str]]:
        """Keys acknowledged more than `after` seconds ago that have had no data since the
        bridge started: Schwab accepts some keys it never sends anything for."""
        return [
            (status.service, status.key)
            for status in self.status()
            if status.state is KeyState.ACTIVE
            and status.last_data_ns == 0
            and status.active_since is not None
            and now - status.active_since > after
        ]
