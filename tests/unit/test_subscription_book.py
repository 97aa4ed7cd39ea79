"""SubscriptionBook: the streamer subscription rules, on a fake clock."""

from __future__ import annotations

import random

import pytest

from schwab_stream.stream.codes import COMMAND_ATTEMPTS, CodeAction
from schwab_stream.stream.subscriptions import (
    REFUSED_RETRY_CAP,
    Command,
    KeyState,
    Outcome,
    SubscriptionBook,
    Verb,
)

EQ = "LEVELONE_EQUITIES"
BARS = "CHART_EQUITY"


def drain(book: SubscriptionBook, now: float = 0.0, code: int = 0) -> list[Command]:
    """Answer every command the book wants sent with `code`."""
    sent = []
    while (command := book.next_command(now)) is not None:
        sent.append(command)
        book.on_answer(code, "msg", now)
    return sent


def test_a_new_connection_subscribes_every_service_once_in_order() -> None:
    book = SubscriptionBook({EQ: ["AAPL", "MSFT"], BARS: ["SPY"], "ACCT_ACTIVITY": ["ACCOUNT"]})
    assert book.next_command(0.0) is None  # not connected: nothing to send
    book.connected()
    assert drain(book) == [
        Command(EQ, Verb.SUBS, ("AAPL", "MSFT")),
        Command(BARS, Verb.SUBS, ("SPY",)),
        Command("ACCT_ACTIVITY", Verb.SUBS, ("ACCOUNT",)),
    ]
    assert book.settled
    assert book.active_counts() == {EQ: 2, BARS: 1, "ACCT_ACTIVITY": 1}


def test_commands_go_one_at_a_time() -> None:
    book = SubscriptionBook({EQ: ["AAPL"], BARS: ["SPY"]})
    book.connected()
    assert book.next_command(0.0) is not None
    assert book.next_command(0.0) is None  # the first is not answered yet
    assert book.wake_at() is None


def test_a_large_request_goes_in_chunks_first_subs_then_add() -> None:
    keys = [f"S{i}" for i in range(5)]
    book = SubscriptionBook({EQ: keys}, chunk=2)
    book.connected()
    assert drain(book) == [
        Command(EQ, Verb.SUBS, ("S0", "S1")),
        Command(EQ, Verb.ADD, ("S2", "S3")),
        Command(EQ, Verb.ADD, ("S4",)),
    ]


def test_a_change_adds_and_removes_only_the_difference() -> None:
    book = SubscriptionBook({EQ: ["AAPL", "MSFT"]})
    book.connected()
    drain(book)
    changes = book.set_wanted({EQ: ["AAPL", "NVDA"], BARS: ["SPY"]})
    assert changes == {EQ: (["NVDA"], ["MSFT"]), BARS: (["SPY"], [])}
    assert drain(book) == [
        Command(EQ, Verb.UNSUBS, ("MSFT",)),  # removals first: they free room
        Command(EQ, Verb.ADD, ("NVDA",)),
        Command(BARS, Verb.SUBS, ("SPY",)),
    ]
    assert book.wanted == {EQ: ["AAPL", "NVDA"], BARS: ["SPY"]}
    assert set(book.streaming[EQ]) == {"AAPL", "NVDA"}


def test_removing_every_key_of_a_service_unsubscribes_and_forgets_it() -> None:
    book = SubscriptionBook({EQ: ["AAPL"], BARS: ["SPY"]})
    book.connected()
    drain(book)
    book.set_wanted({EQ: ["AAPL"]})
    assert BARS not in book.streaming  # its data is no longer used, at once
    assert drain(book) == [Command(BARS, Verb.UNSUBS, ("SPY",))]
    assert book.active_counts() == {EQ: 1}
    assert book.settled


def test_a_key_removed_while_its_add_is_out_is_unsubscribed_after_the_answer() -> None:
    book = SubscriptionBook({EQ: ["AAPL"]})
    book.connected()
    drain(book)
    book.set_wanted({EQ: ["AAPL", "NVDA"]})
    assert book.next_command(0.0) == Command(EQ, Verb.ADD, ("NVDA",))
    book.set_wanted({EQ: ["AAPL"]})
    assert not book.settled
    book.on_answer(0, "ok", 0.0)
    assert book.on_wire(EQ, "NVDA")
    assert drain(book) == [Command(EQ, Verb.UNSUBS, ("NVDA",))]
    assert not book.on_wire(EQ, "NVDA")


@pytest.mark.parametrize("code", [19, 11, 9, 21])
def test_a_refused_subscription_is_reported_and_tried_again_on_the_same_connection(
    code: int,
) -> None:
    book = SubscriptionBook({EQ: ["AAPL"], BARS: ["SPY"]})
    book.connected()
    assert book.next_command(0.0) == Command(EQ, Verb.SUBS, ("AAPL",))
    answer = book.on_answer(code, "no", 0.0)
    assert answer.outcome is Outcome.REFUSED
    assert book.state_of(EQ, "AAPL") is KeyState.REFUSED
    refusal = book.refusal(EQ, "AAPL")
    assert refusal is not None and refusal.code == code
    # the other services go on
    assert drain(book) == [Command(BARS, Verb.SUBS, ("SPY",))]
    assert book.settled  # everything answered: `subscribed` can be said, with the refusal
    assert book.refused_counts() == {EQ: 1}
    wake = book.wake_at()
    assert wake is not None and 0 < wake <= 5.0
    assert book.next_command(wake - 0.01) is None
    assert book.next_command(wake) == Command(EQ, Verb.SUBS, ("AAPL",))
    book.on_answer(0, "ok", wake)
    assert book.state_of(EQ, "AAPL") is KeyState.ACTIVE
    assert book.refused_counts() == {}


def test_refusals_back_off_up_to_the_cap_and_a_new_connection_tries_at_once() -> None:
    book = SubscriptionBook({EQ: ["AAPL"]})
    book.connected()
    now = 0.0
    waits = []
    for _ in range(12):
        assert book.next_command(now) is not None
        book.on_answer(19, "limit", now)
        wake = book.wake_at()
        assert wake is not None
        waits.append(wake - now)
        now = wake
    assert waits[-1] <= REFUSED_RETRY_CAP
    assert waits[-1] > waits[0] * 8
    book.disconnected()
    book.connected()
    assert book.next_command(now) == Command(EQ, Verb.SUBS, ("AAPL",))


def test_transient_codes_resend_the_same_command_then_count_as_refused() -> None:
    book = SubscriptionBook({EQ: ["AAPL"]})
    book.connected()
    now = 0.0
    command = book.next_command(now)
    for _ in range(COMMAND_ATTEMPTS - 1):
        assert book.on_answer(22, "parallel", now).outcome is Outcome.RETRYING
        wake = book.wake_at()
        assert wake is not None and wake - now <= 1.0
        now = wake
        assert book.next_command(now) == command
    assert book.on_answer(22, "parallel", now).outcome is Outcome.REFUSED
    assert book.state_of(EQ, "AAPL") is KeyState.REFUSED


@pytest.mark.parametrize(
    ("code", "action"),
    [(3, CodeAction.RELOGIN), (12, CodeAction.STOP), (30, CodeAction.RECONNECT)],
)
def test_severing_codes_end_the_session(code: int, action: CodeAction) -> None:
    book = SubscriptionBook({EQ: ["AAPL"]})
    book.connected()
    book.next_command(0.0)
    answer = book.on_answer(code, "bye", 0.0)
    assert (answer.outcome, answer.action) == (Outcome.SESSION_END, action)


def test_a_reconnect_replays_the_wanted_set_of_that_moment() -> None:
    book = SubscriptionBook({EQ: ["AAPL", "MSFT"]})
    book.connected()
    drain(book)
    book.set_wanted({EQ: ["MSFT", "NVDA"]})
    book.disconnected()
    assert book.next_command(0.0) is None
    assert book.state_of(EQ, "MSFT") is KeyState.PENDING
    book.connected()
    assert drain(book) == [Command(EQ, Verb.SUBS, ("MSFT", "NVDA"))]


def test_a_refused_unsubs_keeps_the_key_on_the_wire_and_is_tried_again() -> None:
    book = SubscriptionBook({EQ: ["AAPL", "MSFT"]})
    book.connected()
    drain(book)
    book.set_wanted({EQ: ["AAPL"]})
    assert book.next_command(0.0) == Command(EQ, Verb.UNSUBS, ("MSFT",))
    assert book.on_answer(9, "failed", 0.0).outcome is Outcome.REFUSED
    assert book.on_wire(EQ, "MSFT")
    assert "MSFT" not in book.streaming[EQ]  # its data is not used meanwhile
    wake = book.wake_at()
    assert wake is not None
    assert book.next_command(0.0) is None
    assert book.next_command(wake) == Command(EQ, Verb.UNSUBS, ("MSFT",))


def test_silent_keys_are_acknowledged_keys_without_any_data() -> None:
    book = SubscriptionBook({EQ: ["AAPL", "MSFT"]})
    book.connected()
    drain(book, now=10.0)
    book.streaming[EQ]["AAPL"] = 123  # what the normalizer does with data
    assert book.silent_keys(now=20.0, after=30.0) == []
    assert book.silent_keys(now=50.0, after=30.0) == [(EQ, "MSFT")]
    statuses = {s.key: s for s in book.status()}
    assert statuses["AAPL"].last_data_ns == 123
    assert statuses["MSFT"].active_since == 10.0


def test_an_answer_without_a_command_is_a_bug() -> None:
    book = SubscriptionBook({EQ: ["AAPL"]})
    with pytest.raises(RuntimeError):
        book.on_answer(0, "ok", 0.0)


@pytest.mark.parametrize("seed", range(30))
def test_random_changes_and_answers_converge_to_the_wanted_set(seed: int) -> None:
    """Whatever the order of changes, refusals and reconnects, once Schwab accepts everything
    the acknowledged set is exactly the wanted set, reached with only ADD/UNSUBS after the
    first SUBS of a service."""
    rng = random.Random(seed)
    symbols = [f"S{i}" for i in range(12)]
    services = [EQ, BARS, "LEVELONE_FUTURES"]
    book = SubscriptionBook(chunk=rng.choice([1, 3, 500]))
    book.connected()
    now = 0.0
    wire: dict[str, set[str]] = {s: set() for s in services}  # what Schwab would hold
    for _ in range(200):
        roll = rng.random()
        if roll < 0.2:
            book.set_wanted(
                {s: rng.sample(symbols, rng.randint(0, 5)) for s in services if rng.random() < 0.7}
            )
        elif roll < 0.25:
            book.disconnected()
            book.connected()
            wire = {s: set() for s in services}
        command = book.next_command(now)
        if command is not None:
            code = rng.choice([0, 0, 0, 0, 19, 22])
            if code == 0:
                if command.verb is Verb.SUBS:
                    wire[command.service] = set(command.keys)
                elif command.verb is Verb.ADD:
                    wire[command.service] |= set(command.keys)
                else:
                    wire[command.service] -= set(command.keys)
            book.on_answer(code, "", now)
        now += rng.choice([0.0, 0.5, 400.0])
    # Schwab now accepts everything
    for _ in range(1000):
        command = book.next_command(now)
        if command is None:
            wake = book.wake_at()
            if wake is None:
                break
            now = max(now, wake)
            continue
        if command.verb is Verb.SUBS:
            wire[command.service] = set(command.keys)
        elif command.verb is Verb.ADD:
            wire[command.service] |= set(command.keys)
        else:
            wire[command.service] -= set(command.keys)
        book.on_answer(0, "", now)
    assert book.settled
    wanted = book.wanted
    assert {s: k for s, k in wire.items() if k} == {s: set(k) for s, k in wanted.items()}
    assert {s: set(m) for s, m in book.streaming.items()} == {s: set(k) for s, k in wanted.items()}
