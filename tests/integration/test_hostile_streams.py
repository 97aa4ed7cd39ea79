"""Hostile entries and keys under the bridge's prefix, written by anyone who can write to its
Redis: `tail` and `archive` say what they can and never end in a traceback, and nothing a stream
holds reaches a terminal as a control sequence."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from schwab_stream.cli import main
from schwab_stream.cli.formatting import format_line, printable
from tests.env import clean_env

OSC_TITLE = "\x1b]0;pwned\x07"


def _hostile(url: str) -> None:
    client = redis.Redis.from_url(url)
    now = time.time_ns()
    tick = {"type": "tick", "service": "LEVELONE_EQUITIES", "seq": 1, "recv_ns": now, "bid": 1.0}
    client.xadd(b"schwab:tick:\xff\xfe", {"data": json.dumps({**tick, "symbol": "Z"})})
    client.xadd("schwab:tick:A*[?]", {"data": json.dumps({**tick, "symbol": "A*"})})
    client.xadd("schwab:tick:AAPL", {"data": json.dumps({**tick, "symbol": "AAPL" + OSC_TITLE})})
    client.xadd("schwab:tick:AAPL", {"data": b"\xff\xfe not utf8 " + OSC_TITLE.encode()})
    client.xadd("schwab:status", {"data": json.dumps({"type": "status", "state": OSC_TITLE})})
    client.hset("schwab:tick:HASH", "a", "b")
    client.close()


@pytest.mark.parametrize("as_json", [False, True])
def test_tail_shows_hostile_keys_and_entries_without_a_traceback_or_escapes(
    redis_url: str, as_json: bool
) -> None:
    _hostile(redis_url)
    args = ["tail", "--last", "10", "--redis-url", redis_url, *(["--json"] if as_json else [])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "\x1b" not in result.output and "\x07" not in result.output
    shown = "\\u001b]0;pwned\\u0007" if as_json else "\\x1b]0;pwned\\x07"
    assert shown in result.output
    assert "A*" in result.output  # a key with glob characters is read like any other


def test_archive_passes_over_a_key_that_is_not_utf8(redis_url: str, tmp_path: Path) -> None:
    _hostile(redis_url)
    client = redis.Redis.from_url(redis_url)
    client.delete("schwab:tick:AAPL", "schwab:tick:A*[?]", "schwab:status", "schwab:tick:HASH")
    client.close()
    command = [sys.executable, "-m", "schwab_stream", "archive", "--out", str(tmp_path / "a")]
    proc = subprocess.Popen(
        command,
        env=clean_env(REDIS_URL=redis_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, err = proc.communicate(timeout=5)  # it failed at its first look for streams
    except subprocess.TimeoutExpired:
        proc.terminate()  # still archiving, as it should: stopped as a supervisor would
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_format_line_writes_control_characters_as_escapes() -> None:
    line = format_line({"type": "tick\x1b[2J", "symbol": "A\x9b31m\nB", "recv_ns": 1}, color=True)
    assert "\x9b" not in line and "\n" not in line and "\x1b[2J" not in line
    assert printable("a\x00b\x7fc\u00e9") == "a\\x00b\\x7fc\u00e9"


@pytest.mark.parametrize(
    "state",
    [b"not json", b"[" * 100_000, b"\xff", b'{"services": 5}', b'{"keys": [{"key": 1}]}'],
    ids=["text", "deep", "binary", "no-keys", "wrong-types"],
)
def test_subscriptions_says_a_garbled_bridge_view_in_one_line(redis_url: str, state: bytes) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("schwab:subs:state", state)
    client.close()
    for extra in ([], ["--json"]):
        result = CliRunner().invoke(main, ["subscriptions", "--redis-url", redis_url, *extra])
        assert result.exit_code == 1, (result.output, result.exception)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        said = result.stderr.strip().splitlines()
        assert len(said) == 1 and "is not one a bridge writes" in said[0], said


def test_subscriptions_prints_a_bridges_view_with_control_characters_escaped(
    redis_url: str,
) -> None:
    view = {
        "at_ns": time.time_ns(),
        "keys": [
            {
                "service": "LEVELONE_EQUITIES",
                "key": "AAPL" + OSC_TITLE,
                "state": "refused",
                "holders": [{"holder": "settings", "kind": "settings"}],
                "last_data_ns": None,
                "refused": {"code": 11, "message": OSC_TITLE},
            }
        ],
    }
    client = redis.Redis.from_url(redis_url)
    client.set("schwab:subs:state", json.dumps(view))
    client.close()
    result = CliRunner().invoke(main, ["subscriptions", "--redis-url", redis_url])
    assert result.exit_code == 0, (result.output, result.exception)
    assert "AAPL\\x1b]0;pwned\\x07" in result.output and "\x1b" not in result.output
