"""Placeholder: the OAuth side (authorize, token, userPreference) is built in issue 2."""

from __future__ import annotations

from aiohttp import web

from schwab_stream.sim.server import SimState


def setup(app: web.Application, state: SimState) -> None:
    """Register the OAuth routes."""
