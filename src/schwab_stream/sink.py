"""What every producer of events depends on: a place to hand them that never waits.

The stream client, the expiry notifier and the standby reporter take an `EventSink`, not the
Redis publisher, so the stream side never imports redis and tests can hand them a list.
"""

from __future__ import annotations

from typing import Protocol

from schwab_stream.events import Event


class EventSink(Protocol):
    def submit(self, events: list[Event]) -> None:
        """Take events for publishing; never blocks (conflates or counts what it drops)."""

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        """Take one lifecycle event for the status stream (the caller logs it)."""
