"""What every side of the simulator shares: its config and its state (a leaf module).

OAuth, the streamer and the control API each read one `SimState`; keeping it here, imported by
all of them and importing none of them, is what keeps the simulator's modules free of cycles.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from schwab_stream.sim.hours import MarketHours
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
    #: Where the market clock starts (aware); None follows the real calendar from now.
    market_time: datetime | None = None
    hours: MarketHours = field(default_factory=MarketHours)
    replay: Path | None = None
    replay_pace: bool = False
    startup_faults: list[str] = field(default_factory=list)
    #: Market-data REST calls accepted per 60 s (wall time) before 429 (0: no limit).
    rest_limit_per_minute: int = 120
    #: How far back minute history goes, in days before the market clock (UNVERIFIED: 45-90).
    history_days: int = 48
    #: Serve price history for futures (the reference says Schwab has none: off).
    futures_history: bool = False
    #: Answer a minute-history window with the whole sessions it touches (schwab-py#148).
    history_whole_days: bool = False
    #: Chance that a minute of a session has no trade, hence no bar (Schwab's history has some).
    bar_gap_rate: float = 0.0


@dataclass
class SimState:
    """What the sides share: config, counters, the token authority; sides add objects on `extra`."""

    config: SimConfig
    stats: Counter[str] = field(default_factory=Counter)
    #: Client requests by command (LOGIN, SUBS, ADD, ...; anything else is "other").
    commands: Counter[str] = field(default_factory=Counter)
    #: Market-data REST calls by endpoint, and their non-200 answers as status_N.
    rest: Counter[str] = field(default_factory=Counter)
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
