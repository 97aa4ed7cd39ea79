"""Settings from the environment and `.env` (read, never written).

Every setting keeps the exact environment name users type, so the error for a bad value can name it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schwab_stream.errors import ConfigError
from schwab_stream.redis_topology import Kind
from schwab_stream.redis_topology import parse as parse_topology
from schwab_stream.symbols import check_keys

#: Streamer services a user can subscribe to, in the order Schwab documents them.
SUBSCRIBABLE_SERVICES: tuple[str, ...] = (
    "LEVELONE_EQUITIES",
    "LEVELONE_OPTIONS",
    "LEVELONE_FUTURES",
    "LEVELONE_FUTURES_OPTIONS",
    "LEVELONE_FOREX",
    "NYSE_BOOK",
    "NASDAQ_BOOK",
    "OPTIONS_BOOK",
    "CHART_EQUITY",
    "CHART_FUTURES",
    "SCREENER_EQUITY",
    "SCREENER_OPTION",
)

DEFAULT_TOKEN_PATH = Path("~/.config/schwab-stream/token.json")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


def check_redis_url(value: str) -> str:
    """A Redis URL we can open (docs: redis_topology); without a scheme, or with a port or an
    IPv6 literal redis-py cannot read, it would only fail later, in a traceback (or a retry
    loop)."""
    where = parse_topology(value)  # a ValueError says what is wrong
    if where.kind is Kind.STANDALONE and not value.startswith("unix://"):
        _check_host_and_port(value)
    return value


def _check_host_and_port(value: str) -> None:
    """The host and port of a URL as urllib (so redis-py and httpx) reads them, or a ValueError
    that says what is wrong, never echoing a password."""
    try:
        parts = urlsplit(value)
        port = parts.port  # raises for a port that is not a number or out of 0-65535
    except ValueError as exc:
        if "IPv6" in str(exc):
            raise ValueError("has a broken IPv6 address (write it as [::1]:6379)") from None
        raise ValueError("has a port that is not a number from 1 to 65535") from None
    if port == 0:
        raise ValueError("has a port that is not a number from 1 to 65535")


#: A New York wall-clock time, HH:MM
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
#: Largest `SCHWAB_STREAM_MAXLEN`: a billion entries per stream is far past any Redis's memory,
#: and well inside the signed 64-bit integer Redis reads MAXLEN as.
MAX_STREAM_MAXLEN = 1_000_000_000
#: Largest `SCHWAB_QUEUE_SIZE`: ten million events held in memory is already gigabytes.
MAX_QUEUE_SIZE = 10_000_000


class Settings(BaseSettings):
    """All knobs of schwab-stream; see `.env.example` for the documented list."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
        # `inf`, `1e400` and `nan` are no durations: watchdog=inf would turn silence detection off
        allow_inf_nan=False,
    )

    # --- Schwab app and OAuth -------------------------------------------------------------
    app_key: str = Field("", validation_alias=_env("SCHWAB_APP_KEY"))
    app_secret: SecretStr = Field(SecretStr(""), validation_alias=_env("SCHWAB_APP_SECRET"))
    callback_url: str = Field(
        "https://127.0.0.1:8182", validation_alias=_env("SCHWAB_CALLBACK_URL")
    )
    token_path: Path = Field(DEFAULT_TOKEN_PATH, validation_alias=_env("SCHWAB_TOKEN_PATH"))
    api_base_url: str = Field(
        "https://api.schwabapi.com", validation_alias=_env("SCHWAB_API_BASE_URL")
    )
    token_refresh_margin: float = Field(
        300.0, ge=0, le=1700, validation_alias=_env("SCHWAB_TOKEN_REFRESH_MARGIN")
    )
    expiry_hook: str = Field("", validation_alias=_env("SCHWAB_EXPIRY_HOOK"))
    expiry_hook_timeout: float = Field(
        30.0, gt=0, le=3600, validation_alias=_env("SCHWAB_EXPIRY_HOOK_TIMEOUT")
    )

    # --- Redis ----------------------------------------------------------------------------
    redis_url: str = Field("redis://127.0.0.1:6379/0", validation_alias=_env("REDIS_URL"))
    redis_prefix: str = Field("schwab", min_length=1, validation_alias=_env("SCHWAB_REDIS_PREFIX"))
    stream_maxlen: int = Field(
        100_000, ge=100, le=MAX_STREAM_MAXLEN, validation_alias=_env("SCHWAB_STREAM_MAXLEN")
    )
    pubsub_mirror: bool = Field(False, validation_alias=_env("SCHWAB_PUBSUB_MIRROR"))
    queue_size: int = Field(
        100_000, ge=100, le=MAX_QUEUE_SIZE, validation_alias=_env("SCHWAB_QUEUE_SIZE")
    )

    # --- Streaming ------------------------------------------------------------------------
    max_frame_bytes: int = Field(
        8 * 1024 * 1024,
        ge=64 * 1024,
        le=256 * 1024 * 1024,
        validation_alias=_env("SCHWAB_MAX_FRAME_BYTES"),
    )
    watchdog_seconds: float = Field(
        45.0, gt=0, le=3600, validation_alias=_env("SCHWAB_WATCHDOG_SECONDS")
    )
    command_timeout: float = Field(
        10.0, gt=0, le=600, validation_alias=_env("SCHWAB_COMMAND_TIMEOUT")
    )
    reconnect_max_delay: float = Field(
        60.0, gt=0, le=3600, validation_alias=_env("SCHWAB_RECONNECT_MAX_DELAY")
    )
    lease_ttl: float = Field(10.0, ge=1.0, le=300.0, validation_alias=_env("SCHWAB_LEASE_TTL"))
    #: Seconds the bridge may fail to deliver to Redis before `/healthz` says unhealthy
    redis_unhealthy_seconds: float = Field(
        10.0, gt=0, le=3600, validation_alias=_env("SCHWAB_REDIS_UNHEALTHY_SECONDS")
    )
    #: `strict`: a key in the wrong format for its service stops `run` (exit 2); `warn`: it is
    #: said and sent anyway (the formats are Schwab's documented ones; some are UNVERIFIED)
    key_check: Literal["strict", "warn"] = Field(
        "strict", validation_alias=_env("SCHWAB_KEY_CHECK")
    )
    silent_key_seconds: float = Field(
        300.0, gt=0, le=86_400, validation_alias=_env("SCHWAB_SILENT_KEY_SECONDS")
    )

    # --- Market-data REST (docs/schwab-protocol.md, "Market-data REST") ---------------------
    #: Schwab's figure is 120 a minute (UNVERIFIED, contested): one limiter for the process
    rest_requests_per_minute: int = Field(
        120, ge=1, le=6000, validation_alias=_env("SCHWAB_REST_REQUESTS_PER_MINUTE")
    )
    rest_timeout: float = Field(15.0, gt=0, le=300, validation_alias=_env("SCHWAB_REST_TIMEOUT"))
    rest_max_attempts: int = Field(
        4, ge=1, le=20, validation_alias=_env("SCHWAB_REST_MAX_ATTEMPTS")
    )

    # --- Back-fill of bars from Schwab's price history (docs/backfill.md) ------------------
    backfill: bool = Field(True, validation_alias=_env("SCHWAB_BACKFILL"))
    backfill_hold_seconds: float = Field(
        300.0, ge=1, le=3600, validation_alias=_env("SCHWAB_BACKFILL_HOLD_SECONDS")
    )
    backfill_equity_from: str = Field("07:00", validation_alias=_env("SCHWAB_BACKFILL_EQUITY_FROM"))
    backfill_futures_from: str = Field(
        "18:00", validation_alias=_env("SCHWAB_BACKFILL_FUTURES_FROM")
    )
    #: Seed each level-one key's latest-state key from REST quotes at start (where none exists)
    quotes_at_start: bool = Field(False, validation_alias=_env("SCHWAB_QUOTES_AT_START"))
    backfill_concurrency: int = Field(
        4, ge=1, le=32, validation_alias=_env("SCHWAB_BACKFILL_CONCURRENCY")
    )

    # --- `schwab-stream archive`: the streams into Parquet files (docs/archive.md) -----------
    archive_group: str = Field(
        "archive", min_length=1, max_length=200, validation_alias=_env("SCHWAB_ARCHIVE_GROUP")
    )
    archive_roll_seconds: float = Field(
        300.0, ge=1, le=86_400, validation_alias=_env("SCHWAB_ARCHIVE_ROLL_SECONDS")
    )
    archive_roll_events: int = Field(
        200_000, ge=1, le=10_000_000, validation_alias=_env("SCHWAB_ARCHIVE_ROLL_EVENTS")
    )
    #: An archiver silent this long is taken for dead: another takes its unfinished entries over
    archive_dead_seconds: float = Field(
        30.0, ge=1, le=3600, validation_alias=_env("SCHWAB_ARCHIVE_DEAD_SECONDS")
    )
    archive_metrics_port: int = Field(
        0, ge=0, le=65535, validation_alias=_env("SCHWAB_ARCHIVE_METRICS_PORT")
    )

    # --- Operations -----------------------------------------------------------------------
    metrics_port: int = Field(0, ge=0, le=65535, validation_alias=_env("SCHWAB_METRICS_PORT"))
    log_format: Literal["auto", "console", "json"] = Field(
        "auto", validation_alias=_env("SCHWAB_LOG_FORMAT")
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", validation_alias=_env("SCHWAB_LOG_LEVEL")
    )

    # --- Subscriptions: comma-separated keys per service ----------------------------------
    levelone_equities: str = Field("", validation_alias=_env("SCHWAB_LEVELONE_EQUITIES"))
    levelone_options: str = Field("", validation_alias=_env("SCHWAB_LEVELONE_OPTIONS"))
    levelone_futures: str = Field("", validation_alias=_env("SCHWAB_LEVELONE_FUTURES"))
    levelone_futures_options: str = Field(
        "", validation_alias=_env("SCHWAB_LEVELONE_FUTURES_OPTIONS")
    )
    levelone_forex: str = Field("", validation_alias=_env("SCHWAB_LEVELONE_FOREX"))
    nyse_book: str = Field("", validation_alias=_env("SCHWAB_NYSE_BOOK"))
    nasdaq_book: str = Field("", validation_alias=_env("SCHWAB_NASDAQ_BOOK"))
    options_book: str = Field("", validation_alias=_env("SCHWAB_OPTIONS_BOOK"))
    chart_equity: str = Field("", validation_alias=_env("SCHWAB_CHART_EQUITY"))
    chart_futures: str = Field("", validation_alias=_env("SCHWAB_CHART_FUTURES"))
    screener_equity: str = Field("", validation_alias=_env("SCHWAB_SCREENER_EQUITY"))
    screener_option: str = Field("", validation_alias=_env("SCHWAB_SCREENER_OPTION"))
    acct_activity: bool = Field(False, validation_alias=_env("SCHWAB_ACCT_ACTIVITY"))

    @field_validator("api_base_url", "callback_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        _check_host_and_port(value)
        if not urlsplit(value).hostname:
            raise ValueError("has no host")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        # Paths are appended to the API's base, so its trailing slash goes. The callback URL keeps
        # its own byte for byte: Schwab compares it with the registered one, slash included.
        return value.rstrip("/") if value.count("/") > 2 else value

    @field_validator("token_path")
    @classmethod
    def _token_file(cls, value: Path) -> Path:
        # An empty value reads as ".", the current folder: neither that nor "/" is a file.
        if not str(value).strip() or value.name in ("", ".", ".."):
            raise ValueError("must be the path of a file, e.g. ~/.config/schwab-stream/token.json")
        if value.expanduser().is_dir():
            raise ValueError(f"{value} is a folder: name a file in it, e.g. {value}/token.json")
        return value

    @field_validator("backfill_equity_from", "backfill_futures_from")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value.strip()):
            raise ValueError("must be a New York time as HH:MM, e.g. 07:00")
        return value.strip()

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        return check_redis_url(value)

    @field_validator("redis_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError(
                "no { or }: on a Redis Cluster they pick a key's hash slot, and the bridge "
                "adds its own (docs/events.md, 'Redis Cluster')"
            )
        return value

    @property
    def resolved_token_path(self) -> Path:
        return self.token_path.expanduser()

    def subscriptions(self) -> dict[str, list[str]]:
        """Desired subscriptions from settings: service -> keys (upper case, no blanks)."""
        subs: dict[str, list[str]] = {}
        for service in SUBSCRIBABLE_SERVICES:
            raw: str = getattr(self, service.lower())
            keys = parse_keys(raw)
            if keys:
                subs[service] = keys
        return subs


def parse_keys(raw: str) -> list[str]:
    """Split a comma-separated key list; keeps inner spaces (option symbols have them)."""
    seen: dict[str, None] = {}
    for part in raw.split(","):
        key = part.strip().upper()
        if key:
            seen[key] = None
    return list(seen)


def parse_subscribe_option(values: tuple[str, ...] | list[str]) -> dict[str, list[str]]:
    """Parse repeated `--subscribe SERVICE=KEYS` options."""
    subs: dict[str, list[str]] = {}
    for value in values:
        service, sep, keys = value.partition("=")
        service = service.strip().upper()
        if not sep or service not in (*SUBSCRIBABLE_SERVICES, "ACCT_ACTIVITY"):
            raise ConfigError(
                f"--subscribe {value!r}: expected SERVICE=KEY1,KEY2 with SERVICE one of "
                + ", ".join((*SUBSCRIBABLE_SERVICES, "ACCT_ACTIVITY"))
            )
        subs.setdefault(service, [])
        for key in parse_keys(keys):
            if key not in subs[service]:
                subs[service].append(key)
    return subs


def load_settings(**overrides: object) -> Settings:
    """Read settings; a bad value becomes one ConfigError line per problem, naming the variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err.get("loc") or ("?",)
            field = str(loc[0])
            env_name = _ENV_NAMES.get(field, field.upper())
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            lines.append(f"{env_name}: {msg}")
        raise ConfigError("invalid settings: " + "; ".join(lines)) from None


def key_problems(subscriptions: dict[str, list[str]]) -> list[str]:
    """Keys not in their service's format, one line each with the right format: Schwab sends
    no data and no error for them (`symbols.check_keys`)."""
    return [str(problem) for problem in check_keys(subscriptions)]


def unknown_setting_names(env_file: str | Path = ".env") -> list[str]:
    """`SCHWAB_*` names in the environment or `.env` that no setting reads: usually a typo
    (`SCHWAB_LEVELONE_EQUITY`) that would otherwise be ignored without a word."""
    from dotenv import dotenv_values

    known = set(_ENV_NAMES.values())
    names = set(os.environ)
    if Path(env_file).is_file():
        names.update(dotenv_values(env_file))
    return sorted(
        name
        for name in names
        if name.upper().startswith("SCHWAB_")
        and not name.upper().startswith("SCHWAB_STREAM_")  # ours, not settings (see docs)
        and name.upper() not in known
    )


def _env_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            first = alias.choices[0]
            names[name] = str(first)
            names[str(first).lower()] = str(first)
            names[str(first)] = str(first)
    return names


_ENV_NAMES = _env_names()
