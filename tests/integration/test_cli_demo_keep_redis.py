"""`schwab-stream demo --keep-redis` leaves the embedded Redis running after a normal exit, even
though an embedded Redis is otherwise stopped when its owner dies (see test_embedded_redis.py)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import redis

from .test_demo import _start, _workdir


def test_keep_redis_leaves_the_embedded_redis_running_with_the_events(tmp_path: Path) -> None:
    cwd, tmpdir = _workdir(tmp_path)
    proc = _start(cwd, tmpdir, "--duration", "3", "--keep-redis")
    try:
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    kept = re.search(r"keeps running \(pid (\d+)\)", out)
    folder = re.search(r"kill \d+; rm -r (\S+)", out)
    url = re.search(r"export REDIS_URL=(\S+)", out)
    assert "--prefix schwab-demo" in out and "XREVRANGE schwab-demo:tick:AAPL" in out, out
    assert kept and folder and url, out
    pid = int(kept.group(1))
    try:
        time.sleep(0.5)  # a watcher that had not been told would have stopped it by now
        client = redis.Redis.from_url(url.group(1))
        assert client.xlen("schwab-demo:tick:AAPL") > 0  # a prefix `run` does not use
        assert not client.keys("schwab:*")
        client.close()
        assert Path(folder.group(1)).is_dir()
    finally:
        os.kill(pid, signal.SIGTERM)
        shutil.rmtree(folder.group(1), ignore_errors=True)
