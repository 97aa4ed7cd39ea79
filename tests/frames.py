"""The real captured frames, loaded one way for every test (a copy lives in tests/fixtures so a
clone is self-contained; ../shared is the source)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

LOCAL_FIXTURES = Path(__file__).resolve().parent / "fixtures" / "schwab_frames.json"
SHARED_FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "schwab_frames.json"


@cache
def _text() -> str:
    path = LOCAL_FIXTURES if LOCAL_FIXTURES.exists() else SHARED_FIXTURES
    return path.read_text()


def load_frames() -> list[dict[str, Any]]:
    """A fresh list of the captured frames (callers may change theirs)."""
    frames: list[dict[str, Any]] = json.loads(_text())
    return frames
