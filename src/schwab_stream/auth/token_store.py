"""The token file: one JSON document, written atomically, read by every process of one user.

Why so careful: schwab-py's plain `open('w')` + `json.dump` leaves a truncated, world-readable file
when a process dies mid-write, and processes sharing a token race each other's refreshes
(schwab-py#231, #94). Here a write is temp file + fsync + `os.replace` + fsync of the folder (a
reader sees the old file or the new one, never half of one), the file is 0600, and refreshes take an
exclusive lock file beside the token so that only one process talks to Schwab at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import shlex
import stat
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import filelock

from schwab_stream.errors import LoginRequiredError, TokenFileError, TokenStoreUnavailable

log = logging.getLogger(__name__)

#: The `format` marker that tells our token file apart from any other JSON file.
FORMAT_NAME = "schwab-stream-token"
#: Bumped when the file's meaning changes; a file from a newer version is refused, not guessed at.
FORMAT_VERSION = 1
#: Schwab's refresh token lives about 7 days from the browser login; refreshing never extends it.
REFRESH_TOKEN_LIFETIME = 7 * 24 * 3600.0
#: How long a refresh may wait for another process's refresh before giving up.
LOCK_TIMEOUT = 60.0

#: Token times are Unix seconds; one outside 1970..2286 is no time this file could hold (`1e20`
#: or `-1e18` would overflow every date conversion), so the file is refused as corrupt.
MAX_TIMESTAMP = 1e10

_LOGIN_FIX = "run `schwab-stream login` (or `schwab-stream token import PATH` for a schwab-py file)"


@dataclass(frozen=True)
class TokenRecord:
    """What the token file holds. Token values are kept out of repr so they never reach a log."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    access_expires_at: float
    login_at: float
    refresh_expires_at: float
    token_type: str = "Bearer"  # noqa: S105 - the OAuth scheme name, not a secret
    scope: str = "api"
    id_token: str | None = field(default=None, repr=False)

    @classmethod
    def from_token_response(
        cls,
        body: Mapping[str, Any],
        *,
        now: float,
        previous: TokenRecord | None = None,
    ) -> TokenRecord:
        """Build a record from Schwab's token response.

        Without `previous` this is a code exchange: the login happens now and starts the 7-day
        clock. With `previous` it is a refresh: the login time and the refresh token's expiry stay,
        and a refresh token Schwab does not resend is kept.
        """
        access = body.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token response has no access_token")
        expires_in = _number(body.get("expires_in"), 1800.0)
        refresh = body.get("refresh_token") or (previous.refresh_token if previous else None)
        if not isinstance(refresh, str) or not refresh:
            raise ValueError("token response has no refresh_token")
        login_at = previous.login_at if previous else now
        if "refresh_token_expires_in" in body:
            refresh_expires_at = now + _number(
                body["refresh_token_expires_in"], REFRESH_TOKEN_LIFETIME
            )
        elif previous is not None:
            refresh_expires_at = previous.refresh_expires_at
        else:
            refresh_expires_at = login_at + REFRESH_TOKEN_LIFETIME
        id_token = body.get("id_token") or (previous.id_token if previous else None)
        return cls(
            access_token=access,
            refresh_token=refresh,
            access_expires_at=now + expires_in,
            login_at=login_at,
            refresh_expires_at=refresh_expires_at,
            token_type=str(body.get("token_type") or "Bearer"),
            scope=str(body.get("scope") or "api"),
            id_token=id_token if isinstance(id_token, str) else None,
        )

    # `now` is the caller's wall clock (the auth client's, fake in tests): never read here.

    def access_seconds_left(self, now: float) -> float:
        return self.access_expires_at - now

    def refresh_seconds_left(self, now: float) -> float:
        return self.refresh_expires_at - now

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "id_token": self.id_token,
            "token_type": self.token_type,
            "scope": self.scope,
            "access_expires_at": self.access_expires_at,
            "login_at": self.login_at,
            "refresh_expires_at": self.refresh_expires_at,
        }

    @classmethod
    def from_json(cls, data: Any, path: Path) -> TokenRecord:
        """Parse our file format; anything else is a TokenFileError that says what to do."""
        if not isinstance(data, dict):
            raise _foreign(path, "it is not a JSON object")
        if data.get("format") != FORMAT_NAME:
            if "creation_timestamp" in data or "token" in data:
                raise TokenFileError(
                    f"token file {path} is a schwab-py token file, not ours: run "
                    f"`schwab-stream token import {path}` with SCHWAB_TOKEN_PATH pointing elsewhere"
                )
            raise _foreign(path, "it is not a schwab-stream token file")
        version = data.get("version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            shown = version if isinstance(version, int) and abs(version) < 10**9 else "unknown"
            raise TokenFileError(
                f"token file {path} has format version {shown}, this schwab-stream reads up to "
                f"{FORMAT_VERSION}: upgrade schwab-stream or {_LOGIN_FIX}"
            )
        try:
            id_token = data.get("id_token")
            return cls(
                access_token=_string(data, "access_token"),
                refresh_token=_string(data, "refresh_token"),
                access_expires_at=_timestamp(data, "access_expires_at"),
                login_at=_timestamp(data, "login_at"),
                refresh_expires_at=_timestamp(data, "refresh_expires_at"),
                token_type=_text(data, "token_type", "Bearer"),
                scope=_text(data, "scope", "api"),
                id_token=id_token if isinstance(id_token, str) else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise TokenFileError(
                f"token file {path} is incomplete ({_describe(exc)}): {_LOGIN_FIX}"
            ) from None


class TokenStore:
    """The token file at `path` and its lock file `<path>.lock`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock = filelock.FileLock(self.lock_path, mode=0o600, thread_local=False)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r})"

    def exists(self) -> bool:
        return self.path.exists()

    def fingerprint(self) -> tuple[int, int, int] | None:
        """(inode, mtime ns, size): changes on every replace, so a cheap `stat` spots new tokens."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def load(self) -> TokenRecord:
        """Read the file; a missing file means nobody has logged in yet."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raise LoginRequiredError(f"no token file at {self.path}: {_LOGIN_FIX}") from None
        except OSError as exc:
            raise TokenStoreUnavailable(
                "read_failed", f"cannot read token file {self.path}: {exc.strerror}"
            ) from None
        try:
            data = json.loads(raw)
        except RecursionError:
            raise TokenFileError(
                f"token file {self.path} is corrupt (JSON nested too deeply): delete it and "
                f"{_LOGIN_FIX}"
            ) from None
        except ValueError:  # not JSON, not UTF-8, or a number too long to read
            raise TokenFileError(
                f"token file {self.path} is corrupt (not valid JSON): delete it and {_LOGIN_FIX}"
            ) from None
        return TokenRecord.from_json(data, self.path)

    def save(self, record: TokenRecord) -> None:
        """Atomically replace the file, holding the lock so writers never interleave."""
        with self.locked():
            try:
                self._write(record)
            except OSError as exc:
                raise TokenStoreUnavailable(
                    "write_failed",
                    f"cannot write token file {self.path} ({exc.strerror}): check that folder's "
                    "owner and permissions, or set SCHWAB_TOKEN_PATH elsewhere",
                ) from None

    @contextlib.contextmanager
    def locked(self, timeout: float | None = None) -> Iterator[None]:
        """Hold the cross-process lock (blocking; `LOCK_TIMEOUT` by default). Reentrant within
        one TokenStore."""
        timeout = LOCK_TIMEOUT if timeout is None else timeout
        self._ensure_folder()
        try:
            self._lock.acquire(timeout=timeout)
        except filelock.Timeout:
            raise TokenStoreUnavailable("lock_busy", _lock_busy(self.lock_path, timeout)) from None
        except OSError as exc:
            raise TokenStoreUnavailable("lock_failed", _lock_failed(self.lock_path, exc)) from None
        try:
            yield
        finally:
            self._lock.release()

    @contextlib.asynccontextmanager
    async def alocked(self, timeout: float | None = None) -> AsyncIterator[None]:
        """Hold the cross-process lock without blocking the event loop while waiting for it."""
        timeout = LOCK_TIMEOUT if timeout is None else timeout
        self._ensure_folder()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._lock.acquire(blocking=False)
                break
            except filelock.Timeout:
                if time.monotonic() >= deadline:
                    busy = _lock_busy(self.lock_path, timeout)
                    raise TokenStoreUnavailable("lock_busy", busy) from None
                await asyncio.sleep(0.02)
            except OSError as exc:
                failed = _lock_failed(self.lock_path, exc)
                raise TokenStoreUnavailable("lock_failed", failed) from None
        try:
            yield
        finally:
            self._lock.release()

    def _ensure_folder(self) -> None:
        folder = self.path.parent
        if folder.exists():
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)
        except OSError as exc:
            raise TokenStoreUnavailable(
                "no_folder",
                f"cannot create the token folder {folder} ({exc.strerror}): "
                "set SCHWAB_TOKEN_PATH to a writable place",
            ) from None

    def write_target(self) -> Path:
        """Where a write lands: the file itself, or, when the path is a symlink (a token kept in a
        vault folder, say), the file the link points at, so the link survives every write."""
        if not self.path.is_symlink():
            return self.path
        target = Path(os.path.realpath(self.path))
        if target.is_symlink():  # realpath gives up on a loop and hands back a link
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), str(self.path))
        return target

    def _write(self, record: TokenRecord) -> None:
        target = self.write_target()
        folder = target.parent
        self._remove_stale_temp_files(target)
        data = json.dumps(record.to_json(), indent=2).encode() + b"\n"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @staticmethod
    def _remove_stale_temp_files(target: Path) -> None:
        """A writer killed between mkstemp and replace leaves a temp file; every writer holds the
        lock, so under the lock any such file is an orphan."""
        for orphan in target.parent.glob(f".{target.name}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                orphan.unlink()
                log.debug("removed an orphaned temp file %s", orphan)

    def loose_permissions(self) -> bool:
        """True when group or others may read the file (for example one copied from schwab-py)."""
        try:
            mode = self.path.stat().st_mode
        except FileNotFoundError:
            return False
        return bool(mode & (stat.S_IRWXG | stat.S_IRWXO))

    def loose_folders(self) -> list[LooseFolder]:
        """The token's folders that others may write (the link's and, for a symlink, the
        target's): whoever can write there can swap the tokens or plant a link where we write."""
        folders = [Path(os.path.abspath(self.path.parent))]
        with contextlib.suppress(OSError):
            target = self.write_target().parent
            if target != folders[0]:
                folders.append(target)
        loose = []
        for folder in folders:
            try:
                mode = folder.stat().st_mode
            except OSError:  # not there yet: `_ensure_folder` makes it 0700
                continue
            if mode & (stat.S_IWGRP | stat.S_IWOTH):
                loose.append(LooseFolder(folder, stat.S_IMODE(mode)))
        return loose


@dataclass(frozen=True)
class LooseFolder:
    """A token folder that group or others may write, and what to do about it."""

    path: Path
    mode: int

    def message(self) -> str:
        """One line: which folder, its mode, and the command (or setting) that fixes it."""
        said = f"token folder {self.path} is writable by others (mode {self.mode:04o})"
        if self.mode & stat.S_ISVTX:  # a shared folder like /tmp: narrowing it breaks others
            return f"{said}: set SCHWAB_TOKEN_PATH to a file in a folder of your own (mode 700)"
        return f"{said}: run `chmod 700 {shlex.quote(str(self.path))}`"


def import_schwab_py(path: str | os.PathLike[str]) -> TokenRecord:
    """Read a token file written by schwab-py, so its users keep their login.

    schwab-py records the login as `creation_timestamp` (never changed by refreshes): that is our
    `login_at`, and the refresh token expires 7 days after it.
    """
    source = Path(path).expanduser()
    try:
        data = json.loads(source.read_bytes())
    except FileNotFoundError:
        raise TokenFileError(f"no schwab-py token file at {source}") from None
    except OSError as exc:
        raise TokenFileError(f"cannot read {source}: {exc.strerror}") from None
    except RecursionError:
        raise TokenFileError(
            f"{source} is not a schwab-py token file (JSON nested too deeply): "
            "run `schwab-stream login`"
        ) from None
    except ValueError:  # not JSON, not UTF-8, or a number too long to read
        raise TokenFileError(
            f"{source} is not valid JSON, so not a schwab-py token file: run `schwab-stream login`"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("token"), dict):
        raise TokenFileError(
            f"{source} is not a schwab-py token file (no 'token' object): run `schwab-stream login`"
        )
    created = data.get("creation_timestamp")
    if created is not None and not _is_time(created):
        raise TokenFileError(
            f"{source} has a creation_timestamp that is not a time (a number of seconds since "
            "1970, finite and before 2286): run `schwab-stream login`"
        )
    if not isinstance(created, int | float) or isinstance(created, bool):
        raise TokenFileError(
            f"{source} is a legacy schwab-py token file without creation_timestamp, so its login "
            "time (the refresh token's 7-day clock) is unknown: run `schwab-stream login`"
        )
    token: dict[str, Any] = data["token"]
    try:
        id_token = token.get("id_token")
        return TokenRecord(
            access_token=_string(token, "access_token"),
            refresh_token=_string(token, "refresh_token"),
            access_expires_at=_timestamp(token, "expires_at") if token.get("expires_at") else 0.0,
            login_at=float(created),
            refresh_expires_at=float(created) + REFRESH_TOKEN_LIFETIME,
            token_type=_text(token, "token_type", "Bearer"),
            scope=_text(token, "scope", "api"),
            id_token=id_token if isinstance(id_token, str) else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise TokenFileError(
            f"{source} is an incomplete schwab-py token file ({_describe(exc)}): "
            "run `schwab-stream login`"
        ) from None


def _string(data: Mapping[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key} is not a non-empty string")
    return value


def _timestamp(data: Mapping[str, Any], key: str) -> float:
    """A time in the file: Unix seconds, finite, 1970..2286 (an int, a float or such a string)."""
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{key} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{key} is not a time") from None
    if not _is_time(number):
        raise ValueError(f"{key} is not a time (seconds since 1970, finite, before 2286)")
    return number


def _is_time(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        number = float(value)
    except OverflowError:  # an int too big for a float
        return False
    return math.isfinite(number) and 0 <= number <= MAX_TIMESTAMP


def _text(data: Mapping[str, Any], key: str, default: str) -> str:
    value = data.get(key)
    if value is None or value == "":
        return default
    if not isinstance(value, str):
        raise ValueError(f"{key} is not a string")
    return value


def _number(value: Any, default: float) -> float:
    """A lifetime from Schwab's answer; anything but a finite number of seconds is `default`."""
    number = default
    if isinstance(value, int | float) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError):
            number = float(value)
    elif isinstance(value, str):
        with contextlib.suppress(ValueError):
            number = float(value)
    return number if math.isfinite(number) and abs(number) <= MAX_TIMESTAMP else default


def _describe(exc: Exception) -> str:
    """Name the problem without echoing file contents (which may be tokens)."""
    if isinstance(exc, KeyError):
        return f"missing {exc.args[0]}"
    if isinstance(exc, ValueError) and str(exc).split(" ", 1)[-1].startswith(("is not", "is a")):
        return str(exc)  # our own words: a key and what is wrong with it, never its value
    return "a field has the wrong type"


def _foreign(path: Path, why: str) -> TokenFileError:
    return TokenFileError(f"token file {path} is not usable ({why}): move it away and {_LOGIN_FIX}")


def _lock_busy(lock_path: Path, timeout: float) -> str:
    return (
        f"another process has held the token lock {lock_path} for over {timeout:.0f} s "
        "(a stuck refresh?): stop it and try again"
    )


def _lock_failed(lock_path: Path, exc: OSError) -> str:
    return (
        f"cannot open the token lock {lock_path} ({exc.strerror}): check that folder, "
        "or set SCHWAB_TOKEN_PATH elsewhere"
    )
