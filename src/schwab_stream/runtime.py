"""How the long-running commands run their event loop: uvloop when installed, a garbage
collector that does not stall the hot path, an allocator that gives large buffers back, and stop
signals caught from the first moment.

A full (gen-2) collection walks every object the interpreter holds, imports included, so on a
busy stream its pauses were the p99 latency; freezing the heap once start-up is done takes all
of that out of their reach. The gen-0 threshold stays at Python's default: a larger one made
each young collection much longer. The measurements are in docs/performance.md,
"Figures behind design choices".
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import signal
import sys
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any, Final, TypeVar

T = TypeVar("T")


def freeze_heap() -> None:
    """Move everything alive now (modules, classes, settings, the pipeline's objects) out of
    the collector's reach: later collections only walk what was allocated since. Call it once
    start-up is done. Reference counting still frees frozen objects; only a cycle among them
    would never be collected, a one-off cost for what start-up left behind."""
    gc.collect()
    gc.freeze()


#: Buffers from this size up get a mapping of their own, unmapped when freed (glibc's default)
MMAP_THRESHOLD: Final = 128 * 1024
_M_MMAP_THRESHOLD: Final = -3  # mallopt's parameter number (malloc.h)
#: Seconds between two returns of the heap's free pages to the system
TRIM_EVERY: Final = 10.0


def _libc_function(name: str) -> Callable[..., int] | None:
    """A function of the C library, or None where it has none (not glibc)."""
    try:
        function: Callable[..., int] = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    return function


def pin_mmap_threshold() -> bool:
    """Keep glibc from moving its mmap threshold up. By default it rises to the size of the
    largest mapped buffer freed, so after one publish flight of a few MB every later one is cut
    from the heap, and the heap keeps the high-water mark of the largest burst resident: RSS
    climbed with the biggest flight seen, not with anything alive. False where the C library
    has no such setting (not glibc)."""
    mallopt = _libc_function("mallopt")
    return mallopt is not None and bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def trim_heap() -> bool:
    """Give the heap's free pages back to the system. A flight's payloads are each too small
    for a mapping of their own, so a burst still leaves free pages amid the heap, where glibc's
    own trimming (the top of the heap only) never reaches. False where there is no
    malloc_trim (not glibc)."""
    trim = _libc_function("malloc_trim")
    if trim is None:
        return False
    trim(0)
    return True


async def trim_heap_every(seconds: float) -> None:
    """`trim_heap` every `seconds`, for as long as the command runs."""
    if not trim_heap():
        return
    while True:
        await asyncio.sleep(seconds)
        trim_heap()


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop when the `fast` extra is installed (less per-wake-up overhead
    in the loop itself)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


#: What stops a long-running command: Ctrl-C, a supervisor, a closed terminal.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StartupStopped(BaseException):
    """A stop signal during `run`'s start-up, before its event loop: nothing is running yet,
    so the start-up unwinds at once (a BaseException, so no `except Exception` swallows it)."""


class StopRequest:
    """Stop signals from the first line of `run`, before its event loop can take them.

    `run` spends a few hundred milliseconds importing and building its parts before its loop
    runs; a SIGTERM then used to kill it unannounced (a Ctrl-C printed "Aborted!" and exited 1),
    and one just after went on to connect and log in. Inside `with StopRequest()`, a signal
    raises `StartupStopped` where the start-up is; after `defer()` (the loop is about to start)
    it is only recorded, and `hand_to` passes stopping to the loop, at once if one came already.
    Leaving the block puts the previous handlers back.
    """

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._deferred = False
        self._previous: dict[signal.Signals, Any] = {}
        self._unraisable_hook = sys.unraisablehook

    def __enter__(self) -> StopRequest:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        self._unraisable_hook = sys.unraisablehook
        sys.unraisablehook = self._unraisable
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        sys.unraisablehook = self._unraisable_hook

    def _unraisable(self, unraisable: Any) -> None:
        """A signal that lands inside a finalizer (`__del__`, a weakref callback) raises there,
        and Python swallows it with a traceback on stderr: it is recorded all the same, so the
        start-up still stops, at `hand_to`; no traceback for it."""
        if not isinstance(unraisable.exc_value, StartupStopped):
            self._unraisable_hook(unraisable)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is None:
            self.signal = signal.Signals(signum)
        if not self._deferred:
            raise StartupStopped(self.signal)

    def defer(self) -> None:
        """From now on a signal is only recorded, for `hand_to` (call it just before the loop)."""
        self._deferred = True

    def hand_to(self, loop: asyncio.AbstractEventLoop, stop: Callable[[], None]) -> bool:
        """From now on every stop signal calls `stop` on `loop`; True (and `stop` called) when
        one came already."""
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._stop_on, sig, stop)
        if self.signal is not None:
            stop()
            return True
        return False

    def _stop_on(self, sig: signal.Signals, stop: Callable[[], None]) -> None:
        if self.signal is None:
            self.signal = sig
        stop()
