"""`schwab-stream demo` as a real process: it streams into Redis, stops by itself or on Ctrl-C,
and leaves no process, temp folder or touched `.env` behind."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from datetime import date, datetime
from pathlib import Path

import pytest
import redis
from rich.console import Console

from schwab_stream.cli.demo import DemoSettings, MarketClock, demo_option
from schwab_stream.cli.demo_view import ViewData, render
from schwab_stream.pipeline import Snapshot
from schwab_stream.redis_client import sync_redis
from schwab_stream.sim.clock import ET
from tests.env import clean_env
from tests.topologies import Cluster

DECOY_ENV = (
    "SCHWAB_APP_KEY=not-the-sim\nREDIS_URL=redis://127.0.0.1:1/0\nSCHWAB_REDIS_PREFIX=decoy\n"
)


def _demo_env(tmpdir: Path) -> dict[str, str]:
    """A TMPDIR we can inspect, and a hostile environment the demo must ignore."""
    env = clean_env()
    env.update(
        TMPDIR=str(tmpdir),
        REDIS_URL="redis://127.0.0.1:1/0",
        SCHWAB_LEVELONE_EQUITIES="DECOY",
        SCHWAB_API_BASE_URL="https://api.schwabapi.com",
    )
    return env


def _workdir(tmp_path: Path) -> tuple[Path, Path]:
    """(cwd with a decoy .env, an empty TMPDIR)."""
    cwd, tmpdir = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmpdir.mkdir()
    (cwd / ".env").write_text(DECOY_ENV)
    return cwd, tmpdir


def _start(cwd: Path, tmpdir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "schwab_stream", "demo", "--no-ui", *args],
        cwd=cwd,
        env=_demo_env(tmpdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, like a job in a terminal
    )


def _read_until(proc: subprocess.Popen[str], pattern: str, timeout: float = 20) -> list[str]:
    """Lines of stdout up to and including the first that matches."""
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    proc.kill()
    raise AssertionError(f"no line matching {pattern!r}: {lines}")


def _redis_processes(port: int) -> list[int]:
    """redis-server processes still serving `port` (redis rewrites its title to host:port)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"redis-server" in cmdline and f":{port}".encode() in cmdline:
            pids.append(int(entry.name))
    return pids


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _assert_nothing_left(port: int, tmpdir: Path, cwd: Path) -> None:
    assert _redis_processes(port) == []
    assert not _port_open(port)
    assert list(tmpdir.iterdir()) == []
    assert sorted(p.name for p in cwd.iterdir()) == [".env"]
    assert (cwd / ".env").read_text() == DECOY_ENV


def _embedded_port(lines: list[str]) -> int:
    match = re.search(r"redis\s+redis://127\.0\.0\.1:(\d+)/0 +\(embedded", "\n".join(lines))
    assert match, lines
    return int(match.group(1))


def test_demo_fills_the_given_redis_under_its_own_prefix_and_exits_0(
    redis_url: str, tmp_path: Path
) -> None:
    cwd, tmpdir = _workdir(tmp_path)
    args = ("--duration", "10", "--redis-url", redis_url, "--market-time", "2025-06-10T10:30")
    proc = _start(cwd, tmpdir, *args)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    client = redis.Redis.from_url(redis_url)
    option = demo_option(date.today())
    for key in ("AAPL", "MSFT", "NVDA", "SPY", "/ES", option):
        assert client.xlen(f"schwab-demo:tick:{key}") > 0, key
        assert json.loads(client.get(f"schwab-demo:latest:tick:{key}"))["symbol"] == key
    book = json.loads(client.get("schwab-demo:latest:level2:AAPL"))
    assert book["venue"] == "NASDAQ" and book["bids"] and book["asks"]
    assert client.xlen("schwab-demo:screener:NASDAQ_VOLUME_0") > 0
    assert client.xlen("schwab-demo:bar:AAPL") > 0  # --time-scale 10: a bar every 6 s
    assert not client.keys("schwab:*")  # `run`'s prefix holds no simulated event
    assert not client.keys("decoy:*")
    states = [json.loads(f[b"data"])["state"] for _, f in client.xrange("schwab-demo:status")]
    assert "subscribed" in states and states[-1] == "stopped"
    tick = json.loads(client.get("schwab-demo:latest:tick:AAPL"))
    session_start = datetime(2025, 6, 10, 10, 30, tzinfo=ET).timestamp() * 1000
    assert session_start <= tick["schwab_ts"] < session_start + 10 * 60_000  # market time
    client.close()
    assert "market      simulated session, Tue 10:30 ET, 10x" in out
    assert "prefix      schwab-demo" in out and "--prefix schwab-demo" in out
    status_lines = [line for line in out.splitlines() if re.match(r"^ +\d+s subscribed ", line)]
    assert len(status_lines) >= 7, out
    assert status_lines[-1].endswith("[simulated session, Tue 10:31 ET]"), status_lines[-1]
    assert f"events published to {redis_url}" in out and "The events stay in your Redis" in out
    assert list(tmpdir.iterdir()) == []


def test_demo_streams_into_a_redis_cluster_and_shows_it(tmp_path: Path) -> None:
    """The demo on `redis+cluster://` (#18): events land under the cluster's hash-tagged keys and
    the view reads them back (its quote lines show prices, not dashes)."""
    cwd, tmpdir = _workdir(tmp_path)
    cluster = Cluster()
    try:
        args = ("--duration", "8", "--redis-url", cluster.url, "--market-time", "2025-06-10T10:30")
        proc = _start(cwd, tmpdir, *args)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        client = sync_redis(cluster.url)
        assert client.xlen("schwab-demo:tick:{AAPL}") > 0
        assert json.loads(client.get("schwab-demo:latest:tick:{AAPL}"))["symbol"] == "AAPL"
        states = [json.loads(f[b"data"])["state"] for _, f in client.xrange("{schwab-demo}:status")]
        assert "subscribed" in states and states[-1] == "stopped"
        client.close()
        assert "the view could not read redis" not in out + err
        assert f"events published to {cluster.url}" in out
    finally:
        cluster.stop()


@pytest.mark.parametrize(
    ("now", "start", "simulated"),
    [
        ("2025-06-10T11:02", "2025-06-10T11:02", False),  # the regular session: the real clock
        ("2025-06-10T08:00", "2025-06-09T10:30", True),  # pre-market: yesterday's session
        ("2025-06-10T10:00", "2025-06-10T10:00", False),
        ("2025-06-14T03:00", "2025-06-13T10:30", True),  # Saturday night: Friday's
        ("2025-06-19T12:00", "2025-06-18T10:30", True),  # Juneteenth: the day before
    ],
)
def test_the_demo_is_live_in_the_regular_session_and_a_simulated_one_otherwise(
    now: str, start: str, simulated: bool
) -> None:
    clock = MarketClock.choose(datetime.fromisoformat(now).replace(tzinfo=ET), 10, None)
    assert clock.start == datetime.fromisoformat(start).replace(tzinfo=ET)
    assert clock.simulated is simulated
    assert clock.label(0).startswith("simulated session, " if simulated else "live, ")


def test_the_demo_label_says_the_day_time_and_session() -> None:
    friday = MarketClock(datetime(2025, 6, 13, 10, 30, tzinfo=ET), True, 10)
    assert friday.label(0) == "simulated session, Fri 10:30 ET"
    assert friday.label(60 * 33) == "simulated session, Fri 16:00 ET (post-market)"
    assert friday.label(60 * 57) == "simulated session, Fri 20:00 ET (closed)"


def test_demo_on_embedded_redis_leaves_nothing_behind(tmp_path: Path) -> None:
    cwd, tmpdir = _workdir(tmp_path)
    proc = _start(cwd, tmpdir, "--duration", "5")  # long enough to see ticks, then it cleans up
    try:
        lines = _read_until(proc, r"\d+s subscribed ")
        port = _embedded_port(lines)
        assert any(re.match(rf"temp files +{re.escape(str(tmpdir))}/", line) for line in lines)
        client = redis.Redis.from_url(f"redis://127.0.0.1:{port}/0")
        deadline = time.monotonic() + 10
        while not client.xlen("schwab-demo:tick:AAPL"):
            assert time.monotonic() < deadline, "no AAPL ticks in the embedded Redis"
            time.sleep(0.1)
        client.close()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "The embedded Redis stopped with the demo" in out
    _assert_nothing_left(port, tmpdir, cwd)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP], ids=["ctrl-c", "hangup"])
def test_ctrl_c_or_a_closed_terminal_ends_the_demo_cleanly_with_exit_0(
    tmp_path: Path, sig: signal.Signals
) -> None:
    cwd, tmpdir = _workdir(tmp_path)
    proc = _start(cwd, tmpdir)  # no --duration: runs until interrupted
    try:
        lines = _read_until(proc, r"\d+s subscribed ")
        port = _embedded_port(lines)
        os.killpg(proc.pid, sig)  # what a terminal does: the whole process group
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "demo ended (exit 0)" in out
    assert "Traceback" not in err
    _assert_nothing_left(port, tmpdir, cwd)


def test_live_view_runs_without_a_terminal(tmp_path: Path) -> None:
    cwd, tmpdir = _workdir(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "schwab_stream", "demo", "--duration", "3"],
        cwd=cwd,
        env={**_demo_env(tmpdir), "COLUMNS": "140"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Quotes (schwab-demo:latest:tick:*)" in done.stdout and "Pipeline" in done.stdout
    assert "simulated session, " in done.stdout or "live, " in done.stdout
    assert list(tmpdir.iterdir()) == []


def test_a_redis_server_that_will_not_start_is_one_line_and_exit_1(tmp_path: Path) -> None:
    """Before: a RuntimeError traceback. Now: what the server said, in one line, exit 1."""
    cwd, tmpdir = _workdir(tmp_path)
    broken = tmp_path / "bin" / "redis-server"
    broken.parent.mkdir()
    broken.write_text(
        "#!/bin/sh\necho '*** FATAL CONFIG FILE ERROR ***' >&2\necho 'Bad port' >&2\nexit 1\n"
    )
    broken.chmod(0o755)
    done = subprocess.run(
        [sys.executable, "-m", "schwab_stream", "demo", "--no-ui", "--duration", "3"],
        cwd=cwd,
        env={**_demo_env(tmpdir), "SCHWAB_STREAM_REDIS_SERVER": str(broken)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    said = "*** FATAL CONFIG FILE ERROR *** / Bad port"
    assert [line for line in done.stderr.splitlines() if line.strip()] == [
        f"schwab-stream demo: redis-server exited at start: {said}"
    ]
    assert list(tmpdir.iterdir()) == []


@pytest.mark.parametrize(
    ("today", "symbol"),
    [
        (date(2026, 11, 24), "AAPL  270115C00200000"),
        (date(2026, 10, 1), "AAPL  261218C00200000"),
        (date(2024, 3, 31), "AAPL  240517C00200000"),
    ],
)
def test_demo_option_is_a_third_friday_two_months_out(today: date, symbol: str) -> None:
    assert demo_option(today) == symbol
    assert date(2000 + int(symbol[6:8]), int(symbol[8:10]), int(symbol[10:12])).weekday() == 4


def test_demo_settings_ignore_env_and_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(DECOY_ENV)
    monkeypatch.setenv("SCHWAB_LEVELONE_EQUITIES", "DECOY")
    monkeypatch.setenv("SCHWAB_WATCHDOG_SECONDS", "1")
    settings = DemoSettings(app_key="sim", redis_url="redis://127.0.0.1:2/0")
    assert settings.app_key == "sim" and settings.redis_url == "redis://127.0.0.1:2/0"
    assert settings.redis_prefix == "schwab" and settings.watchdog_seconds == 45
    assert settings.subscriptions() == {}


def test_render_shows_quotes_book_and_health() -> None:
    snap = Snapshot("subscribed", 1234, 80.0, 0.5, 5.8, 0, 2, 1790.0, 604_000.0)
    view = ViewData(
        elapsed=12,
        snapshot=snap,
        quotes=[
            (
                "AAPL",
                {
                    "bid": 190.95,
                    "ask": 190.96,
                    "last": 190.99,
                    "volume": 6131185,
                    "net_change": -0.13,
                    "close": 191.12,
                    "seq": 150,
                },
            ),
            ("/ES", None),
        ],
        book={
            "symbol": "AAPL",
            "venue": "NASDAQ",
            "bids": [{"price": 191.07, "size": 7800, "count": 4}],
            "asks": [{"price": 191.08, "size": 7100, "count": 2}],
        },
    )
    console = Console(width=140, record=True)
    console.print(render(view, "redis://127.0.0.1:1/0", 20, "schwab"))
    text = console.export_text()
    for expected in (
        "190.95",
        "6,131,185",
        "-0.13 (-0.07%)",
        "waiting",
        "Book AAPL NASDAQ",
        "7,800",
        "191.08",
        "1,234 (80/s)",
        "p50 0.5 ms  p99 5.8 ms",
        "29 min 50 s",
        "6 d 23 h",
        "12 s of 20 s",
    ):
        assert expected in text, expected


def _full_view() -> ViewData:
    """Everything the demo subscribes to, with big numbers, as on a busy run."""
    snap = Snapshot("subscribed", 123_456, 812.0, 0.6, 10.1, 0, 2, 1790.0, 604_000.0)
    quote = {
        "bid": 190.95,
        "ask": 190.96,
        "last": 190.99,
        "volume": 61_311_850,
        "net_change": -10.13,
        "close": 191.12,
        "seq": 150_000,
    }
    symbols = ("AAPL", "MSFT", "NVDA", "SPY", demo_option(date(2026, 11, 24)), "/ES")
    level = [{"price": 1190.07 + i, "size": 17_800, "count": 14} for i in range(5)]
    return ViewData(
        elapsed=12,
        snapshot=snap,
        quotes=[(symbol, dict(quote)) for symbol in symbols],
        book={"symbol": "AAPL", "venue": "NASDAQ", "bids": level, "asks": level},
        bar={
            "type": "bar",
            "symbol": "AAPL",
            "open": 190.1,
            "high": 191.2,
            "low": 189.9,
            "close": 190.5,
            "volume": 12_345,
        },
        screener={"symbol": "NASDAQ_VOLUME_0", "items": [{"symbol": s} for s in symbols[:4]]},
    )


def test_render_fits_an_80x24_terminal() -> None:
    console = Console(width=80, height=24, record=True, file=io.StringIO())
    console.print(render(_full_view(), "redis://127.0.0.1:65535/0", 20, "schwab"))
    lines = console.export_text().rstrip("\n").split("\n")
    for line in lines:
        assert len(line) <= 80, line
    assert len(lines) <= 23, "\n".join(lines)  # one line left for the cursor under Live
    text = "\n".join(lines)
    assert "Chg" in text and "-10.13" in text
    assert "1,190.07" in text and "1,191.07" in text  # book prices whole
    assert re.search(r"\d…", text) is None, text  # no number cut by an ellipsis
    assert "p50 0.6 ms p99 10.1 ms" in text  # the latency on one line
    assert "12 s of 20 s" in text
