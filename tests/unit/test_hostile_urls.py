"""Hostile Redis URLs: a password never shows in what any command says about a URL it cannot use,
even when the password holds characters that end a URL's host part unencoded."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from schwab_stream.cli import main
from schwab_stream.redact import safe_url
from schwab_stream.redis_topology import parse

PW = "Zq9hostilePW"

#: Each breaks the URL before it connects anywhere (exit 2, one line).
MALFORMED = [
    f"redis+sentinel://u:{PW}/x@127.0.0.1:1/mymaster",  # '/' in the password
    f"redis+cluster://u:{PW}/x@127.0.0.1:1",
    f"redis+sentinel://u:{PW}?x@127.0.0.1:1/mymaster",  # '?' in the password
    f"redis+sentinel://u:{PW}#x@127.0.0.1:1/mymaster",  # '#'
    f"redis+cluster://u:{PW}#x@127.0.0.1:1",
    f"redis+cluster://:{PW}@127.0.0.1:1?password={PW}",  # options a cluster URL does not take
    f"redis+sentinel://u:{PW}@127.0.0.1:1/mymaster?db=3",
    f"redis://u:{PW}/x@127.0.0.1:1/0",
    f"redis+sentinel://u:{PW}@/mymaster",
    f"redis+sentinel://u:{PW}@127.0.0.1:1,/mymaster",
    f"redis+sentinel://u:{PW}@127.0.0.1:99999/mymaster",
    f"redis+sentinel://u:{PW}@127.0.0.1:1",
    f"redis+sentinel://u:{PW}@127.0.0.1:1/m/99999999999999999999999",  # no such database
    f"redis+sentinel://u:{PW}@127.0.0.1:1/m/\u0661",  # an Arabic-Indic one: isdigit() says yes
    f"redis+cluster://u:{PW}@127.0.0.1:1/0",
    f"redis+cluster://u:{PW}@[::1:1",
]

COMMANDS = [
    ["subscriptions"],
    ["subscribe", "LEVELONE_EQUITIES=AAPL"],
    ["unsubscribe", "LEVELONE_EQUITIES=AAPL"],
    ["tail", "--count", "1"],
    ["archive", "--out", "/tmp/hu"],
    ["backfill", "AAPL"],
    ["demo", "--no-ui", "--duration", "1"],
]


@pytest.mark.parametrize("url", MALFORMED)
def test_a_malformed_url_is_one_line_exit_2_without_the_password(url: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse(url)
    assert PW not in str(caught.value)
    assert PW not in safe_url(url)
    for command in COMMANDS:
        result = CliRunner().invoke(main, [*command, "--redis-url", url])
        said = result.output + result.stderr
        assert result.exit_code == 2, (command, said)
        assert PW not in said, (command, said)
        assert "Traceback" not in said
        assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (f"redis://u:{PW}/x@h:1/0", "redis://u:***@h:1/0"),
        (f"redis://u:{PW}?x@h:1/0", "redis://u:***@h:1/0"),
        (f"redis+sentinel://u:{PW}#x@h:1,g:2/m/1", "redis+sentinel://u:***@h:1,g:2/m/1"),
        (f"redis+cluster://:{PW}@[::1:1", "redis+cluster://:***@[::1:1"),
        (f"redis://u:{PW}@h:1/0", "redis://u:***@h:1/0"),
        ("redis://h:1/0?client_name=a", "redis://h:1/0?client_name=a"),
        ("redis://user@h:1/0", "redis://user@h:1/0"),
    ],
)
def test_safe_url_masks_a_password_with_unencoded_delimiters(url: str, masked: str) -> None:
    assert safe_url(url) == masked


def test_percent_encoded_delimiters_and_a_standalone_option_with_an_at_still_parse() -> None:
    where = parse("redis+sentinel://u:p%2Fa%3Fs%23s%40@h:1,g:2/my%2Dprimary/3")
    assert (where.password, where.primary, where.db) == ("p/a?s#s@", "my-primary", 3)
    assert parse("redis://h:1/0?client_name=a@b").kind == "standalone"
