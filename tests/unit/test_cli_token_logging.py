"""The one-shot commands (`login`, `token`) log only warnings and errors, as plain lines, even
with SCHWAB_LOG_FORMAT=json or stderr not a terminal; `run`'s logging settings are untouched."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from schwab_stream.cli.common import setup_one_shot_logging as setup_logging
from schwab_stream.config import Settings


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def settings(**values: str) -> Settings:
    return Settings(_env_file=None, app_key="k", app_secret="s", **values)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["auto", "json"])
def test_warnings_only_as_plain_lines(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(settings(log_format=fmt, log_level="INFO"))
    log = logging.getLogger("schwab_stream.auth.client")
    log.info("access token refreshed")
    log.warning("token refresh failed (timeout); the current access token has 600 s left")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and not lines[0].startswith("{"), lines
    assert lines[0].endswith(
        "WARNING schwab_stream.auth.client: token refresh failed (timeout); "
        "the current access token has 600 s left"
    )


def test_debug_shows_everything(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging(settings(log_level="DEBUG"))
    logging.getLogger("schwab_stream.auth.client").info("access token refreshed")
    assert "INFO    schwab_stream.auth.client: access token refreshed" in capsys.readouterr().err
