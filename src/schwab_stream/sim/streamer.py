"""The simulator's streamer websocket: the aiohttp edge that runs one `Session` per connection.

Everything Schwab-specific happens in the sans-I/O `session.Session` and the shared `hub.Hub`;
this module only moves text between a socket and a session, on the session's schedule, and can
cut a socket hard (the `drop` fault). Shapes follow docs/schwab-protocol.md §5-§7.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from aiohttp import WSMsgType, web

from schwab_stream.sim.hub import Hub
from schwab_stream.sim.services import BOOK_SERVICES, CHART_SERVICES, LEVELONE_SERVICES
from schwab_stream.sim.session import Session
from schwab_stream.sim.state import SimState

log = logging.getLogger(__name__)

#: The services whose keys are instruments, and how many new ones are made between two yields
#: to the event loop (docs/simulator.md: the cost of a new symbol).
INSTRUMENT_SERVICES = frozenset((*LEVELONE_SERVICES, *BOOK_SERVICES, *CHART_SERVICES))
WARM_BATCH = 8

HUB_KEY: web.AppKey[Hub] = web.AppKey("sim_streamer_hub", Hub)


class Connection:
    """Binds a Session to one aiohttp websocket: one writer task, wakes, and hard aborts."""

    def __init__(
        self, ws: web.WebSocketResponse, request: web.Request, hub: Hub, now: float
    ) -> None:
        self.ws = ws
        self.transport = request.transport
        self.hub = hub
        self.session: Session = hub.connect(now)
        self.event = asyncio.Event()
        self.session.wake = self.event.set
        #: While True the session makes no frames: `warm_task` is making new instruments.
        self.warming = False
        self.warm_task: asyncio.Task[None] | None = None
        self._unwarmed = False

    def subscribed(self) -> None:
        """After each received frame: make the instruments of keys it subscribed (`warm`) in
        a task of their own, so the reader goes on reading and the pump on answering. Only if
        every held key is in every frame (symbols_per_frame 0): else a frame makes at most that
        many, in turn, and a key removed before its turn costs nothing."""
        if self.hub.config.symbols_per_frame > 0:
            return
        self._unwarmed = True
        if not self.warming:
            self.warming = True
            self.warm_task = asyncio.create_task(self.warm())

    async def warm(self) -> None:
        """Make the instruments of keys just subscribed a few at a time, yielding to the event
        loop between, before the next frame would make them all at once: a bulk ADD of 1,000
        new symbols then holds other connections and /sim/stats milliseconds at a time, not for
        the whole batch. A failure is left to the pump's poll, which makes the same call."""
        market = self.hub.market
        try:
            made = 0
            while self._unwarmed:
                self._unwarmed = False
                for svc, sub in list(self.session.subs.items()):
                    if svc not in INSTRUMENT_SERVICES:
                        continue
                    for key in list(sub.keys):
                        if key not in market.instruments:
                            market.for_service(svc, key)
                            made += 1
                            if made % WARM_BATCH == 0:
                                await asyncio.sleep(0)
        except Exception:
            log.exception("simulator: making subscribed instruments failed")
        finally:
            self.warming = False
            self.event.set()

    def abort(self) -> None:
        """Drop without a close frame (the network dying under the client)."""
        if self.transport is not None:
            self.transport.abort()

    async def pump(self) -> None:
        """Write what the session produces; a bug in the simulator ends the socket with 1011."""
        try:
            await self._pump()
        except (ConnectionError, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("simulator stream failed")
            await self.ws.close(code=1011, message=b"simulator error")

    async def _pump(self) -> None:
        session, ws, stats = self.session, self.ws, self.hub.state.stats
        loop = asyncio.get_running_loop()
        while not ws.closed:
            self.event.clear()
            now = loop.time()
            if not (self.warming or session.outbox):  # answers first, then the next frames
                session.poll(now)
            if not session.silenced(now):
                while session.outbox:
                    await ws.send_str(session.outbox.popleft())
                    stats["frames_sent"] += 1
                if session.closing:
                    await ws.close(code=1000, message=b"stream closed by server")
                    return
            delay = math.inf if self.warming else session.next_wakeup(loop.time()) - loop.time()
            if delay <= 0:
                await asyncio.sleep(0)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event.wait(), None if math.isinf(delay) else delay)


#: The open websocket connections (the control API's faults act on them).
CONNS_KEY = web.AppKey("sim_streamer_connections", list[Connection])


async def _websocket(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB_KEY]
    ws = web.WebSocketResponse(timeout=2.0, max_msg_size=1 << 20)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    conn = Connection(ws, request, hub, loop.time())
    request.app[CONNS_KEY].append(conn)
    hub.count("connections")
    pump = asyncio.create_task(conn.pump())
    try:
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                conn.session.receive(msg.data, loop.time())
            elif msg.type is WSMsgType.BINARY:
                conn.session.receive(msg.data.decode("utf-8", "replace"), loop.time())
            conn.event.set()
            conn.subscribed()
    finally:
        hub.on_close(conn.session)
        request.app[CONNS_KEY].remove(conn)
        pump.cancel()
        if conn.warm_task is not None:
            conn.warm_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await pump
    return ws


async def _close_all(app: web.Application) -> None:
    """On shutdown, close streams politely so runner.cleanup() does not wait on them."""
    conns: list[Connection] = app[CONNS_KEY]
    for conn in conns.copy():
        with contextlib.suppress(Exception):
            await conn.ws.close(code=1001, message=b"simulator shutting down")


def setup(app: web.Application, state: SimState) -> None:
    """Register the streamer websocket route (GET /ws) and its shared hub."""
    app[HUB_KEY] = Hub(state)
    app[CONNS_KEY] = []
    app.router.add_get("/ws", _websocket)
    app.on_shutdown.append(_close_all)
