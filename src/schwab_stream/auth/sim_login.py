"""A scripted person for the simulator's login page: the demo and tests log in over real HTTP.

The simulator approves at once, so "the person" only follows the authorize URL and pastes the
redirect address back, exactly as `schwab-stream login --manual` expects from a human.
"""

from __future__ import annotations

import httpx

from schwab_stream.auth.login import login
from schwab_stream.auth.token_store import TokenRecord
from schwab_stream.config import Settings
from schwab_stream.errors import AuthError


def approve(authorize_url: str) -> str:
    """Open the authorize URL as an approving user would; returns the redirect address."""
    response = httpx.get(authorize_url, follow_redirects=False, timeout=10.0)
    location: str | None = response.headers.get("location")
    if response.status_code != 302 or not location:
        raise AuthError(f"the authorize page answered HTTP {response.status_code}, not a redirect")
    return location


class ScriptedPerson:
    """`echo` and `read_line` for `login(manual=True)`: reads the URL shown, approves, pastes."""

    def __init__(self) -> None:
        self.shown: list[str] = []

    def echo(self, line: str) -> None:
        self.shown.append(line)

    def authorize_url(self) -> str:
        return next(line.strip() for line in self.shown if line.strip().startswith("http"))

    def read_line(self) -> str:
        return approve(self.authorize_url()) + "\n"


async def login_against_simulator(settings: Settings) -> TokenRecord:
    """A full manual login against a simulator at `settings.api_base_url`; saves the tokens."""
    person = ScriptedPerson()
    return await login(settings, manual=True, read_line=person.read_line, echo=person.echo)
