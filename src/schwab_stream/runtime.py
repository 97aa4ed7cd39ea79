"""How the long-running commands run their event loop: uvloop when installed, and a garbage
collector that does not stall the hot path.

A full (gen-2) collection walks every object the interpreter holds, imports included, so on a
busy stream its pauses were the p99 latency; freezing the heap once start-up is done takes all
of that out of their reach. The gen-0 threshold stays at Python's default: a larger one made
each young collection much longer. The measurements are in docs/performance.md,
"Figures behind design choices".
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
