"""A stop signal during `run`'s start-up (runtime.StopRequest)."""

from __future__ import annotations

import subprocess
import sys

from tests.env import clean_env

SCRIPT = """
import os, signal
from schwab_stream.runtime import StartupStopped, StopRequest

class Kills:
    def __del__(self):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10_000):  # the handler runs here, inside the finalizer
            pass

try:
    with StopRequest() as stop:
        Kills()
        print("recorded", stop.signal.name)
except StartupStopped:
    print("raised")
"""


def test_a_signal_inside_a_finalizer_stops_the_start_up_without_a_traceback() -> None:
    """Python swallows an exception raised in a finalizer and prints its traceback: the signal
    is recorded all the same (the start-up then stops at `hand_to`), and nothing is printed."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=clean_env(), timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["recorded", "SIGTERM"]
    assert done.stderr == ""
