"""A disk with room for small files only (the state of a disk filling up): the archive says the
outage once and that it is over once, when every file waiting has been written, not each time a
small file fits between two big ones that do not."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import redis

from schwab_stream.archive import files

from .test_archive import Running, all_read, archivers, publish, tick, wait  # noqa: F401


def test_a_disk_with_room_for_small_files_only_is_one_outage(
    redis_url: str,
    tmp_path: Path,
    archivers: Callable[..., Running],  # noqa: F811
    monkeypatch: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # a seq skipped: the read that hands out the ticks also makes a one-row gap record
    publish(redis_url, [tick("AAPL", i) for i in (*range(1, 301), *range(400, 411))])
    client = redis.Redis.from_url(redis_url)
    full = threading.Event()
    full.set()
    real = files.write_aside

    def write_aside(table: pa.Table, temp: Path) -> int:
        if full.is_set() and table.num_rows > 10:  # the bar's file fits, the ticks' does not
            raise OSError(28, "No space left on device", str(temp))
        return real(table, temp)

    monkeypatch.setattr(files, "write_aside", write_aside)
    caplog.set_level(logging.INFO, logger="schwab_stream.archive")
    running = archivers("a")
    metrics = running.archiver.metrics
    wait(lambda: metrics.write_errors.labels("disk_full")._value.get() >= 3)
    assert metrics.files.labels("gap")._value.get() == 1  # the small file was written
    full.clear()
    wait(lambda: all_read(client))
    running.stop()
    said = [r.getMessage() for r in caplog.records]
    assert len([m for m in said if m.startswith("cannot write a file")]) == 1, said
    assert len([m for m in said if m.startswith("files can be written again")]) == 1, said
