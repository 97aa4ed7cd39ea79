"""A `--redis-url` without a scheme is a usage error naming the option, not a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from schwab_stream.cli import main


@pytest.mark.parametrize("command", [["tail"], ["demo", "--no-ui", "--duration", "1"]])
@pytest.mark.parametrize("url", ["localhost:6379", "127.0.0.1:6379/0", "http://localhost:6379"])
def test_a_redis_url_without_a_scheme_is_a_usage_error(command: list[str], url: str) -> None:
    result = CliRunner().invoke(main, [*command, "--redis-url", url])
    assert result.exit_code == 2, result.output
    said = "Invalid value for '--redis-url': must be a redis://, rediss://, unix://, "
    assert said + "redis+sentinel:// or redis+cluster:// URL" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
