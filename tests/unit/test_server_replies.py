"""Error replies as each server words them (captured from Redis 6.2.14 and 7.0.15, Valkey
8.1.8 and 9.1.2: the publisher's script, plain commands): one form, one code, one line on every
server (#21)."""

from __future__ import annotations

import pytest

from schwab_stream.publish import wire
from schwab_stream.publish.flight import RefusalScope

OOM = "OOM command not allowed when used memory > 'maxmemory'."


@pytest.mark.parametrize(
    ("said", "text"),
    [
        # an XADD refused inside the script for lack of memory
        ("@user_script: 18: -OOM command not allowed when used memory > 'maxmemory'.\r\n", OOM),
        (OOM, OOM),
        # ... and for lack of permission
        (
            "@user_script: 18: The user executing the script can't run this command or subcommand",
            "NOPERM The user executing the script can't run this command or subcommand",
        ),
        (  # Redis 7.0.15 (Debian 12's)
            "ERR The user executing the script can't run this command or subcommand",
            "NOPERM The user executing the script can't run this command or subcommand",
        ),
        (
            "ERR ACL failure in script: User u has no permissions to run the 'xadd' command",
            "NOPERM User u has no permissions to run the 'xadd' command",
        ),
        # the same words on every server
        (
            "WRONGTYPE Operation against a key holding the wrong kind of value",
            "WRONGTYPE Operation against a key holding the wrong kind of value",
        ),
        ("NOPERM no MSET", "NOPERM no MSET"),
        ("ERR two\r\nlines", "ERR two / lines"),
    ],
)
def test_an_error_reply_has_one_form_on_every_server(said: str, text: str) -> None:
    assert wire.error_text(said) == text
    refusal = wire.classify(said)
    assert refusal.message == text and refusal.code == text.split(" ", 1)[0]


def test_only_a_key_of_another_type_is_about_one_key() -> None:
    for said in (
        "@user_script: 18: -OOM command not allowed when used memory > 'maxmemory'.\r\n",
        "ERR ACL failure in script: User u has no permissions to run the 'xadd' command",
    ):
        assert wire.classify(said).scope is RefusalScope.ALL
    wrongtype = "WRONGTYPE Operation against a key holding the wrong kind of value"
    assert wire.classify(wrongtype).scope is RefusalScope.KEY
