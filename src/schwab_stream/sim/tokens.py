"""The simulator's token authority (sans-I/O): issue, refresh, validate and revoke like Schwab.

A new login invalidates every older token of the user (schwab-py#94); refreshing issues a new access
token but keeps the refresh token and its 7-day clock from the login.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

#: The one simulated user's streamer identity (what userPreference returns).
SIM_CUSTOMER_ID = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
SIM_CORREL_ID = "60b4c643-ca26-d965-1d21-ad96078ab2fa"
SIM_CHANNEL = "N9"
SIM_FUNCTION_ID = "APIAPP"
SIM_ACCOUNT = "12345678"


@dataclass
class Grant:
    """One login: its refresh token and the access tokens issued from it."""

    refresh_token: str
    refresh_expires_at: float
    access: dict[str, float] = field(default_factory=dict)  # access token -> expires_at
    revoked: bool = False


class TokenAuthority:
    def __init__(
        self,
        access_ttl: float,
        refresh_ttl: float,
        clock: Callable[[], float] = time.time,
        code_ttl: float = 30.0,
    ) -> None:
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.code_ttl = code_ttl
        self.clock = clock
        self.grants: list[Grant] = []
        self.codes: dict[str, tuple[str, float]] = {}  # code -> (redirect_uri, expires_at)

    def issue_code(self, redirect_uri: str) -> str:
        """An authorization code (ends in `@` like Schwab's), single-use and short-lived."""
        now = self.clock()
        self.codes = {c: v for c, v in self.codes.items() if v[1] > now}
        code = f"C0.{secrets.token_urlsafe(24)}@"
        self.codes[code] = (redirect_uri, now + self.code_ttl)
        return code

    def redeem_code(self, code: str, redirect_uri: str) -> bool:
        """Consume a code; False when unknown, used, expired, or issued for another redirect_uri."""
        entry = self.codes.pop(code, None)
        return entry is not None and entry[0] == redirect_uri and self.clock() < entry[1]

    def refresh_failure(self, refresh_token: str) -> str:
        """Why a refresh token is dead: "expired", "revoked" or "unknown" (for error bodies)."""
        grant = self._grant_for_refresh(refresh_token)
        if grant is None:
            return "unknown"
        return "revoked" if grant.revoked else "expired"

    def login(self) -> tuple[str, str]:
        """A browser login: revoke every older grant, return (access_token, refresh_token)."""
        for grant in self.grants:
            grant.revoked = True
        now = self.clock()
        grant = Grant(
            refresh_token=_token("RT"),
            refresh_expires_at=now + self.refresh_ttl,
        )
        self.grants.append(grant)
        return self._issue_access(grant), grant.refresh_token

    def refresh(self, refresh_token: str) -> str | None:
        """A new access token for a live refresh token, or None when it is dead or unknown."""
        grant = self._grant_for_refresh(refresh_token)
        if grant is None or grant.revoked or self.clock() >= grant.refresh_expires_at:
            return None
        return self._issue_access(grant)

    def is_access_valid(self, access_token: str) -> bool:
        now = self.clock()
        for grant in self.grants:
            expires = grant.access.get(access_token)
            if expires is not None:
                return not grant.revoked and now < expires
        return False

    def revoke_all(self) -> None:
        for grant in self.grants:
            grant.revoked = True

    def expire_access_tokens(self) -> None:
        """Make every issued access token expired now (tests of code 3 / HTTP 401)."""
        now = self.clock()
        for grant in self.grants:
            for token in grant.access:
                grant.access[token] = now

    def _grant_for_refresh(self, refresh_token: str) -> Grant | None:
        for grant in self.grants:
            if secrets.compare_digest(grant.refresh_token, refresh_token):
                return grant
        return None

    def _issue_access(self, grant: Grant) -> str:
        token = _token("AT")
        grant.access[token] = self.clock() + self.access_ttl
        return token


def _token(prefix: str) -> str:
    return f"{prefix}.{secrets.token_urlsafe(32)}@"
