"""Schwab's streamer response codes as the simulator plays them: messages, and when each applies.

The session answers with these, the hub arms them, and the control API validates fault codes
against them, so the three agree on what code N means (docs/schwab-protocol.md §7).
"""

from __future__ import annotations

#: The commands a client can send (counted by kind in /sim/stats).
CLIENT_COMMANDS = frozenset({"LOGIN", "LOGOUT", "SUBS", "ADD", "UNSUBS", "VIEW"})
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
#: Codes of a command that was applied (26-29 are the documented "succeeded" variants).
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
#: The msg of a successful LOGIN.
LOGIN_MSG = "server=s0sim01-1;status=NP"
