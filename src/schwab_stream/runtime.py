"""How the long-running commands run their event loop: uvloop when installed, and a garbage
collector that does not stall the hot path.

Measured on the bench (docs/performance.md): with the default collector, a full (gen-2)
collection walks every object the interpreter holds, imports included (35-90 ms on the bench
machine, a few times a minute at 2,500 frames/s); those pauses were the p99 latency.
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
    start-up is done; what is frozen is never freed, so do not call it in a loop."""
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
