"""BarGate: the stream client's event sink when back-fill is on. Bars go through the
`BarSequencer` (order, no minute twice, held while their key is being back-filled); everything
else goes straight to the publisher, so ticks, books and the other keys never wait.
"""

from __future__ import annotations

from collections.abc import Callable

from schwab_stream.backfill.sequencer import BarSequencer
from schwab_stream.events import BarEvent, Event
from schwab_stream.sink import EventSink


class BarGate:
    def __init__(
        self,
        sink: EventSink,
        sequencer: BarSequencer,
        on_logged_in: Callable[[], None],
        observe: Callable[[int | None], None],
    ) -> None:
        self.sink = sink
        self.sequencer = sequencer
        #: Given each batch's last Schwab timestamp: the server's clock, for the windows
        self.observe = observe
        #: Called at each `logged_in` (every connection, before anything is subscribed on it):
        #: the back-fill of the minutes the socket was down starts there, so the first live bar
        #: of each key (Schwab resends the last one) already waits for it
        self.on_logged_in = on_logged_in

    def submit(self, events: list[Event]) -> None:
        if events:
            self.observe(events[-1].schwab_ts)
        if not any(type(event) is BarEvent for event in events):
            self.sink.submit(events)
            return
        out: list[Event] = []
        for event in events:
            if type(event) is BarEvent:
                out.extend(self.sequencer.live(event))
            else:
                out.append(event)
        self.sink.submit(out)

    def status(self, state: str, detail: str = "", code: int | None = None, **info: object) -> None:
        if state == "logged_in":
            self.on_logged_in()
        self.sink.status(state, detail, code, **info)
