"""How the long-running commands run their event loop: uvloop when installed, and a garbage
collector that does not stall the hot path.

Measured on the bench (docs/performance.md): a full (gen-2) collection walks every object the
interpreter holds, imports included (35-90 ms on the bench machine, every few seconds at 2,500
frames/s); those pauses were the p99 latency. The gen-0 threshold stays at Python's default: a
larger one made each young collection longer (0.3-4 ms at 5,000-20,000 instead of ~0.05 ms).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def freeze_heap() -> None:
    """Move everything alive now (modules, classes, settings, the pipeline's objects) out of
    the collector's reach: later collections only walk what was allocated since. Call it once
    start-up is done. Reference counting still frees frozen objects; only a cycle among them
    would never be collected, a one-off cost for what start-up left behind."""
    gc.collect()
    gc.freeze()


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop when the `fast` extra is installed (less per-wake-up overhead
    in the loop itself)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
