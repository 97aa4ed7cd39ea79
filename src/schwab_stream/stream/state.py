"""The stream client's outcomes as data: its connection state and why it reconnects.

A leaf module (the standard library only), so telemetry derives its metric labels from these
enums without importing websockets, httpx or redis.
"""

from __future__ import annotations

from enum import StrEnum


class ConnectionState(StrEnum):
    """Where the streamer connection is: `ClientStats.state`, and the `state` label of the
    `connection_state` metric (exactly one is 1). Values are the label strings."""

    #: Not connected: before the first connection, and as each session ends
    DISCONNECTED = "disconnected"
    #: Streamer credentials fetched; opening the websocket
    CONNECTING = "connecting"
    #: The websocket is open; LOGIN not answered yet
    CONNECTED = "connected"
    #: LOGIN succeeded; subscribing
    LOGGED_IN = "logged_in"
    #: Every wanted key acknowledged (or refused and reported)
    SUBSCRIBED = "subscribed"
    #: Waiting out the backoff before the next connection
    RECONNECTING = "reconnecting"
    #: Another instance holds the lease; this one does not stream (set by the pipeline)
    STANDBY = "standby"
    #: The refresh token is dead or missing: waiting for a person to run `schwab-stream login`
    LOGIN_NEEDED = "login_needed"
    #: `run()` has returned or raised: stopped, or code 12
    STOPPED = "stopped"
    #: Nothing is wanted: not connected, waiting for a subscription
    IDLE = "idle"


class ReconnectReason(StrEnum):
    """Why a session ended and the client connects again: the `reason` label of
    `reconnects_total`, a closed set."""

    #: The websocket closed (a close frame, 1006, or it was gone when a command was sent)
    CLOSED = "closed"
    #: Connecting or reading failed at the network level (OS error, handshake, timeout)
    NETWORK = "network"
    #: Nothing at all, not even a heartbeat, for `SCHWAB_WATCHDOG_SECONDS`
    SILENCE = "silence"
    #: A command got no response within `SCHWAB_COMMAND_TIMEOUT`
    COMMAND_TIMEOUT = "command_timeout"
    #: The Schwab REST API (userPreference, token refresh) failed
    API_ERROR = "api_error"
    #: Code 3, login denied: the access token is refreshed and the reconnect is immediate
    CODE_3 = "code_3"
    #: Code 30: Schwab stopped the stream (e.g. nothing subscribed)
    CODE_30 = "code_30"
    #: LOGIN answered with another non-zero code
    LOGIN_FAILED = "login_failed"
