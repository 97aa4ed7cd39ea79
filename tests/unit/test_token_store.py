"""TokenStore: the file format, atomic 0600 writes, the lock, clear errors, and schwab-py import."""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import replace
from pathlib import Path

import pytest

from schwab_stream.auth.token_store import (
    FORMAT_VERSION,
    REFRESH_TOKEN_LIFETIME,
    TokenRecord,
    TokenStore,
    import_schwab_py,
)
from schwab_stream.errors import LoginRequiredError, TokenFileError

ACCESS = "AT.secret-access-value@"
REFRESH = "RT.secret-refresh-value@"


def record(**changes: object) -> TokenRecord:
    now = time.time()
    base = TokenRecord(
        access_token=ACCESS,
        refresh_token=REFRESH,
        access_expires_at=now + 1800,
        login_at=now,
        refresh_expires_at=now + REFRESH_TOKEN_LIFETIME,
        id_token="eyJ.id.token",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_round_trip_and_file_shape(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "token.json")
    rec = record()
    store.save(rec)
    assert store.load() == rec
    data = json.loads(store.path.read_text())
    assert data["format"] == "schwab-stream-token"
    assert data["version"] == FORMAT_VERSION
    assert data["refresh_expires_at"] - data["login_at"] == REFRESH_TOKEN_LIFETIME
    assert set(data) >= {
        "access_token",
        "refresh_token",
        "id_token",
        "token_type",
        "scope",
        "access_expires_at",
        "login_at",
        "refresh_expires_at",
    }


def test_permissions_file_0600_created_folder_0700(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        store = TokenStore(tmp_path / "new" / "folder" / "token.json")
        store.save(record())
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.lock_path.stat().st_mode) == 0o600
    assert not store.loose_permissions()


def test_existing_loose_file_becomes_0600_and_is_flagged_before(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "token.json")
    store.save(record())
    store.path.chmod(0o644)
    assert store.loose_permissions()
    store.save(record(access_token="AT.other@"))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_save_replaces_atomically_and_cleans_orphans(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "token.json")
    store.save(record())
    inode = store.path.stat().st_ino
    orphan = tmp_path / ".token.json.abc123.tmp"
    orphan.write_text("half a token")
    store.save(record(access_token="AT.second@"))
    assert store.path.stat().st_ino != inode  # a new file was renamed over the old one
    assert store.load().access_token == "AT.second@"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.json", "token.json.lock"]


def test_fingerprint_changes_on_every_save(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "token.json")
    assert store.fingerprint() is None
    store.save(record())
    first = store.fingerprint()
    store.save(record())
    assert first is not None and store.fingerprint() != first


def test_missing_file_asks_for_login(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "token.json")
    with pytest.raises(LoginRequiredError, match="schwab-stream login") as info:
        store.load()
    assert str(store.path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"", "corrupt"),
        (b'{"format": "schwab-stream-token", "version": 1, "access_tok', "corrupt"),
        (b"\xff\xfe\x00", "corrupt"),
        (b"[1, 2, 3]", "not a JSON object"),
        (b'{"hello": "world"}', "not a schwab-stream token file"),
        (b'{"format": "schwab-stream-token", "version": 99}', "version 99"),
        (b'{"format": "schwab-stream-token", "version": 1, "access_token": "x"}', "incomplete"),
        (b'{"creation_timestamp": 1, "token": {}}', "schwab-py token file"),
    ],
)
def test_corrupt_or_foreign_file_names_file_and_fix(
    tmp_path: Path, content: bytes, why: str
) -> None:
    store = TokenStore(tmp_path / "token.json")
    store.path.write_bytes(content)
    with pytest.raises(TokenFileError) as info:
        store.load()
    message = str(info.value)
    assert why in message
    assert str(store.path) in message
    assert "schwab-stream" in message  # names the command that fixes it
    assert "\n" not in message


def test_incomplete_file_does_not_echo_token_values(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "token.json")
    data = record().to_json()
    data["refresh_token"] = 12345  # wrong type
    store.path.write_text(json.dumps(data))
    with pytest.raises(TokenFileError) as info:
        store.load()
    assert ACCESS not in str(info.value)


def test_reprs_hide_tokens(tmp_path: Path) -> None:
    rec = record()
    text = repr(rec) + str(rec) + repr(TokenStore(tmp_path / "t.json"))
    for secret in (ACCESS, REFRESH, "eyJ.id.token"):
        assert secret not in text
    assert "login_at" in repr(rec)


def test_lock_is_exclusive_across_lock_holders(tmp_path: Path) -> None:
    first = TokenStore(tmp_path / "token.json")
    second = TokenStore(tmp_path / "token.json")  # its own descriptor, as another process has
    with first.locked():
        started = time.monotonic()
        with pytest.raises(TokenFileError, match="token lock"), second.locked(timeout=0.2):
            pass
        assert time.monotonic() - started >= 0.2
        first.save(record())  # reentrant for its holder
    second.save(record())  # released by the first: free again
    assert second.load().access_token == ACCESS


async def test_async_lock_waits_without_blocking_then_times_out(tmp_path: Path) -> None:
    first = TokenStore(tmp_path / "token.json")
    second = TokenStore(tmp_path / "token.json")
    with first.locked():
        started = time.monotonic()
        with pytest.raises(TokenFileError, match="token lock"):
            async with second.alocked(timeout=0.2):
                pass
        assert time.monotonic() - started >= 0.2
    async with second.alocked(timeout=0.2):
        assert second.lock_path.exists()


def test_from_token_response_exchange_then_refresh_keeps_the_7_day_clock() -> None:
    body = {
        "expires_in": 1800,
        "token_type": "Bearer",
        "scope": "api",
        "refresh_token": "RT1",
        "access_token": "AT1",
        "id_token": "ID1",
    }
    login = TokenRecord.from_token_response(body, now=1000.0)
    assert login.login_at == 1000.0
    assert login.access_expires_at == 2800.0
    assert login.refresh_expires_at == 1000.0 + REFRESH_TOKEN_LIFETIME
    later = TokenRecord.from_token_response(
        {"expires_in": 1800, "access_token": "AT2"}, now=5000.0, previous=login
    )
    assert later.login_at == 1000.0
    assert later.refresh_expires_at == login.refresh_expires_at
    assert later.refresh_token == "RT1"  # kept when Schwab does not resend it
    assert later.access_expires_at == 6800.0
    with pytest.raises(ValueError, match="access_token"):
        TokenRecord.from_token_response({"refresh_token": "x"}, now=1.0)


def schwab_py_file(path: Path, **top: object) -> Path:
    data: dict[str, object] = {
        "creation_timestamp": 1716400000,
        "token": {
            "expires_in": 1800,
            "token_type": "Bearer",
            "scope": "api",
            "refresh_token": REFRESH,
            "access_token": ACCESS,
            "id_token": "eyJ.id.token",
            "expires_at": 1716401800,
        },
    }
    data.update(top)
    path.write_text(json.dumps(data))
    return path


def test_import_schwab_py_uses_creation_timestamp_as_login(tmp_path: Path) -> None:
    rec = import_schwab_py(schwab_py_file(tmp_path / "schwab.json"))
    assert rec.access_token == ACCESS and rec.refresh_token == REFRESH
    assert rec.login_at == 1716400000
    assert rec.refresh_expires_at == 1716400000 + REFRESH_TOKEN_LIFETIME
    assert rec.access_expires_at == 1716401800
    assert rec.id_token == "eyJ.id.token"


def test_import_legacy_schwab_py_file_without_creation_timestamp(tmp_path: Path) -> None:
    path = tmp_path / "legacy.json"
    path.write_text(json.dumps({"token": {"access_token": "a", "refresh_token": "r"}}))
    with pytest.raises(TokenFileError, match=r"legacy.*creation_timestamp.*schwab-stream login"):
        import_schwab_py(path)


@pytest.mark.parametrize(
    ("content", "why"),
    [("not json", "not valid JSON"), ('{"a": 1}', "no 'token' object")],
)
def test_import_rejects_other_files(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "other.json"
    path.write_text(content)
    with pytest.raises(TokenFileError, match=why):
        import_schwab_py(path)
    with pytest.raises(TokenFileError, match="no schwab-py token file"):
        import_schwab_py(tmp_path / "missing.json")


def test_unusable_folder_is_a_clear_error(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    for path in (not_a_folder / "token.json", not_a_folder / "sub" / "token.json"):
        with pytest.raises(TokenFileError, match="SCHWAB_TOKEN_PATH") as info:
            TokenStore(path).save(record())
        assert str(not_a_folder) in str(info.value)
    a_folder = tmp_path / "dir.json"
    a_folder.mkdir()
    with pytest.raises(TokenFileError, match="cannot write token file"):
        TokenStore(a_folder).save(record())
    with pytest.raises(TokenFileError, match="cannot read token file"):
        TokenStore(a_folder).load()
