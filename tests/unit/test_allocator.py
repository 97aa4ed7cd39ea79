"""The bridge's heap does not keep a burst's buffers: `pin_mmap_threshold` (runtime.py).

glibc raises its mmap threshold to the size of the largest mapped buffer freed, so after one
large publish flight the later ones are cut from the heap, which keeps its high-water mark
resident. Each case runs in a fresh interpreter: the setting is process-wide.
"""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    not hasattr(ctypes.CDLL(None), "mallinfo2"), reason="needs glibc 2.33+ (mallinfo2)"
)

# A flight of 8 MB, freed; then four of 1 MB alive at once. Prints how much the heap grew.
_BURSTS = """
import ctypes, sys
from schwab_stream.runtime import pin_mmap_threshold

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd",
        "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "pinned":
    assert pin_mmap_threshold()
first = b"x" * (8 << 20)
del first
heap = libc.mallinfo2().arena
later = [b"x" * (1 << 20) for _ in range(4)]
print(libc.mallinfo2().arena - heap)
"""


def heap_growth(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", _BURSTS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout)


def test_pinned_threshold_keeps_later_bursts_out_of_the_heap() -> None:
    assert heap_growth("pinned") < 1 << 20


def test_default_threshold_puts_later_bursts_in_the_heap() -> None:
    """The mechanism the pin is for: without it the same bursts grow the heap by their size."""
    assert heap_growth("default") >= 4 << 20
