"""Every token command, run as a user would (a subprocess in a folder with a `.env`), leaves `.env`
byte-for-byte alone and never prints a secret, even at DEBUG log level."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from schwab_stream.auth.sim_login import approve, login_against_simulator
from schwab_stream.auth.token_store import TokenStore
from schwab_stream.config import Settings
from schwab_stream.sim.server import SimThread
from tests.env import clean_env

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


class User:
    """Runs commands in `workdir` with only `.env` (and `extra`) as settings; keeps all output."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.outputs: list[str] = []
        self.env = clean_env()

    def argv(self, args: list[str]) -> list[str]:
        if args[0].endswith(".py"):
            return [sys.executable, str(SCRIPTS / args[0]), *args[1:]]
        return [sys.executable, "-m", "schwab_stream", *args]

    def run(self, *args: str, code: int = 0, extra: dict[str, str] | None = None) -> str:
        proc = subprocess.run(
            self.argv(list(args)),
            cwd=self.workdir,
            env={**self.env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=60,
        )
        self.outputs.append(proc.stdout + proc.stderr)
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc.stdout + proc.stderr

    def login(self, *args: str, person: Callable[[subprocess.Popen[bytes], str], None]) -> str:
        # Unbuffered bytes: reading the URL line must not swallow output that communicate()
        # would otherwise never see.
        proc = subprocess.Popen(
            self.argv(["login", *args]),
            cwd=self.workdir,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
        )
        assert proc.stdout is not None
        shown = b""
        while line := proc.stdout.readline():
            shown += line
            if line.strip().startswith(b"http"):
                person(proc, line.decode().strip())
                break
        out, err = proc.communicate(timeout=60)
        text = (shown + out + err).decode()
        self.outputs.append(text)
        assert proc.returncode == 0, text
        return text


def paste_redirect(proc: subprocess.Popen[bytes], url: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(approve(url).encode() + b"\n")


def browser(proc: subprocess.Popen[bytes], url: str) -> None:
    # verify=False: the login server's certificate is self-signed, made at run time.
    response = httpx.get(approve(url), verify=False, timeout=10)  # noqa: S501
    assert response.status_code == 200


async def test_commands_leave_env_alone_and_print_no_secret(
    oauth_sim: Callable[..., SimThread],
    sim_env: Callable[[SimThread, Path], dict[str, str]],
    auth_settings: Callable[..., Settings],
    tmp_path: Path,
) -> None:
    sim = oauth_sim(app_secret="app-secret-" + secrets.token_hex(8))
    workdir = tmp_path / "work"
    workdir.mkdir()
    token_path = tmp_path / "state" / "token.json"
    settings = {**sim_env(sim, token_path), "SCHWAB_LOG_LEVEL": "DEBUG"}
    dotenv = workdir / ".env"
    original = (
        "# settings for this test\n"
        + "".join(f"{name}={value}\n" for name, value in settings.items())
        + "SCHWAB_LOG_FORMAT=console\n"
    ).encode()
    dotenv.write_bytes(original)
    user = User(workdir)

    assert "login needed" in user.run("token", "status", code=3)
    assert json.loads(user.run("token", "status", "--json", code=3))["login_needed"] is True
    manual = user.login("--manual", person=paste_redirect)
    assert "Logged in" in manual and "within about 30 s" in manual
    assert "Logged in" in user.login("--no-browser", person=browser)
    assert "refresh token" in user.run("token", "status")
    status = json.loads(user.run("token", "status", "--json"))
    assert status["login_needed"] is False and status["access_seconds_left"] > 1700
    assert "nothing to do" in user.run("token", "refresh")
    assert "refreshed" in user.run("token", "refresh", "--force")

    # A schwab-py user's newer login, imported.
    theirs = await login_against_simulator(auth_settings(sim, tmp_path / "theirs.json"))
    schwab_py = tmp_path / "schwab-py-token.json"
    schwab_py.write_text(
        json.dumps(
            {
                "creation_timestamp": int(theirs.login_at) + 1,
                "token": {
                    "access_token": theirs.access_token,
                    "refresh_token": theirs.refresh_token,
                    "expires_at": theirs.access_expires_at,
                    "token_type": "Bearer",
                    "scope": "api",
                },
            }
        )
    )
    assert "imported" in user.run("token", "import", str(schwab_py))
    assert TokenStore(token_path).load().refresh_token == theirs.refresh_token
    user.run("schwab_token_manager.py", "status")
    user.run("verify_token_refresh.py")
    for args in (
        ["login"],
        ["token"],
        ["token", "status"],
        ["token", "refresh"],
        ["token", "import"],
    ):
        assert "Usage" in user.run(*args, "--help")
    user.run("schwab_token_manager.py", "--help")

    # Failures: one line each, the right exit code, still no secret.
    margin = {"SCHWAB_TOKEN_REFRESH_MARGIN": "soon"}
    bad = user.run("token", "refresh", code=1, extra=margin)
    assert "SCHWAB_TOKEN_REFRESH_MARGIN" in bad and len(bad.strip().splitlines()) == 1
    httpx.post(f"{sim.base_url}/sim/tokens/revoke").raise_for_status()
    dead = user.run("token", "refresh", "--force", code=3)
    assert "schwab-stream login" in dead
    user.run("verify_token_refresh.py", code=3)

    assert dotenv.read_bytes() == original
    assert sorted(p.name for p in workdir.iterdir()) == [".env"]
    final = TokenStore(token_path).load()
    leaked = [sim.config.app_secret, final.access_token, final.refresh_token]
    for grant in sim.state.tokens.grants:
        leaked.append(grant.refresh_token)
        leaked.extend(grant.access)
    output = "\n".join(user.outputs)
    assert "DEBUG" in output  # the debug logs were on, and still hold no secret
    assert [s for s in leaked if s in output] == []
