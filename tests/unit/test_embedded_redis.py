from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from schwab_stream.embedded_redis import EmbeddedRedis, find_redis_server
from schwab_stream.errors import EmbeddedRedisError, ExitCode


def test_embedded_redis_starts_serves_and_cleans_up() -> None:
    server = EmbeddedRedis().start()
    folder = server.dir
    assert folder is not None and folder.exists()
    assert "v=" in server.version()
    client = redis.Redis.from_url(server.url)
    client.xadd("s", {"data": b"x"}, maxlen=10, approximate=True)
    assert client.xlen("s") == 1
    assert client.config_get("save")["save"] == ""
    client.close()
    proc = server.proc
    server.stop()
    assert proc is not None and proc.poll() is not None
    assert not folder.exists()


def _fake_server(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "redis-server"
    path.write_text(f"#!/bin/sh\n{script}\n")
    path.chmod(0o755)
    return path


def test_a_server_that_exits_at_start_is_one_error_in_one_line(tmp_path: Path) -> None:
    """Before: a bare RuntimeError with the server's lines in it (a traceback in the demo)."""
    fake = _fake_server(tmp_path, "echo 'FATAL CONFIG FILE ERROR' >&2; echo 'Bad port' >&2; exit 1")
    server = EmbeddedRedis(binary=fake)
    with pytest.raises(EmbeddedRedisError) as info:
        server.start()
    assert str(info.value) == "redis-server exited at start: FATAL CONFIG FILE ERROR / Bad port"
    assert info.value.exit_code == ExitCode.FAILED and info.value.kind == "embedded_redis"
    assert server.proc is None and server.dir is None  # stopped and removed


def test_a_server_that_never_answers_is_the_same_error(tmp_path: Path) -> None:
    server = EmbeddedRedis(binary=_fake_server(tmp_path, "exec sleep 30"))
    with pytest.raises(EmbeddedRedisError, match=r"did not answer on port \d+ in 0.3s"):
        server.start(timeout=0.3)
    assert server.proc is None and server.dir is None


def test_a_named_binary_that_is_not_executable_is_the_same_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCHWAB_STREAM_REDIS_SERVER", str(tmp_path / "nothing-here"))
    with pytest.raises(EmbeddedRedisError, match=r"REDIS_SERVER=.*: not an executable"):
        find_redis_server()


def test_a_killed_and_restarted_server_leaves_one_folder() -> None:
    server = EmbeddedRedis().start()
    first = server.dir
    server.kill()
    server.start()
    second = server.dir
    assert first is not None and not first.exists()
    assert second is not None and second.exists()
    server.stop()
    assert not second.exists()


# A child Python that starts a server, prints its pid and folder, then waits: kill it, or let it
# exit after `detach()`.
CHILD = """
import sys, time
from schwab_stream.embedded_redis import EmbeddedRedis
server = EmbeddedRedis().start()
print(server.proc.pid, server.dir, flush=True)
if sys.argv[1] == "detach":
    server.detach()
else:
    time.sleep(60)
"""


def start_child(mode: str) -> tuple[subprocess.Popen[str], int, Path]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    with child.stdout:
        pid, folder = child.stdout.readline().split()
    return child, int(pid), Path(folder)


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for init, which may be slow to reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_sigkilled_owner_takes_its_server_and_folder_along() -> None:
    child, pid, folder = start_child("wait")
    assert running(pid) and folder.is_dir()
    child.kill()  # SIGKILL: no atexit, no finally
    child.wait(timeout=5)
    deadline = time.monotonic() + 10
    while (running(pid) or folder.exists()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not running(pid), "redis-server outlived its SIGKILLed owner"
    assert not folder.exists()


def test_detach_keeps_the_server_after_a_normal_exit() -> None:
    child, pid, folder = start_child("detach")
    try:
        assert child.wait(timeout=10) == 0
        time.sleep(0.3)  # a watcher that had not been released would stop it now
        assert running(pid) and folder.is_dir()
    finally:
        if running(pid):
            os.kill(pid, signal.SIGTERM)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_server_started_from_a_thread_outlives_the_thread() -> None:
    started: list[EmbeddedRedis] = []
    thread = threading.Thread(target=lambda: started.append(EmbeddedRedis().start()))
    thread.start()
    thread.join()
    server = started[0]
    time.sleep(0.2)
    client = redis.Redis.from_url(server.url)
    assert client.ping()
    client.close()
    server.stop()
