from __future__ import annotations

from schwab_stream.redact import safe_url


def test_redis_url_password_is_masked_for_logs() -> None:
    assert safe_url("redis://:s3cret@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert safe_url("rediss://user:pw@host:6380/1") == "rediss://user:***@host:6380/1"
    assert safe_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
