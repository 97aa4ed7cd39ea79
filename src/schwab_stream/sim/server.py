"""The simulator's one aiohttp server: OAuth, userPreference, the streamer websocket and /sim/*.

Each side registers its own routes (`oauth.setup`, `streamer.setup`, `control.setup`) on one app,
sharing one `SimState`, so one port serves everything as Schwab's hosts do.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from schwab_stream.sim.tokens import TokenAuthority

DEFAULT_APP_KEY = "sim-app-key"
DEFAULT_APP_SECRET = "sim-app-secret"  # noqa: S105 - a documented default for a local simulator


@dataclass
class SimConfig:
    """Every knob of the simulator; `schwab-stream sim --help` documents them."""

    host: str = "127.0.0.1"
    port: int = 0
    app_key: str = DEFAULT_APP_KEY
    app_secret: str = DEFAULT_APP_SECRET
    callback_url: str = "https://127.0.0.1:8182"
    access_ttl: float = 1800.0
    refresh_ttl: float = 7 * 24 * 3600.0
    symbol_limit: int = 500
    heartbeat_interval: float = 10.0
    idle_timeout: float = 30.0
    seed: int = 1
    rate: float = 10.0
    symbols_per_frame: int = 0
    book_interval: float = 1.0
    time_scale: float = 1.0
    replay: Path | None = None
    replay_pace: bool = False
    startup_faults: list[str] = field(default_factory=list)


@dataclass
class SimState:
    """What the sides share: config, counters, the token authority; sides add objects on `extra`."""

    config: SimConfig
    stats: Counter[str] = field(default_factory=Counter)
    extra: dict[str, Any] = field(default_factory=dict)
    base_url: str = ""
    tokens: TokenAuthority = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = TokenAuthority(self.config.access_ttl, self.config.refresh_ttl)

    @property
    def streamer_url(self) -> str:
        """The websocket URL userPreference hands out (ws:// on loopback)."""
        return "ws" + self.base_url.removeprefix("http") + "/ws"


STATE_KEY: web.AppKey[SimState] = web.AppKey("sim_state", SimState)


def build_app(config: SimConfig) -> web.Application:
    """Assemble the app; importing the sides here keeps `server` free of their details."""
    from schwab_stream.sim import control, oauth, streamer

    app = web.Application()
    state = SimState(config=config)
    app[STATE_KEY] = state
    oauth.setup(app, state)
    streamer.setup(app, state)
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
