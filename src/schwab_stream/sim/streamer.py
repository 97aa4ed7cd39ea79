"""Placeholder: the streamer websocket is built in issue 3."""

from __future__ import annotations

from aiohttp import web

from schwab_stream.sim.server import SimState


def setup(app: web.Application, state: SimState) -> None:
    """Register the streamer websocket route."""
