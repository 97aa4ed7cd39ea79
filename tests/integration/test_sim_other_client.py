"""An unmodified schwab-py, in a throw-away venv outside the project's dependencies, logs in,
subscribes (ADD first, then SUBS, UNSUBS) and reads data through the simulator with only its
network destination changed (scripts/other_client_check.py; issue #15)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_PYTHON = ROOT / ".venv-bench" / "bin" / "python"


def _has_schwab_py() -> bool:
    if not BENCH_PYTHON.exists():
        return False
    probe = [str(BENCH_PYTHON), "-c", "import schwab.streaming, schwab_stream.sim.server"]
    return subprocess.run(probe, capture_output=True, check=False, timeout=60).returncode == 0


@pytest.mark.skipif(
    not _has_schwab_py(),
    reason="needs .venv-bench with schwab-py and this project (`./dev bench` makes it)",
)
def test_schwab_py_streams_through_the_simulator_unmodified() -> None:
    done = subprocess.run(
        [str(BENCH_PYTHON), str(ROOT / "scripts" / "other_client_check.py")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] and all(summary["checks"].values()), summary["checks"]
    assert summary["commands"]["ADD"] == 1 and summary["commands"]["LOGIN"] == 1
