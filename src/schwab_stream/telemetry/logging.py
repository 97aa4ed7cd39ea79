"""Logging setup: readable lines on a terminal, JSON lines elsewhere, and secrets never written.

The bridge runs for weeks, unattended, with OAuth tokens flowing through its HTTP and websocket
libraries; a single debug line can leak a token into a log shipper. So redaction sits on the one
handler every record passes through (ours and third-party libraries' alike), not at call sites.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import quote

__all__ = [
    "MASK",
    "ConsoleFormatter",
    "JsonFormatter",
    "RedactingFilter",
    "log_once",
    "rearm_log_once",
    "redact_text",
    "redact_value",
    "register_secret",
    "setup_logging",
]

#: What a masked secret looks like in the output.
MASK = "***"

#: Registered secrets shorter than this are ignored: masking every "abc" would wreck the logs, and a
#: value that short is not a credential.
_MIN_SECRET_LEN = 4

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None

# Words that make a key secret: the key is one of them or ends with "_<word>" (so
# "refresh_token" is secret while "refresh_token_seconds_left" and "token_path" are not).
_SECRET_WORDS = ("token", "secret", "password", "passwd", "authorization", "cookie", "apikey")
# "code" is the OAuth authorization code, but Schwab response codes are numbers; only those stay.
_CODE_KEYS = frozenset({"code", "auth_code", "authorization_code"})

_KEY = r"(?:[\w-]*_)?(?:" + "|".join(_SECRET_WORDS) + r")|(?:auth_|authorization_)?code"
# key=value, key: value, "key": "value", key='value' (query strings, JSON, headers, reprs).
_KV_RE = re.compile(
    r"(?i)(?<![\w-])(?P<key>" + _KEY + r")(?P<sep>[\"']?\s*[:=]\s*[\"']?)"
    r"(?P<val>(?:(?:bearer|basic)\s+)?[^\s\"'&,;}\])]+)"
)
# 16+ characters: real credentials are long, and "basic settings" in prose must survive.
_AUTH_RE = re.compile(r"(?i)\b(?P<scheme>bearer|basic)\s+[A-Za-z0-9._~+/=-]{16,}")
_NUMBER_RE = re.compile(r"-?\d+")


def register_secret(value: str | None) -> None:
    """Mask `value` (and its URL-encoded form) wherever it appears in any later log output."""
    if not value or len(value) < _MIN_SECRET_LEN:
        return
    global _secret_re
    with _secrets_lock:
        before = len(_secrets)
        _secrets.add(value)
        _secrets.add(quote(value, safe=""))
        if len(_secrets) != before:
            ordered = sorted(_secrets, key=len, reverse=True)  # longest first: no partial leaks
            _secret_re = re.compile("|".join(re.escape(s) for s in ordered))


def _is_secret_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    if name in _CODE_KEYS:
        return True
    return any(name == word or name.endswith("_" + word) for word in _SECRET_WORDS)


def _mask_kv(match: re.Match[str]) -> str:
    value = match.group("val")
    if match.group("key").lower() in _CODE_KEYS and _NUMBER_RE.fullmatch(value):
        return match.group(0)  # a Schwab response code, not an OAuth code
    return f"{match.group('key')}{match.group('sep')}{MASK}"


def redact_text(text: str) -> str:
    """Mask registered secrets, Bearer/Basic credentials and `secret_key=value` pairs in text."""
    pattern = _secret_re
    if pattern is not None:
        text = pattern.sub(MASK, text)
    text = _KV_RE.sub(_mask_kv, text)
    return _AUTH_RE.sub(lambda m: f"{m.group('scheme')} {MASK}", text)


def redact_value(key: str, value: Any) -> Any:
    """Redact one structured value: masked whole under a secret key, else searched recursively."""
    if _is_secret_key(key) and value is not None:
        if key.lower().replace("-", "_") in _CODE_KEYS and isinstance(value, int):
            return value  # a Schwab response code
        return MASK
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {str(k): redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value("", v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact_text(str(value))


_STANDARD_ATTRS = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


class RedactingFilter(logging.Filter):
    """Rewrites each record in place: message merged with its args, extras and exception redacted.

    Rewriting (rather than only formatting) means any handler that sees the record afterwards, such
    as a test's capture handler, sees the redacted form too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format at the call site must not lose the record
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = redact_text(message)
        record.args = None
        for key, value in _extras(record).items():
            setattr(record, key, redact_value(key, value))
        exc = _exc_text(record)
        if exc:
            record.exc_text = redact_text(exc)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


def _exc_text(record: logging.LogRecord) -> str | None:
    if record.exc_info and not record.exc_text:
        record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
    return record.exc_text


def _console_value(value: Any) -> str:
    """Bare when unambiguous, JSON-quoted when the value has spaces; containers as compact JSON."""
    if not isinstance(value, str):
        return json.dumps(value, default=str, separators=(",", ":"))
    if value == "" or any(c in value for c in ' "=\n\t'):
        return json.dumps(value)
    return value


class ConsoleFormatter(logging.Formatter):
    """`2024-05-17 13:45:01.123 WARNING schwab_stream.stream: message key=value` (local time)."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).astimezone()
        parts = [
            ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}",
            f"{record.levelname:<7}",
            f"{record.name}:",
            record.getMessage(),
        ]
        parts += [f"{k}={_console_value(v)}" for k, v in _extras(record).items()]
        line = " ".join(parts)
        exc = _exc_text(record)
        if exc:
            line += "\n" + exc
        if record.stack_info:
            line += "\n" + record.stack_info
        return redact_text(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC ISO 8601), level, logger, msg, every extra, exc, stack."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _extras(record).items():
            doc[f"_{key}" if key in doc else key] = value
        exc = _exc_text(record)
        if exc:
            doc["exc"] = exc
        if record.stack_info:
            doc["stack"] = record.stack_info
        # The filter already redacted; this pass covers a formatter used without it.
        return json.dumps(redact_value("", doc), default=str)


def setup_logging(
    fmt: Literal["auto", "console", "json"], level: str, *, stream: TextIO | None = None
) -> None:
    """Route all logging to one redacting handler on `stream` (stderr); safe to call again."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        isatty = getattr(out, "isatty", None)
        fmt = "console" if isatty is not None and isatty() else "json"
    if fmt not in ("console", "json"):
        raise ValueError(f"unknown log format {fmt!r}: expected auto, console or json")
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(ConsoleFormatter() if fmt == "console" else JsonFormatter())
    handler.set_name(_HANDLER_NAME)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.captureWarnings(True)


_HANDLER_NAME = "schwab_stream"

_once_lock = threading.Lock()
_once_keys: set[str] = set()


def log_once(
    logger: logging.Logger, key: str, msg: str, *, level: int = logging.WARNING, **extra: Any
) -> bool:
    """Log `msg` only the first time `key` is seen (process-wide); True when it was logged.

    For problems that repeat per frame or per batch: the first occurrence is news, the rest are
    counted by metrics. `rearm_log_once(key)` lets the next occurrence through again, for example
    after the problem has cleared.
    """
    with _once_lock:
        if key in _once_keys:
            return False
        _once_keys.add(key)
    logger.log(level, msg, extra=extra or None)
    return True


def rearm_log_once(key: str | None = None) -> None:
    """Forget `key` (or every key) so the next `log_once` with it logs again."""
    with _once_lock:
        if key is None:
            _once_keys.clear()
        else:
            _once_keys.discard(key)
