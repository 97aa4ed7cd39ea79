"""The simulator's control API: counters, faults on demand or on a schedule, account activity.

Faults act on the streamer connections open at that moment (see docs/simulator.md):

* ``drop``: abort the TCP connection, no websocket close frame (the client sees 1006);
* ``silence:N``: send nothing at all (heartbeats included) for N seconds;
* ``garbage``: send one malformed frame;
* ``raw`` (HTTP only): send the request body, as is, as one frame; with ``?on=COMMAND`` it is armed
  instead and goes out just before the response to the next such command (LOGIN, SUBS, ...);
* ``code:N``: behave as Schwab does for response code N: 3 expires every access token and answers
  the LOGIN with code 3, then closes; 12 and 30 send the ADMIN notify and close; any other code is
  armed and answers the next matching command (19 the next SUBS/ADD, 22 the next SUBS, ...).

Start-up faults use the same names in ``NAME[:ARG]@SECONDS[/EVERY]``, e.g. ``drop@5`` (5 s after
start), ``silence:3@10/60`` (3 s of silence at 10 s, then every 60 s), ``code:12@30``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from aiohttp import web

from schwab_stream.sim.codes import ARMABLE, CLIENT_COMMANDS, IMMEDIATE_CODES
from schwab_stream.sim.marketdata import REST_GATE_KEY
from schwab_stream.sim.state import STATE_KEY, SimState
from schwab_stream.sim.streamer import CONNS_KEY, HUB_KEY

#: Counters that /sim/stats always reports, even before they are first incremented.
BASE_COUNTERS = ("token_exchanges", "token_refreshes", "logins", "connections", "frames_sent")

#: Response codes a fault can play.
FAULT_CODES = frozenset(IMMEDIATE_CODES | ARMABLE.keys())

_SPEC_RE = re.compile(
    r"^(?P<name>drop|silence|garbage|code)(?::(?P<arg>[0-9.]+))?"
    r"@(?P<at>[0-9.]+)(?:/(?P<every>[0-9.]+))?$"
)


@dataclass(frozen=True)
class FaultSpec:
    """One scheduled fault: what, with which argument, first at `at` s, then every `every` s."""

    name: str
    arg: float | None
    at: float
    every: float | None


def parse_fault(text: str) -> FaultSpec:
    """Parse NAME[:ARG]@SECONDS[/EVERY]; ValueError says what is wrong."""
    m = _SPEC_RE.match(text.strip())
    if m is None:
        raise ValueError(
            f"bad fault {text!r}: expected NAME[:ARG]@SECONDS[/EVERY] with NAME one of "
            "drop, silence:SECONDS, garbage, code:N (e.g. drop@5, silence:3@10/60, code:12@30)"
        )
    name = m["name"]
    try:
        arg = float(m["arg"]) if m["arg"] is not None else None
        at = float(m["at"])
        every = float(m["every"]) if m["every"] is not None else None
    except ValueError:
        raise ValueError(f"bad fault {text!r}: not a number") from None
    if (name in ("silence", "code")) != (arg is not None):
        raise ValueError(f"bad fault {text!r}: silence and code take :ARG, the others do not")
    if name == "silence" and not (arg and arg > 0):
        raise ValueError(f"bad fault {text!r}: silence needs seconds > 0")
    if name == "code" and (arg is None or not arg.is_integer() or int(arg) not in FAULT_CODES):
        raise ValueError(f"bad fault {text!r}: code must be one of {sorted(FAULT_CODES)}")
    if every is not None and every <= 0:
        raise ValueError(f"bad fault {text!r}: the period must be > 0")
    return FaultSpec(name, arg, at, every)


def apply_fault(app: web.Application, name: str, arg: float | None) -> dict[str, object]:
    """Play one fault on the open streamer connections; returns what it did (the HTTP answer)."""
    hub = app[HUB_KEY]
    conns = app[CONNS_KEY]
    now = asyncio.get_running_loop().time()
    hub.count(f"fault_{name}")
    result: dict[str, object] = {"fault": name}
    if name == "drop":
        for conn in list(conns):
            conn.abort()
        result["connections"] = len(conns)
    elif name == "silence":
        assert arg is not None
        for conn in conns:
            conn.session.silence(arg, now)
        result.update(seconds=arg, connections=len(conns))
    elif name == "garbage":
        for conn in conns:
            conn.session.garbage()
        result["connections"] = len(conns)
    else:
        assert arg is not None
        code = int(arg)
        result.update(
            code=code, connections=hub.apply_code(code), armed=code not in IMMEDIATE_CODES
        )
    return result


async def _stats(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body: dict[str, object] = {name: 0 for name in BASE_COUNTERS}
    body.update(state.stats)
    body["commands"] = dict(state.commands)
    body["rest"] = dict(state.rest)
    return web.json_response(body)


async def _rest_fault(request: web.Request) -> web.Response:
    """Fail the next `count` market-data REST calls with `status` (default 500, once)."""
    try:
        status = int(request.query.get("status", "500"))
        count = int(request.query.get("count", "1"))
    except ValueError:
        raise web.HTTPBadRequest(text="status and count must be integers") from None
    if not 400 <= status <= 599 or count < 0:
        raise web.HTTPBadRequest(text="status must be 400-599 and count >= 0")
    request.app[REST_GATE_KEY].fail_next(status, count)
    request.app[STATE_KEY].stats["fault_rest"] += 1
    return web.json_response({"fault": "rest", "status": status, "count": count})


async def _drop(request: web.Request) -> web.Response:
    return web.json_response(apply_fault(request.app, "drop", None))


async def _silence(request: web.Request) -> web.Response:
    try:
        seconds = float(request.query.get("seconds", ""))
    except ValueError:
        seconds = 0.0
    if not seconds > 0:
        raise web.HTTPBadRequest(text="seconds must be a number > 0")
    return web.json_response(apply_fault(request.app, "silence", seconds))


async def _garbage(request: web.Request) -> web.Response:
    return web.json_response(apply_fault(request.app, "garbage", None))


async def _raw(request: web.Request) -> web.Response:
    """Send the body as one text frame to every live connection, or arm it with ?on=COMMAND."""
    body = await request.read()
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise web.HTTPBadRequest(text="the body must be UTF-8 (a websocket text frame)") from None
    if not text:
        raise web.HTTPBadRequest(text="the body is the frame to send: it must not be empty")
    on = request.query.get("on")
    if on is not None and on not in CLIENT_COMMANDS:
        raise web.HTTPBadRequest(text=f"on must be one of {sorted(CLIENT_COMMANDS)}")
    hub = request.app[HUB_KEY]
    hub.count("fault_raw")
    connections = hub.raw(text, on)
    result: dict[str, object] = {"fault": "raw", "bytes": len(body), "connections": connections}
    if on is not None:
        result["armed"] = on
    return web.json_response(result)


async def _code(request: web.Request) -> web.Response:
    raw = request.match_info["code"]
    if not raw.isdigit() or int(raw) not in FAULT_CODES:
        raise web.HTTPBadRequest(text=f"code must be one of {sorted(FAULT_CODES)}")
    return web.json_response(apply_fault(request.app, "code", float(raw)))


async def _order(request: web.Request) -> web.Response:
    """Play an order's life on ACCT_ACTIVITY: created, accepted, routed, filled."""
    hub = request.app[HUB_KEY]
    if hub.replay is not None:
        raise web.HTTPConflict(text="replay mode sends recorded frames only")
    symbol = request.query.get("symbol", "").strip().upper()
    side = request.query.get("side", "BUY").upper()
    try:
        quantity = int(request.query.get("quantity", "10"))
        spacing = float(request.query.get("spacing", "0.05"))
    except ValueError:
        raise web.HTTPBadRequest(text="quantity must be an integer, spacing seconds") from None
    if not symbol or side not in ("BUY", "SELL") or quantity <= 0 or spacing < 0:
        raise web.HTTPBadRequest(text="need symbol=, side=BUY|SELL, quantity>0, spacing>=0")
    now = asyncio.get_running_loop().time()
    events, count = hub.play_order(symbol, quantity, side, spacing, now)
    return web.json_response({"symbol": symbol, "events": events, "connections": count})


def _startup_faults(
    specs: list[FaultSpec],
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def run(app: web.Application, spec: FaultSpec) -> None:
        await asyncio.sleep(spec.at)
        while True:
            apply_fault(app, spec.name, spec.arg)
            if spec.every is None:
                return
            await asyncio.sleep(spec.every)

    async def context(app: web.Application) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(run(app, spec)) for spec in specs]
        yield
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return context


def setup(app: web.Application, state: SimState) -> None:
    """Register /sim/* routes and schedule config.startup_faults (bad specs raise ValueError)."""
    specs = [parse_fault(text) for text in state.config.startup_faults]
    app.router.add_get("/sim/stats", _stats)
    app.router.add_post("/sim/fault/drop", _drop)
    app.router.add_post("/sim/fault/silence", _silence)
    app.router.add_post("/sim/fault/garbage", _garbage)
    app.router.add_post("/sim/fault/raw", _raw)
    app.router.add_post("/sim/fault/code/{code}", _code)
    app.router.add_post("/sim/fault/rest", _rest_fault)
    app.router.add_post("/sim/account/order", _order)
    if specs:
        app.cleanup_ctx.append(_startup_faults(specs))
