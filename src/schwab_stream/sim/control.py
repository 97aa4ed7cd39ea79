"""The simulator's control API: counters now; faults come with the streamer (issue 3)."""

from __future__ import annotations

from aiohttp import web

from schwab_stream.sim.server import STATE_KEY, SimState

#: Counters that /sim/stats always reports, even before they are first incremented.
BASE_COUNTERS = ("token_exchanges", "token_refreshes", "logins", "connections", "frames_sent")


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = {name: 0 for name in BASE_COUNTERS}
    body.update(state.stats)
    return web.json_response(body)


def setup(app: web.Application, state: SimState) -> None:
    """Register /sim/* routes."""
    app.router.add_get("/sim/stats", _stats)
