"""The project's exceptions and exit codes: one root, each error a bounded `kind` (the metric and
log label) and the exit code a command ends with, so no caller ever parses a message.

    SchwabStreamError            kind "error"           exit 1
    ├── ConfigError              kind "config"          exit 2  a setting is missing or bad
    ├── TokenFileError           kind "token_file"      exit 1  the token file is missing/corrupt
    │   └── TokenStoreUnavailable kind "token_store"    exit 1  cannot use it now (disk, lock)
    ├── LoginRequiredError       kind "login_required"  exit 3  a person must run `login`
    ├── AuthError                kind "auth"            exit 1  OAuth/REST failed after retries
    ├── RestError                kind "rest"            exit 1  a market-data call failed (`reason`)
    ├── ProtocolError            kind per instance      exit 1  a streamer frame we cannot read
    ├── StreamStopped            kind "taken_over"      exit 3  code 12: another session took over
    ├── LeaseLost                kind "lease_lost"      exit 4  another instance took the lease
    └── EmbeddedRedisError       kind "embedded_redis"  exit 1  the bundled redis-server failed

Messages are for people and never carry a secret.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import ClassVar


class ExitCode(IntEnum):
    """Exit codes of the commands (docs/operations.md). A one-shot command (`token`) folds the
    ones it cannot meet into FAILED; `run` uses them all."""

    OK = 0
    FAILED = 1
    BAD_SETTINGS = 2
    #: `run`: Schwab ended the session for another (code 12); `token`: a login is needed
    TAKEN_OVER = 3
    LOGIN_NEEDED = 3
    LEASE_LOST = 4
    #: `subscribe`/`unsubscribe`: Schwab refused some keys (named on stderr)
    REFUSED = 5
    #: `subscribe`/`unsubscribe`/`subscriptions`: no bridge runs on this Redis and prefix
    NO_BRIDGE = 6
    #: `subscribe`/`unsubscribe`: the bridge did not answer in time (the change is stored)
    NO_ANSWER = 7


class SchwabStreamError(Exception):
    """Base of every error this package raises on purpose."""

    kind: ClassVar[str] = "error"
    exit_code: ClassVar[ExitCode] = ExitCode.FAILED


class ConfigError(SchwabStreamError):
    """A setting is missing or has a bad value; the message names the setting."""

    kind = "config"
    exit_code = ExitCode.BAD_SETTINGS


class TokenFileError(SchwabStreamError):
    """The token file is missing, corrupt or foreign; the message names the file and the fix."""

    kind = "token_file"


class TokenStoreUnavailable(TokenFileError):
    """The token file or its lock cannot be used right now: a full disk, a read-only or missing
    folder, an I/O error, the lock held by a stuck process. The tokens themselves may be fine, so
    a running bridge retries instead of waiting for a login. `reason` says which, a bounded label:
    `lock_busy`, `lock_failed`, `read_failed`, `write_failed`, `no_folder`."""

    kind = "token_store"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class LoginRequiredError(SchwabStreamError):
    """The refresh token is dead or revoked: a person must run `schwab-stream login`."""

    kind = "login_required"
    exit_code = ExitCode.LOGIN_NEEDED


class AuthError(SchwabStreamError):
    """An OAuth or REST call failed in a way retries did not fix."""

    kind = "auth"


class RestReason(StrEnum):
    """Why a market-data REST call failed: the bounded label of `RestError` and its metric."""

    BAD_REQUEST = "bad_request"  # 400 and other 4xx: Schwab refused the parameters
    NOT_FOUND = "not_found"  # 404
    UNAUTHORIZED = "unauthorized"  # 401 after one token refresh, or 403
    RATE_LIMITED = "rate_limited"  # 429 on every attempt
    SERVER_ERROR = "server_error"  # 5xx on every attempt
    NETWORK = "network"  # timeouts and connection failures on every attempt
    BAD_ANSWER = "bad_answer"  # an answer we cannot read (not JSON, wrong shape, a 3xx)


#: The reasons worth trying again later: the same request may well succeed.
TRANSIENT_REST_REASONS = frozenset(
    {RestReason.RATE_LIMITED, RestReason.SERVER_ERROR, RestReason.NETWORK}
)


class RestError(SchwabStreamError):
    """A market-data REST call failed after the retries it deserved. `reason` says why (bounded),
    `status` is the last HTTP status (None for a network failure); the message names the call and
    Schwab's error title, never a token."""

    kind = "rest"

    def __init__(
        self, reason: RestReason, message: str, *, status: int | None = None, attempts: int = 1
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.attempts = attempts

    @property
    def transient(self) -> bool:
        """True when trying again later may succeed (429, 5xx, network)."""
        return self.reason in TRANSIENT_REST_REASONS


class ProtocolError(SchwabStreamError):
    """A streamer frame could not be understood. `kind` says how (a bounded label, e.g.
    `not_json`, `bad_shape`): the `frames_bad_total` label."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind  # type: ignore[misc]  # per instance, unlike the other errors


class StreamStopped(SchwabStreamError):
    """The streamer must stop for good (code 12: another session took over)."""

    kind = "taken_over"
    exit_code = ExitCode.TAKEN_OVER

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class LeaseLost(SchwabStreamError):
    """Another instance holds the hot-standby lease now: stop streaming at once."""

    kind = "lease_lost"
    exit_code = ExitCode.LEASE_LOST


class EmbeddedRedisError(SchwabStreamError):
    """The bundled redis-server (demo, tests) could not be started or did not answer."""

    kind = "embedded_redis"
