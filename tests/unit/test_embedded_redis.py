from __future__ import annotations

import redis

from schwab_stream.embedded_redis import EmbeddedRedis


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
