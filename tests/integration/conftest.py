"""Fixtures for the token tests: a simulator whose callback URL is a free local port, and settings
aimed at it that ignore the developer's own `.env` and shell variables."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from schwab_stream.config import Settings
from schwab_stream.sim.server import SimThread


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def oauth_sim(sim_factory: Callable[..., SimThread]) -> Callable[..., SimThread]:
    """Start a simulator (SimConfig fields as keywords) with a callback on a free local port."""

    def make(**config: Any) -> SimThread:
        config.setdefault("callback_url", f"https://127.0.0.1:{_free_port()}")
        return sim_factory(**config)

    return make


@pytest.fixture
def auth_settings() -> Callable[..., Settings]:
    """Settings(sim, token_path, **overrides) pointing at the simulator."""

    def make(sim: SimThread, token_path: Path, **overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "app_key": sim.config.app_key,
            "app_secret": sim.config.app_secret,
            "api_base_url": sim.base_url,
            "callback_url": sim.config.callback_url,
            "token_path": token_path,
            "token_refresh_margin": 300.0,
        }
        values.update(overrides)
        return Settings(_env_file=None, **values)

    return make


@pytest.fixture
def sim_env() -> Callable[[SimThread, Path], dict[str, str]]:
    """The same settings as environment variables, for subprocesses."""

    def make(sim: SimThread, token_path: Path) -> dict[str, str]:
        return {
            "SCHWAB_APP_KEY": sim.config.app_key,
            "SCHWAB_APP_SECRET": sim.config.app_secret,
            "SCHWAB_API_BASE_URL": sim.base_url,
            "SCHWAB_CALLBACK_URL": sim.config.callback_url,
            "SCHWAB_TOKEN_PATH": str(token_path),
        }

    return make
