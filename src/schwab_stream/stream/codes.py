"""What each streamer response code means for us: one table from (code, command) to an action.

Sans-I/O: LOGIN, the subscription commands and codes that arrive outside any command (an ADMIN
notify, a late response) all read it, and the client only carries the action out. The codes and
their meaning are Schwab's Streamer Guide s.1.4 (docs/schwab-protocol.md §7):

* 3 (login denied), 12 (another session took over) and 30 (streaming stopped) sever the
  connection, whatever the command: refresh the token and log in again at once, stop for good
  (never fight the other session), or reconnect and resubscribe.
* 0 is success; 26-29 (SUCCEEDED_COMMAND_*) are documented and never observed, and count as
  success for the subscription commands.
* 20 and 22-25 are transient (a command sent before LOGIN completed, or commands processed in
  parallel): a subscription command is sent again, up to `COMMAND_ATTEMPTS` times.
* 19 (symbol limit) on SUBS or ADD: said with which service and how many keys; the rest streams.
* Any other code fails the command: a LOGIN that fails ends the session (reconnect after
  backoff), anything else is reported and the stream goes on.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Final

from schwab_stream.stream.protocol import ResponseCode


class CodeAction(Enum):
    """What the client does with a response code."""

    #: Success: carry on
    OK = "ok"
    #: Transient: send the same command again (up to COMMAND_ATTEMPTS in all), then REPORT
    RETRY = "retry"
    #: Code 3: refresh the access token, reconnect and log in again at once
    RELOGIN = "relogin"
    #: Code 12: another session took over; stop for good (run exits 3)
    STOP = "stop"
    #: End this session and reconnect after backoff (code 30, or a failed LOGIN)
    RECONNECT = "reconnect"
    #: Code 19 on SUBS/ADD: a `symbol_limit` status event; the other services go on
    SYMBOL_LIMIT = "symbol_limit"
    #: The command failed or Schwab said something: a status event and a warning; go on
    REPORT = "report"


#: Attempts of one subscription command answered with a RETRY code, the first included.
COMMAND_ATTEMPTS: Final = 3

#: A code that arrives outside a command we are waiting for (an ADMIN notify, a late response).
OUTSIDE_COMMAND: Final = "notify"

_C = ResponseCode
_A = CodeAction
#: The severing codes mean the same whatever the command.
_SEVERING: Final[Mapping[int, CodeAction]] = {
    _C.LOGIN_DENIED: _A.RELOGIN,
    _C.CLOSE_CONNECTION: _A.STOP,
    _C.STOP_STREAMING: _A.RECONNECT,
}
_SUCCESS: Final[Mapping[int, CodeAction]] = {code: _A.OK for code in _C if code.is_success}
_RETRY: Final[Mapping[int, CodeAction]] = {
    code: _A.RETRY
    for code in (
        _C.STREAM_CONN_NOT_FOUND,
        _C.FAILED_COMMAND_SUBS,
        _C.FAILED_COMMAND_UNSUBS,
        _C.FAILED_COMMAND_ADD,
        _C.FAILED_COMMAND_VIEW,
    )
}
_SUBSCRIBE: Final = {**_SUCCESS, **_RETRY, **_SEVERING}

#: command -> (the codes it gives a meaning to, the action of every other code).
ACTIONS: Final[Mapping[str, tuple[Mapping[int, CodeAction], CodeAction]]] = {
    "LOGIN": ({_C.SUCCESS: _A.OK, **_SEVERING}, _A.RECONNECT),
    "SUBS": ({**_SUBSCRIBE, _C.REACHED_SYMBOL_LIMIT: _A.SYMBOL_LIMIT}, _A.REPORT),
    "ADD": ({**_SUBSCRIBE, _C.REACHED_SYMBOL_LIMIT: _A.SYMBOL_LIMIT}, _A.REPORT),
    "UNSUBS": (_SUBSCRIBE, _A.REPORT),
    "VIEW": (_SUBSCRIBE, _A.REPORT),
    "LOGOUT": ({_C.SUCCESS: _A.OK, **_SEVERING}, _A.REPORT),
    OUTSIDE_COMMAND: ({_C.SUCCESS: _A.OK, **_SEVERING}, _A.REPORT),
}


def action_for(code: int, command: str) -> CodeAction:
    """The action for `code` answering `command` (LOGIN, SUBS, ... or OUTSIDE_COMMAND)."""
    try:
        known, otherwise = ACTIONS[command]
    except KeyError:
        raise ValueError(f"unknown streamer command {command!r}") from None
    return known.get(code, otherwise)
