"""The token file's surroundings (issue #14, weak): a symlinked token file stays a link (the write
lands on its target), a token folder others may write is said once by `run`, `login` and
`token status`, and a login callback host other than loopback is said before the server listens."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from schwab_stream.auth.token_store import TokenRecord, TokenStore
from schwab_stream.cli import main
from schwab_stream.errors import TokenStoreUnavailable


def record(access: str = "access-one") -> TokenRecord:
    now = time.time()
    return TokenRecord(
        access_token=access,
        refresh_token="refresh-one",
        access_expires_at=now + 1800,
        login_at=now,
        refresh_expires_at=now + 7 * 86400,
    )


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No .env, none of the developer's settings; a token path in a folder of the test's."""
    for name in list(os.environ):
        if name.upper().startswith(("SCHWAB_", "REDIS_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "tokens"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("SCHWAB_APP_KEY", "key")
    monkeypatch.setenv("SCHWAB_APP_SECRET", "secret")
    monkeypatch.setenv("SCHWAB_TOKEN_PATH", str(folder / "token.json"))
    return folder


def warnings(result: Result, needle: str) -> list[str]:
    return [line for line in result.stderr.splitlines() if needle in line]


# --- (a) a symlinked token file ------------------------------------------------------------------


def test_a_symlinked_token_file_stays_a_link_and_its_target_gets_the_tokens(
    tmp_path: Path,
) -> None:
    vault, config = tmp_path / "vault", tmp_path / "config"
    vault.mkdir(mode=0o700)
    config.mkdir(mode=0o700)
    target, link = vault / "token.json", config / "token.json"
    link.symlink_to(target)  # dangling until the first write: the write makes the target
    store = TokenStore(link)
    for access in ("access-one", "access-two"):
        store.save(record(access))
        assert link.is_symlink() and os.readlink(link) == str(target)
        assert TokenStore(target).load().access_token == access
        assert store.load().access_token == access
        assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in vault.iterdir()) == ["token.json"]  # no temp file left
    assert sorted(p.name for p in config.iterdir()) == ["token.json", "token.json.lock"]


def test_a_relative_symlink_is_followed_from_the_links_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "vault").mkdir()
    (tmp_path / "config").mkdir()
    link = tmp_path / "config" / "token.json"
    link.symlink_to(Path("..") / "vault" / "token.json")
    monkeypatch.chdir(tmp_path / "vault")  # the link resolves from its own folder, not cwd
    TokenStore(link).save(record())
    assert link.is_symlink()
    assert TokenStore(tmp_path / "vault" / "token.json").load().access_token == "access-one"


def test_a_symlink_loop_is_one_clear_error_not_a_replaced_link(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.symlink_to(b)
    b.symlink_to(a)
    with pytest.raises(TokenStoreUnavailable) as info:
        TokenStore(a).save(record())
    assert info.value.reason == "write_failed"
    assert str(a) in str(info.value) and "\n" not in str(info.value)
    assert a.is_symlink() and b.is_symlink()


# --- (b) a token folder others may write ----------------------------------------------------------


def test_a_folder_others_may_write_is_named_with_its_mode_and_the_fix(tmp_path: Path) -> None:
    folder = tmp_path / "tokens"
    folder.mkdir()
    store = TokenStore(folder / "token.json")
    for private in (0o700, 0o755, 0o750):
        folder.chmod(private)
        assert store.loose_folders() == []
    folder.chmod(0o777)
    (loose,) = store.loose_folders()
    assert loose.message() == (
        f"token folder {folder} is writable by others (mode 0777): run `chmod 700 {folder}`"
    )
    folder.chmod(0o770)
    assert "mode 0770" in store.loose_folders()[0].message()
    folder.chmod(0o1777)  # shared like /tmp: chmod would break the others, so move the token
    assert "set SCHWAB_TOKEN_PATH" in store.loose_folders()[0].message()
    folder.chmod(0o700)


def test_a_symlinks_target_folder_is_checked_too(tmp_path: Path) -> None:
    vault, config = tmp_path / "vault", tmp_path / "config"
    vault.mkdir(mode=0o777)
    vault.chmod(0o777)
    config.mkdir(mode=0o700)
    (config / "token.json").symlink_to(vault / "token.json")
    (loose,) = TokenStore(config / "token.json").loose_folders()
    assert loose.path == vault


def test_token_status_warns_once_about_a_loose_folder(env: Path) -> None:
    TokenStore(env / "token.json").save(record())
    env.chmod(0o777)
    for args in (["token", "status"], ["token", "status", "--json"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
        assert warnings(result, "token folder") == [
            f"warning: token folder {env} is writable by others (mode 0777): run `chmod 700 {env}`"
        ]
    env.chmod(0o700)
    assert not warnings(CliRunner().invoke(main, ["token", "status"]), "token folder")


async def _logged_in(*args: Any, **kwargs: Any) -> TokenRecord:
    return record()


def test_login_warns_once_about_a_loose_folder(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("schwab_stream.cli.login.run_login", _logged_in)
    env.chmod(0o777)
    result = CliRunner().invoke(main, ["login", "--no-browser"])
    assert result.exit_code == 0, result.output
    (line,) = warnings(result, "token folder")
    assert line.startswith("warning: ") and f"chmod 700 {env}" in line


def test_run_warns_once_about_a_loose_folder(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def not_streaming(main: Coroutine[Any, Any, int]) -> int:
        main.close()
        return 0

    monkeypatch.setattr("schwab_stream.cli.run.run_async", not_streaming)
    monkeypatch.setenv("SCHWAB_LOG_FORMAT", "console")
    env.chmod(0o777)
    result = CliRunner().invoke(main, ["run", "--subscribe", "LEVELONE_EQUITIES=AAPL"])
    assert result.exit_code == 0, result.output
    (line,) = warnings(result, "token folder")
    assert "WARNING" in line and "(mode 0777)" in line and f"chmod 700 {env}" in line


# --- (c) a login callback host that is not loopback ----------------------------------------------


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("https://0.0.0.0:8182", "0.0.0.0, every network interface"),
        ("https://[::]:8182", "::, every network interface"),
        ("https://192.168.1.5:8182", "192.168.1.5, a network interface"),
        ("https://myhost.example:8182", "myhost.example, a name"),
        ("https://127.0.0.1:8182", None),
        ("https://127.0.0.2:8182", None),
        ("https://[::1]:8182", None),
    ],
)
def test_login_says_when_its_callback_server_listens_beyond_this_machine(
    env: Path, monkeypatch: pytest.MonkeyPatch, url: str, said: str | None
) -> None:
    monkeypatch.setattr("schwab_stream.cli.login.run_login", _logged_in)
    monkeypatch.setenv("SCHWAB_CALLBACK_URL", url)
    result = CliRunner().invoke(main, ["login", "--no-browser"])
    assert result.exit_code == 0, result.output
    lines = warnings(result, "will listen on")
    if said is None:
        assert lines == []
    else:
        assert lines == [
            f"warning: SCHWAB_CALLBACK_URL={url}: the login callback server will listen on "
            f"{said}" + lines[0].split(said, 1)[1]
        ]
        assert lines[0].endswith("port 8182 can send it requests: use 127.0.0.1")
    # --manual runs no server: nothing listens, so nothing to say
    manual = CliRunner().invoke(main, ["login", "--manual"])
    assert warnings(manual, "will listen on") == []
