"""The bridge's heap does not keep a burst's buffers resident (runtime.py).

glibc raises its mmap threshold to the size of the largest mapped buffer freed, so after one
large publish flight the later ones are cut from the heap (`pin_mmap_threshold` stops that);
small buffers freed amid live ones stay resident until `trim_heap`. Each case runs in a fresh
interpreter: the settings and the heap are process-wide.
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


# 20,000 payloads of 1.5 KB, one in 16 kept alive: the freed ones sit amid live ones. Prints the
# resident bytes given back.
_FRAGMENTS = """
import os, sys
from schwab_stream.runtime import trim_heap

def resident() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

size = int(sys.argv[1])  # not a literal: the compiler would fold b"x" * 1500 into one constant
kept, freed = [], []
for i in range(20_000):
    (kept if i % 16 == 0 else freed).append(b"x" * size)
del freed
before = resident()
assert trim_heap()
print(before - resident())
"""


def test_trim_gives_back_pages_freed_amid_live_buffers() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _FRAGMENTS, "1500"], capture_output=True, text=True, check=True
    )
    assert int(done.stdout) >= 8 << 20  # of the ~28 MB freed
