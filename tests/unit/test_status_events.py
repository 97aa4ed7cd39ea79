from __future__ import annotations

from schwab_stream.events import StatusEvent, decode_event, encode_event, status_event


def test_status_events_share_one_increasing_seq_and_round_trip() -> None:
    first = status_event("standby", "waiting", instance="a")
    second = status_event("active", "took the lease")
    third = status_event("gap", "redis away", code=None, conflated=3)
    assert first.seq < second.seq < third.seq
    assert (first.service, first.symbol, first.info) == ("ADMIN", "", {"instance": "a"})
    decoded = decode_event(encode_event(third))
    assert isinstance(decoded, StatusEvent) and decoded.info == {"conflated": 3}
    assert decoded.recv_ns > 0
