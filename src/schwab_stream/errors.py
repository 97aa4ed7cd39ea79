"""The project's exceptions: each one carries a message a person can act on, never a secret."""

from __future__ import annotations


class SchwabStreamError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(SchwabStreamError):
    """A setting is missing or has a bad value; the message names the setting."""


class TokenFileError(SchwabStreamError):
    """The token file is missing, corrupt or foreign; the message names the file and the fix."""


class LoginRequiredError(SchwabStreamError):
    """The refresh token is dead or revoked: a person must run `schwab-stream login`."""


class AuthError(SchwabStreamError):
    """An OAuth or REST call failed in a way retries did not fix."""


class ProtocolError(SchwabStreamError):
    """A streamer frame could not be understood."""


class StreamStopped(SchwabStreamError):
    """The streamer must stop for good (for example code 12: another session took over)."""
