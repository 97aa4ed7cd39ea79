"""Holds written straight into the holds hash (not through `subscribe`, which checks them): a
service Schwab does not have, a key in no format Schwab takes, a holder `subscribe` refuses are
not holds; the bridge does not send them to Schwab on every connection."""

from __future__ import annotations

from schwab_stream.control.holds import HoldKind, hold_field, read_holds


def test_fields_subscribe_would_refuse_are_not_holds() -> None:
    kind = HoldKind.PINNED.value.encode()
    good = hold_field("LEVELONE_EQUITIES", "AAPL", "desk")
    hostile = [
        hold_field("FOO", "X", "desk"),
        hold_field("", "AAPL", "desk"),
        hold_field("LEVELONE_EQUITIES", "A\x00", "desk"),
        hold_field("LEVELONE_EQUITIES", "X" * 100_000, "desk"),
        hold_field("LEVELONE_EQUITIES", "aapl", "desk"),
        hold_field("LEVELONE_EQUITIES", "MSFT", "\x1b]0;evil\x07"),
        hold_field("LEVELONE_EQUITIES", "MSFT", "h" * 1000),
    ]
    holds, bad = read_holds({good: kind, **dict.fromkeys(hostile, kind)})
    assert [(h.service, h.key, h.holder) for h in holds] == [("LEVELONE_EQUITIES", "AAPL", "desk")]
    assert sorted(bad) == sorted(hostile)
