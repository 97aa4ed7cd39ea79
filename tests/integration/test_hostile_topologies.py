"""Redis URLs of today's topologies aimed where they should not be, with a password in each: the
commands say so in one line (never a traceback, never the password), and `backfill` serves
`redis+sentinel://` and `redis+cluster://` like every other command, writing a cluster's bars
where the bridge keeps them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from schwab_stream.embedded_redis import EmbeddedRedis
from schwab_stream.redis_client import diagnose
from schwab_stream.redis_topology import Cause
from schwab_stream.sim.server import SimThread
from tests.env import clean_env
from tests.topologies import Cluster

from .pipeline_helpers import write_tokens
from .test_cli_backfill import FROM, TO

PW = "Zq9topologyPW"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "schwab_stream", *args],
        env=env or clean_env(SCHWAB_APP_KEY="k", SCHWAB_APP_SECRET="s"),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def sentinel() -> Iterator[EmbeddedRedis]:
    """A lone sentinel (monitoring nothing that answers): not a data node."""
    server = EmbeddedRedis(
        config="sentinel monitor bridge 127.0.0.1 1 1\n", extra_args=("--sentinel",)
    ).start()
    yield server
    server.stop()


async def test_a_scheme_that_does_not_match_a_sentinel_or_a_server_is_named(
    sentinel: EmbeddedRedis, redis_server: EmbeddedRedis
) -> None:
    """What /healthz and the log say (redis_client.diagnose): not 'writes fail' (out of memory,
    no permission), 'cannot connect' or 'use redis://' when the URL's scheme is the mistake."""
    at_sentinel, at_server = f"127.0.0.1:{sentinel.port}", f"127.0.0.1:{redis_server.port}"
    for url, cause, address in (
        (f"redis://{at_sentinel}/0", Cause.IS_SENTINEL, at_sentinel),
        (f"redis+cluster://{at_sentinel}", Cause.IS_SENTINEL, at_sentinel),
        (f"redis+sentinel://{at_server}/bridge", Cause.NOT_SENTINEL, at_server),
    ):
        found = await diagnose(url)
        assert (found.cause, address in found.detail) == (cause, True), (url, found)
    done = run("subscriptions", "--redis-url", f"redis+sentinel://:{PW}@{at_server}/bridge")
    assert "is not a sentinel (use redis:// for the server itself)" in done.stderr, done.stderr
    assert PW not in done.stderr
    done = run("subscriptions", "--redis-url", f"redis+cluster://{at_sentinel}")
    assert f"the server at {at_sentinel} is a sentinel" in done.stderr, done.stderr


@pytest.mark.parametrize(
    "command",
    [
        ["tail", "--last", "1"],
        ["backfill", "AAPL"],
        ["archive", "--out", "TMP"],
        ["demo", "--duration", "5", "--no-ui"],
    ],
    ids=["tail", "backfill", "archive", "demo"],
)
def test_a_url_aimed_at_a_sentinel_or_nothing_is_one_line(
    sentinel: EmbeddedRedis, command: list[str], tmp_path: Path
) -> None:
    command = [str(tmp_path / "a") if part == "TMP" else part for part in command]
    for url in (
        f"redis://:{PW}@127.0.0.1:{sentinel.port}/0",  # PING answers, nothing else does
        f"redis+sentinel://:{PW}@127.0.0.1:1/bridge",
        f"redis+cluster://:{PW}@127.0.0.1:1",
    ):
        done = run(*command, "--redis-url", url)
        said = done.stdout + done.stderr
        assert done.returncode == 1, said
        assert "Traceback" not in said and PW not in said, said
        assert len(said.strip().splitlines()) == 1, said
        assert len(said) < 300, said  # not redis-py's repr of every connection pool


def test_backfill_on_a_cluster_writes_the_bridges_tagged_stream_once(
    sim: SimThread, tmp_path: Path
) -> None:
    cluster = Cluster()
    try:
        token = tmp_path / "token.json"
        write_tokens(sim, token)
        env = clean_env(
            SCHWAB_APP_KEY=sim.config.app_key,
            SCHWAB_APP_SECRET=sim.config.app_secret,
            SCHWAB_API_BASE_URL=sim.base_url,
            SCHWAB_TOKEN_PATH=str(token),
        )
        args = ("backfill", "--from", FROM, "--to", TO, "--redis-url", cluster.url, "AAPL")
        first = run(*args, env=env)
        assert first.returncode == 0, first.stderr
        again = run(*args, env=env)
        assert again.returncode == 0, again.stderr
        assert "0 bars written" in again.stdout, again.stdout
        client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
        try:
            assert client.xlen("schwab:bar:{AAPL}") == 150  # the key the bridge writes
            assert not client.exists("schwab:bar:AAPL")
        finally:
            client.close()
    finally:
        cluster.stop()
