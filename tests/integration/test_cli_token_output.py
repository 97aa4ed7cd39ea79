"""`schwab-stream login` and `token refresh` as a script sees them (stdout and stderr are pipes):
the command's own lines and nothing else, each result said once, no JSON log lines."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from schwab_stream.auth.sim_login import approve, login_against_simulator
from schwab_stream.config import Settings
from schwab_stream.sim.server import SimThread
from tests.env import clean_env

MakeSim = Callable[..., SimThread]
MakeEnv = Callable[[SimThread, Path], dict[str, str]]


def _env(sim_env: MakeEnv, sim: SimThread, token_path: Path, **extra: str) -> dict[str, str]:
    return clean_env(**sim_env(sim, token_path), **extra)


def _cli(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_login_reports_success_once(oauth_sim: MakeSim, sim_env: MakeEnv, tmp_path: Path) -> None:
    sim = oauth_sim()
    proc = _cli("login", "--manual", env=_env(sim_env, sim, tmp_path / "token.json"), cwd=tmp_path)
    assert proc.stdout is not None and proc.stdin is not None
    url = next(line.strip() for line in proc.stdout if line.strip().startswith("http"))
    proc.stdin.write(approve(url) + "\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    both = (out + err).lower()
    assert both.count("logged in") == 1, (out, err)
    assert "Logged in; tokens saved to" in out
    assert err == ""


def test_token_refresh_from_a_script_prints_one_plain_line(
    oauth_sim: MakeSim,
    auth_settings: Callable[..., Settings],
    sim_env: MakeEnv,
    tmp_path: Path,
) -> None:
    sim = oauth_sim()
    token_path = tmp_path / "token.json"
    asyncio.run(login_against_simulator(auth_settings(sim, token_path)))
    proc = _cli("token", "refresh", "--force", env=_env(sim_env, sim, token_path), cwd=tmp_path)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert out.startswith("access token refreshed: valid for") and out.count("\n") == 1, out
    assert err == "", err
