"""Ctrl-C at `login --manual`'s paste prompt ends the login at once (issue #14 item 7): one line,
exit 130 (128 + SIGINT), no traceback; it used to wait for Enter, and three Ctrl-Cs ended in a
threading traceback. A real process: signals and a blocked read of stdin are the point."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from schwab_stream.cli.login import INTERRUPTED
from tests.env import clean_env


def _env(tmp_path: Path) -> dict[str, str]:
    return clean_env(
        SCHWAB_APP_KEY="key",
        SCHWAB_APP_SECRET="secret",
        SCHWAB_API_BASE_URL="http://127.0.0.1:9",  # never reached: nothing is pasted
        SCHWAB_TOKEN_PATH=str(tmp_path / "token.json"),
        PYTHONUNBUFFERED="1",
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("presses", [1, 3])
def test_ctrl_c_at_the_paste_prompt_ends_login_at_once(tmp_path: Path, presses: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "login", "--manual"],
        stdin=subprocess.PIPE,  # held open and never written: the read blocks like a terminal's
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=_env(tmp_path),
        cwd=tmp_path,
        text=True,
        # Ctrl-C as at a terminal, whoever started the suite: a background job of a script runs
        # with SIGINT ignored, which its children inherit (Python then leaves it ignored)
        preexec_fn=_default_sigint,
    )
    try:
        assert proc.stdout is not None
        shown = ""
        while "paste it here" not in shown:
            line = proc.stdout.readline()
            assert line, "login ended before its prompt"
            shown += line
        time.sleep(0.3)  # the reading thread is blocked on stdin now
        started = time.monotonic()
        for _ in range(presses):
            proc.send_signal(signal.SIGINT)
            time.sleep(0.05)
        # stdin stays open until it has ended: closing it (as `communicate` does) is an EOF,
        # which a login slow to handle the signal (a loaded machine) would read first
        proc.wait(timeout=10)
        took = time.monotonic() - started
        assert proc.stderr is not None
        stderr = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # A shell reports 130 for both: the exit code, or (a later press landing while the login
    # is already exiting on a loaded machine) death by SIGINT, after the same one line
    assert proc.returncode in (INTERRUPTED, -signal.SIGINT) and INTERRUPTED == 130, stderr
    assert "Traceback" not in stderr and "Fatal" not in stderr, stderr
    assert stderr.splitlines() == ["login interrupted: no tokens saved"], stderr
    assert took < 5
    assert not (tmp_path / "token.json").exists()
