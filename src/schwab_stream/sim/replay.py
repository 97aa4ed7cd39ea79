"""Replay of recorded server frames (`--replay FILE.jsonl`, one frame per line, sent as written).

A frame goes out, in file order, once the client can take it: a frame that names no subscribable
service (a heartbeat, an ADMIN notify) as soon as the client is logged in, any other as soon as the
client is subscribed to at least one service named in it. Lines are sent byte for byte, so real
captures replay exactly as recorded (a line that is not JSON is sent too, as a garbage frame, and
so is a line nested too deep to parse: it names no service, and `load_replay` counts such lines).
With `--replay-pace`, consecutive frames keep their recorded spacing (from their timestamps).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

log = logging.getLogger(__name__)

#: A recorded gap longer than this (or negative) is a seam between captures: no wait.
MAX_PACE_GAP_MS = 60_000


@dataclass(frozen=True)
class ReplayFrame:
    text: str
    services: frozenset[str]  # subscribable services named in the frame (ADMIN excluded)
    timestamp_ms: int | None

    def gap_after(self, previous: ReplayFrame) -> float:
        """Seconds to wait after `previous` was sent, at the recorded pace."""
        if self.timestamp_ms is None or previous.timestamp_ms is None:
            return 0.0
        gap = self.timestamp_ms - previous.timestamp_ms
        return gap / 1000 if 0 <= gap <= MAX_PACE_GAP_MS else 0.0


def parse_frame(text: str) -> ReplayFrame:
    """Which services a frame names and its timestamp (the first one found in it). A line we
    cannot parse (not JSON, or nested past the recursion limit) names none."""
    return _parse(text)[0]


def _parse(text: str) -> tuple[ReplayFrame, bool]:
    """The frame, and whether its line could be parsed."""
    try:
        frame = msgspec.json.decode(text)
    except msgspec.DecodeError:
        return ReplayFrame(text, frozenset(), None), True  # plain garbage: sent as recorded
    except (RecursionError, MemoryError, ValueError, OverflowError, TypeError):
        return ReplayFrame(text, frozenset(), None), False
    services: set[str] = set()
    stamp: int | None = None
    if isinstance(frame, dict):
        for kind in ("data", "response", "notify"):
            items = frame.get(kind)
            if not isinstance(items, list):
                continue
            for item in items:
                if not isinstance(item, dict):
                    continue
                service = item.get("service")
                if isinstance(service, str) and service != "ADMIN":
                    services.add(service)
                stamp = stamp if stamp is not None else _timestamp(item)
    return ReplayFrame(text, frozenset(services), stamp), True


def _timestamp(item: dict[str, Any]) -> int | None:
    value = item.get("timestamp", item.get("heartbeat"))
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def load_replay(path: Path) -> list[ReplayFrame]:
    """Every non-blank line of a JSONL file, in order; lines that could not be parsed (nested
    too deep) are still sent as written, and said once, with their count, in the log."""
    lines = path.read_text(encoding="utf-8").splitlines()
    frames: list[ReplayFrame] = []
    unparsed: list[int] = []
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        frame, parsed = _parse(text)
        frames.append(frame)
        if not parsed:
            unparsed.append(number)
    if unparsed:
        log.warning(
            "replay %s: %d line(s) could not be parsed (nested too deep?), first at line %d: "
            "sent as written, as garbage frames",
            path,
            len(unparsed),
            unparsed[0],
        )
    return frames
