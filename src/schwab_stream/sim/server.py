"""The simulator's one aiohttp server: OAuth, userPreference, the streamer websocket and /sim/*.

This module only wires: each side registers its own routes (`oauth.setup`, `streamer.setup`,
`control.setup`) on one app, sharing one `state.SimState`, so one port serves everything as
Schwab's hosts do; `start` and `SimThread` run that app.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web

from schwab_stream.sim import control, marketdata, oauth, streamer
from schwab_stream.sim.state import STATE_KEY, SimConfig, SimState


def build_app(config: SimConfig) -> web.Application:
    """Assemble the app: one shared state, each side's routes."""
    app = web.Application()
    state = SimState(config=config)
    app[STATE_KEY] = state
    oauth.setup(app, state)
    streamer.setup(app, state)
    marketdata.setup(app, state)
    control.setup(app, state)
    return app


class RunningSim:
    """A started simulator: its base URL, its shared state, and a way to stop it."""

    def __init__(self, runner: web.AppRunner, state: SimState, base_url: str) -> None:
        self.runner = runner
        self.state = state
        self.base_url = base_url

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start(config: SimConfig) -> RunningSim:
    """Start serving on config.host:config.port (0 picks a free port)."""
    app = build_app(config)
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, config.host, config.port, reuse_address=True)
    await site.start()
    server = site._server
    assert server is not None
    sockets = getattr(server, "sockets", None) or []
    port = sockets[0].getsockname()[1] if sockets else config.port
    base_url = f"http://{config.host}:{port}"
    state = app[STATE_KEY]
    state.base_url = base_url
    return RunningSim(runner, state, base_url)


class SimThread:
    """The simulator on its own event loop in a thread: for tests and the demo's process tree."""

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True, name="sim")
        self._sim: RunningSim | None = None

    @property
    def base_url(self) -> str:
        assert self._sim is not None, "simulator not started"
        return self._sim.base_url

    @property
    def state(self) -> SimState:
        assert self._sim is not None, "simulator not started"
        return self._sim.state

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        """Run a coroutine on the simulator's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> SimThread:
        self._thread.start()
        self._sim = self.call(start(self.config))
        return self

    def stop(self) -> None:
        if self._sim is not None:
            self.call(self._sim.stop())
            self._sim = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> SimThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
