"""Alternating A/B rounds of the quick bench: an older commit against the working tree.

    .venv-bench/bin/python bench/ab.py REV [--rounds 3]

REV is checked out into a temporary git worktree; each round runs that tree's own
`bench/run.py --quick`, then this tree's, in the same venv (PYTHONPATH picks whose
`schwab_stream` is imported, the `run` subprocesses included), so a slow spell of a shared host
falls on both sides. Prints the throughput, latency, memory and start-up rows of every round,
side by side. Everything stays on loopback, as in `bench/run.py`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = ("throughput", "latency", "memory", "start-up")


def quick(tree: Path) -> list[str]:
    """One quick bench of `tree`: its table's rows that this comparison is about."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    out = subprocess.run(
        [sys.executable, "bench/run.py", "--quick"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return [" ".join(line.split()) for line in out.splitlines() if line.startswith(ROWS)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the older commit (A); B is this working tree")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="schwab-stream-ab-") as tmp:
        old = Path(tmp) / "a"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), args.rev],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for n in range(1, args.rounds + 1):
                for side, tree in (("A " + args.rev, old), ("B working tree", ROOT)):
                    print(f"# round {n}, {side}", flush=True)
                    for row in quick(tree):
                        print(f"  {row}", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(old)], cwd=ROOT)


if __name__ == "__main__":
    main()
