"""The README's two consumer snippets, taken from README.md itself so they cannot drift, run as
programs against a Redis the real pipeline is filling."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from schwab_stream.pipeline import Pipeline
from schwab_stream.sim.server import SimThread

from .pipeline_helpers import make_settings, readme_snippet, wait_for, write_tokens

SEQ_LINE = re.compile(r"^(\d+) AAPL [\d.]+ [\d.]+$")


def snippet(name: str) -> str:
    return readme_snippet(f"consumer:{name}")


@asynccontextmanager
async def filling(sim: SimThread, redis_url: str, tmp_path: Path) -> AsyncIterator[None]:
    """The pipeline streaming AAPL into Redis for as long as the block runs."""
    token_path = tmp_path / "token.json"
    write_tokens(sim, token_path)
    pipeline = Pipeline.from_settings(
        make_settings(sim, redis_url, token_path), {"LEVELONE_EQUITIES": ["AAPL"]}
    )
    task = asyncio.create_task(pipeline.run())
    client = aioredis.Redis.from_url(redis_url)
    try:
        await wait_for(lambda: client.exists("schwab:latest:tick:AAPL"), timeout=15)
        yield
    finally:
        pipeline.stop()
        await asyncio.wait_for(task, 15)
        await client.aclose()


# What a terminal's Ctrl-C finds: Python's own SIGINT handler, even when this suite was started
# with SIGINT ignored (a background job in a shell without job control), which the child inherits.
CTRL_C_READY = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"


async def run_snippet(
    code: str, redis_url: str, lines: int, tmp_path: Path, stop: int = signal.SIGTERM
) -> list[str]:
    """Run `code` as a program until it has printed `lines` lines, then stop it (SIGTERM, or
    `stop`) and return everything it printed; with SIGINT (Ctrl-C) it must exit 0, silently."""
    script = tmp_path / "consumer.py"
    script.write_text((CTRL_C_READY if stop == signal.SIGINT else "") + code + "\n")
    env = {**os.environ, "REDIS_URL": redis_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out: list[str] = []
    deadline = time.monotonic() + 20
    try:
        while len(out) < lines:
            line = await asyncio.wait_for(proc.stdout.readline(), deadline - time.monotonic())
            if not line:
                raise AssertionError((await proc.stderr.read()).decode())
            out.append(line.decode().rstrip("\n"))
    finally:
        if proc.returncode is None:
            proc.send_signal(stop)
        rest, err = await proc.communicate()
    # Only whole lines: SIGTERM may cut a print in the middle (PYTHONUNBUFFERED writes each
    # piece of a print separately), and a cut line is not the snippet's output.
    out.extend(rest.decode().split("\n")[:-1])
    assert "Traceback" not in err.decode(), err.decode()
    if stop == signal.SIGINT:
        assert (proc.returncode, err.decode()) == (0, "")
    return out


def seqs(lines: list[str]) -> list[int]:
    found = []
    for line in lines:
        match = SEQ_LINE.match(line)
        assert match, line
        found.append(int(match.group(1)))
    return found


async def test_xread_consumer_prints_the_current_quote_then_every_update(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    async with filling(sim_factory(rate=50), redis_url, tmp_path):
        printed = await run_snippet(snippet("xread"), redis_url, 10, tmp_path)
    assert re.match(r"^now AAPL [\d.]+ [\d.]+$", printed[0]), printed[0]
    numbers = seqs(printed[1:])
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))


async def test_group_consumer_resumes_where_it_stopped_without_a_gap(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path
) -> None:
    async with filling(sim_factory(rate=50), redis_url, tmp_path):
        first = seqs(await run_snippet(snippet("group"), redis_url, 8, tmp_path))
        await asyncio.sleep(1.0)  # events keep arriving while no worker runs
        second = seqs(await run_snippet(snippet("group"), redis_url, 8, tmp_path))
    assert first == list(range(first[0], first[0] + len(first)))
    # Everything acknowledged is never seen again; whatever was printed but not acknowledged
    # when it was stopped comes again first; nothing that arrived meanwhile is skipped.
    assert first[-1] <= second[0] <= first[-1] + 1
    assert second == list(range(second[0], second[0] + len(second)))
    client = aioredis.Redis.from_url(redis_url)
    groups = await client.xinfo_groups("schwab:tick:AAPL")
    await client.aclose()
    assert [g["name"] for g in groups] == [b"quotes-db"]


@pytest.mark.parametrize("name", ["xread", "group"])
async def test_ctrl_c_stops_a_consumer_quietly(
    sim_factory: Callable[..., SimThread], redis_url: str, tmp_path: Path, name: str
) -> None:
    async with filling(sim_factory(rate=50), redis_url, tmp_path):
        printed = await run_snippet(snippet(name), redis_url, 3, tmp_path, stop=signal.SIGINT)
    assert len(printed) >= 3
