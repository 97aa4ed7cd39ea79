"""Logging: both formats carry the fields they promise, and no secret ever reaches the output."""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
from collections.abc import Iterator

import pytest

from schwab_stream.telemetry import logging as telemetry_logging
from schwab_stream.telemetry.logging import (
    MASK,
    log_once,
    rearm_log_once,
    redact_text,
    register_secret,
    setup_logging,
)

FORMATS = ["console", "json"]


@pytest.fixture(autouse=True)
def no_secrets_of_other_tests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Secrets registered by earlier tests in this worker (an auth client built with
    app_secret="secret") would mask words these tests expect to see ('client_secret')."""
    monkeypatch.setattr(telemetry_logging, "_secrets", set())
    monkeypatch.setattr(telemetry_logging, "_secret_re", None)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)
    logging.captureWarnings(False)
    rearm_log_once()


def capture(fmt: str, level: str = "DEBUG") -> io.StringIO:
    out = io.StringIO()
    setup_logging(fmt, level, stream=out)  # type: ignore[arg-type]
    return out


def fresh_secret() -> str:
    return "S3cr" + secrets.token_urlsafe(24)


@pytest.mark.parametrize("fmt", FORMATS)
def test_registered_secret_never_reaches_output(fmt: str) -> None:
    secret = fresh_secret()
    register_secret(secret)
    out = capture(fmt)
    log = logging.getLogger("schwab_stream.test")
    log.info(f"token is {secret} in the message")
    log.info("token in args: %s and %r", secret, {"nested": secret})
    log.warning(
        "in extras",
        extra={
            "plain": secret,
            "wrapped": f"prefix-{secret}-suffix",
            "deep": {"level": [secret, {"inner": secret}]},
            "tuple": (1, secret),
        },
    )
    try:
        raise RuntimeError(f"refresh failed for {secret}")
    except RuntimeError:
        log.exception("with exception text %s", secret)
    log.info("stack", stack_info=True, extra={"again": secret})
    text = out.getvalue()
    assert secret not in text
    assert text.count(MASK) >= 10
    assert "refresh failed for ***" in text
    assert "prefix-***-suffix" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_url_encoded_secret_is_masked(fmt: str) -> None:
    secret = "tok" + secrets.token_hex(8) + "@/="
    register_secret(secret)
    out = capture(fmt)
    logging.getLogger("httpx").info(
        "GET https://h/x?state=%s",
        secret.replace("@", "%40").replace("/", "%2F").replace("=", "%3D"),
    )
    assert "%40" not in out.getvalue()
    assert secret[:19] not in out.getvalue()


@pytest.mark.parametrize("fmt", FORMATS)
def test_secret_named_extras_are_masked_and_others_kept(fmt: str) -> None:
    out = capture(fmt)
    logging.getLogger("schwab_stream.auth").info(
        "token refreshed",
        extra={
            "access_token": "I0.notregistered1",
            "refresh_token": "notregistered2@",
            "app_secret": "notregistered3",
            "Authorization": "Bearer notregistered4",
            "password": 12345,
            "code": "C0.notregistered5%40",
            "schwab_code": 3,
            "token_path": "/home/u/token.json",
            "access_token_seconds_left": 1799,
            "response": {"id_token": "notregistered6", "expires_in": 1800},
        },
    )
    text = out.getvalue()
    for n in range(1, 7):
        assert f"notregistered{n}" not in text
    assert "12345" not in text
    assert "1799" in text
    assert "1800" in text
    assert "/home/u/token.json" in text


@pytest.mark.parametrize("fmt", FORMATS)
def test_schwab_response_code_stays_readable(fmt: str) -> None:
    out = capture(fmt)
    logging.getLogger("schwab_stream.stream").warning(
        "response code=%d", 12, extra={"code": 12, "service": "ADMIN"}
    )
    text = out.getvalue()
    assert "code=12" in text
    assert ("code=12" in text.split("response", 1)[1]) if fmt == "console" else '"code": 12' in text


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Authorization: Bearer I0.b2F1dGgyLmJkYy5zY2h3YWIuY29t", "Authorization: ***"),
        ("header Basic dGhlYXBwa2V5OnRoZXNlY3JldA== sent", "header Basic *** sent"),
        ("sent bearer abcdefghijklmnopqrstuvwxyz", "sent bearer ***"),
        (
            "https://127.0.0.1:8182/?code=C0.b2F1dGgy%40&session=ab",
            "https://127.0.0.1:8182/?code=***&session=ab",
        ),
        (
            '{"access_token": "I0.x", "expires_in": 1800}',
            '{"access_token": "***", "expires_in": 1800}',
        ),
        ("{'refresh_token': 'abc@', 'scope': 'api'}", "{'refresh_token': '***', 'scope': 'api'}"),
        (
            "client_secret=xyz&grant_type=refresh_token",
            "client_secret=***&grant_type=refresh_token",
        ),
        ("PASSWORD: hunter2", "PASSWORD: ***"),
        ("response code=3 (login denied)", "response code=3 (login denied)"),
        ('"code": 19', '"code": 19'),
        ("error_code=ABC schwab", "error_code=ABC schwab"),
        (
            "access_token_seconds_left=42 token_path=/tmp/t",
            "access_token_seconds_left=42 token_path=/tmp/t",
        ),
        ("basic settings loaded", "basic settings loaded"),
    ],
)
def test_redact_text_patterns(raw: str, expected: str) -> None:
    assert redact_text(raw) == expected


def test_json_lines_carry_fields_and_extras() -> None:
    out = capture("json")
    logging.getLogger("schwab_stream.stream.client").warning(
        "reconnecting in %.1f s", 2.5, extra={"attempt": 3, "delay": 2.5, "reason": "silence"}
    )
    logging.getLogger("schwab_stream.stream.client").debug("second", extra={"ts": "mine"})
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert first["level"] == "WARNING"
    assert first["logger"] == "schwab_stream.stream.client"
    assert first["msg"] == "reconnecting in 2.5 s"
    assert (first["attempt"], first["delay"], first["reason"]) == (3, 2.5, "silence")
    assert second["_ts"] == "mine" and second["ts"] != "mine"


def test_console_line_shape() -> None:
    out = capture("console")
    logging.getLogger("schwab_stream.pub").info(
        "batch written",
        extra={"events": 12, "reason": "redis back", "keys": ["a", "b"], "empty": ""},
    )
    line = out.getvalue().rstrip("\n")
    assert "\n" not in line
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} INFO    schwab_stream\.pub: batch written "
        r'events=12 reason="redis back" keys=\["a","b"\] empty=""',
        line,
    ), line


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_console_on_a_tty_and_json_otherwise() -> None:
    tty = _Tty()
    setup_logging("auto", "INFO", stream=tty)
    logging.getLogger("x").info("hello")
    assert not tty.getvalue().startswith("{")
    pipe = io.StringIO()
    setup_logging("auto", "INFO", stream=pipe)
    logging.getLogger("x").info("hello")
    assert json.loads(pipe.getvalue())["msg"] == "hello"
    assert tty.getvalue().count("hello") == 1  # the first handler was replaced, not kept


def test_level_filters_and_bad_settings_are_rejected() -> None:
    out = capture("json", "warning")
    logging.getLogger("schwab_stream").info("quiet")
    logging.getLogger("schwab_stream").warning("loud")
    assert [json.loads(line)["msg"] for line in out.getvalue().splitlines()] == ["loud"]
    with pytest.raises(ValueError, match="log level"):
        setup_logging("json", "CHATTY")
    with pytest.raises(ValueError, match="log format"):
        setup_logging("xml", "INFO")  # type: ignore[arg-type]


def test_bad_format_arguments_still_log_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = fresh_secret()
    register_secret(secret)
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # pytest's capture raises on these
    out = capture("json")
    logging.getLogger("schwab_stream").info("%d items", secret)
    line = json.loads(out.getvalue())
    assert "items" in line["msg"]
    assert secret not in out.getvalue()


def test_short_values_are_not_registered() -> None:
    register_secret("abc")
    register_secret("")
    register_secret(None)
    assert redact_text("abc def") == "abc def"


def test_log_once_logs_each_key_once_until_rearmed() -> None:
    out = capture("json")
    log = logging.getLogger("schwab_stream.norm")
    assert log_once(log, "bad:json", "undecodable frame", reason="json")
    assert not log_once(log, "bad:json", "undecodable frame", reason="json")
    assert log_once(log, "bad:fields", "unknown field", level=logging.INFO, field="99")
    rearm_log_once("bad:json")
    assert log_once(log, "bad:json", "undecodable frame again")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(d["msg"], d["level"]) for d in lines] == [
        ("undecodable frame", "WARNING"),
        ("unknown field", "INFO"),
        ("undecodable frame again", "WARNING"),
    ]
    assert lines[0]["reason"] == "json" and lines[1]["field"] == "99"


def test_records_are_rewritten_for_handlers_that_run_after_ours() -> None:
    secret = fresh_secret()
    register_secret(secret)
    capture("json")
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    later = Keep()
    logging.getLogger().addHandler(later)
    try:
        raise ValueError(secret)
    except ValueError:
        logging.getLogger("x").exception("a %s", secret, extra={"refresh_token": "zzzzzz"})
    (record,) = seen
    assert record.getMessage() == "a ***"
    assert record.__dict__["refresh_token"] == MASK
    assert secret not in logging.Formatter().format(record)
