#!/usr/bin/env python3
"""Turn the captured frames (tests/fixtures/schwab_frames.json) into a `sim --replay` JSONL file.

Keeps the server->client `data` and `notify` frames, in fixture order, one compact JSON per line.
Responses are left out: the simulator answers the client's own commands itself.

    python scripts/fixtures_to_jsonl.py > /tmp/fixtures.jsonl
    schwab-stream sim --replay /tmp/fixtures.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_INPUT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "schwab_frames.json"


def server_frames(fixtures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The data and notify frames a Schwab server sent, in order."""
    frames = []
    for entry in fixtures:
        message = entry.get("message")
        if entry.get("direction") != "server->client" or not isinstance(message, dict):
            continue
        if "data" in message or "notify" in message:
            frames.append(message)
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("input", nargs="?", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("-o", "--output", type=Path, help="output file (default: stdout)")
    args = parser.parse_args()
    fixtures = json.loads(args.input.read_text(encoding="utf-8"))
    lines = [
        json.dumps(f, separators=(",", ":"), ensure_ascii=False) for f in server_frames(fixtures)
    ]
    text = "\n".join(lines) + "\n"
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
