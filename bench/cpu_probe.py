"""Bench-only CPU-stability probe: a fixed unit of pure-Python work every 2 ms, its CPU time each.

It runs in its own process beside a latency row (bench/pipeline_bench.py). A unit's *thread CPU
time* does not grow when our own processes take the CPU from it (it is not running then), but it
does when the host slows the virtual CPU itself (the guest still counts the time as its own,
with no steal reported): a unit many times slower than the run's median is a slow window of the
host. About 5% of one CPU (a ~100 us unit every 2 ms).

    python bench/cpu_probe.py        # until stdin closes; then prints one line per unit:
                                     # wall start (ns, time.time_ns) and the unit's CPU ns
"""

from __future__ import annotations

import sys
import threading
import time

INTERVAL = 0.002
TARGET_NS = 100_000


def _unit(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i & 7
    return total


def _calibrate() -> int:
    n = 1_000
    while True:
        start = time.thread_time_ns()
        _unit(n)
        spent = time.thread_time_ns() - start
        if spent >= TARGET_NS // 4:
            return max(1, n * TARGET_NS // spent)
        n *= 2


def main() -> None:
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    n = _calibrate()
    samples: list[tuple[int, int]] = []
    while not stop.is_set():
        wall = time.time_ns()
        start = time.thread_time_ns()
        _unit(n)
        samples.append((wall, time.thread_time_ns() - start))
        time.sleep(INTERVAL)
    sys.stdout.write("".join(f"{wall} {cpu}\n" for wall, cpu in samples))


if __name__ == "__main__":
    main()
