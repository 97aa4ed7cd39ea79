"""The response-code table against Schwab's Streamer Guide s.1.4 (docs/schwab-protocol.md §7):
one (code, command) -> action table that LOGIN, SUBS and the data path all read."""

from __future__ import annotations

import pytest

from schwab_stream.stream.codes import (
    ACTIONS,
    COMMAND_ATTEMPTS,
    OUTSIDE_COMMAND,
    CodeAction,
    action_for,
)
from schwab_stream.stream.protocol import COMMANDS, ResponseCode

A = CodeAction
SUBSCRIPTION = ("SUBS", "ADD", "UNSUBS", "VIEW")
EVERY_COLUMN = (*sorted(COMMANDS), OUTSIDE_COMMAND)

#: docs/schwab-protocol.md §7, row by row: what each code means for LOGIN, SUBS/ADD, UNSUBS/VIEW
#: and a code outside any command (an ADMIN notify, a late response).
GUIDE = {
    # code: (LOGIN, SUBS and ADD, UNSUBS and VIEW, outside a command)
    0: (A.OK, A.OK, A.OK, A.OK),
    3: (A.RELOGIN, A.RELOGIN, A.RELOGIN, A.RELOGIN),  # severs; log in again, new token
    9: (A.RECONNECT, A.REPORT, A.REPORT, A.REPORT),  # unknown failure
    11: (A.RECONNECT, A.REPORT, A.REPORT, A.REPORT),  # service not available
    12: (A.STOP, A.STOP, A.STOP, A.STOP),  # severs; one streamer per user
    19: (A.RECONNECT, A.SYMBOL_LIMIT, A.REPORT, A.REPORT),  # symbol limit (SUBS/ADD)
    20: (A.RECONNECT, A.RETRY, A.RETRY, A.REPORT),  # sent before LOGIN completed
    21: (A.RECONNECT, A.REPORT, A.REPORT, A.REPORT),  # bad command format
    22: (A.RECONNECT, A.RETRY, A.RETRY, A.REPORT),  # commands processed in parallel
    23: (A.RECONNECT, A.RETRY, A.RETRY, A.REPORT),
    24: (A.RECONNECT, A.RETRY, A.RETRY, A.REPORT),
    25: (A.RECONNECT, A.RETRY, A.RETRY, A.REPORT),
    26: (A.RECONNECT, A.OK, A.OK, A.REPORT),  # documented successes, never observed
    27: (A.RECONNECT, A.OK, A.OK, A.REPORT),
    28: (A.RECONNECT, A.OK, A.OK, A.REPORT),
    29: (A.RECONNECT, A.OK, A.OK, A.REPORT),
    30: (A.RECONNECT, A.RECONNECT, A.RECONNECT, A.RECONNECT),  # severs; stop streaming
}


def test_the_guide_table_covers_every_documented_code() -> None:
    assert sorted(GUIDE) == sorted(ResponseCode)


@pytest.mark.parametrize("code", sorted(GUIDE))
def test_each_code_means_what_the_guide_says(code: int) -> None:
    login, subscribe, other_commands, outside = GUIDE[code]
    assert action_for(code, "LOGIN") is login
    for command in ("SUBS", "ADD"):
        assert action_for(code, command) is subscribe, command
    for command in ("UNSUBS", "VIEW"):
        assert action_for(code, command) is other_commands, command
    assert action_for(code, OUTSIDE_COMMAND) is outside


def test_every_command_and_the_data_path_have_a_column() -> None:
    assert set(ACTIONS) == {*COMMANDS, OUTSIDE_COMMAND}
    with pytest.raises(ValueError, match="unknown streamer command"):
        action_for(0, "QOS")


@pytest.mark.parametrize("column", EVERY_COLUMN)
def test_the_severing_codes_mean_the_same_everywhere(column: str) -> None:
    """3, 12 and 30 close the socket whatever was asked: 12 is final in every column, so no
    path can reconnect after it and fight the other session."""
    for code in ResponseCode:
        action = action_for(code, column)
        if code.severs_connection:
            assert action in (A.RELOGIN, A.STOP, A.RECONNECT)
        assert (action is A.STOP) == (code == ResponseCode.CLOSE_CONNECTION)
        assert (action is A.RELOGIN) == (code == ResponseCode.LOGIN_DENIED)


def test_success_is_zero_or_a_documented_success_code() -> None:
    for column in EVERY_COLUMN:
        for code in ResponseCode:
            if action_for(code, column) is A.OK:
                assert code.is_success, (code, column)
    for command in SUBSCRIPTION:
        assert {c for c in ResponseCode if action_for(c, command) is A.OK} == {0, 26, 27, 28, 29}
    assert {c for c in ResponseCode if action_for(c, "LOGIN") is A.OK} == {0}


@pytest.mark.parametrize("column", EVERY_COLUMN)
def test_a_code_the_guide_does_not_list_fails_the_command_and_nothing_more(column: str) -> None:
    assert ResponseCode.parse(99) is None
    expected = A.RECONNECT if column == "LOGIN" else A.REPORT
    assert action_for(99, column) is expected
    assert action_for(-1, column) is expected


def test_retry_is_bounded() -> None:
    assert COMMAND_ATTEMPTS == 3  # "retry the command, in order, up to 3 times" (architecture.md)
