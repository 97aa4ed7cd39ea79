"""How many frames per second the simulator sustains on one core.

The simulator runs in its own process pinned to one CPU (Linux), with an unbounded --rate; a client
in this process (pinned to another CPU when there is one) logs in, subscribes and drains the socket
on loopback. Prints frames/s, items/s and MB/s as the client saw them, and the simulator's own
frames_sent count.

    .venv/bin/python bench/sim_throughput.py                      # level one, 50 symbols
    .venv/bin/python bench/sim_throughput.py --service NASDAQ_BOOK --symbols 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import time
import urllib.request
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.client import connect

from schwab_stream.sim.clock import parse_market_time
from schwab_stream.sim.reference import EQUITIES
from schwab_stream.sim.server import start
from schwab_stream.sim.state import SimConfig
from schwab_stream.sim.tokens import SIM_CORREL_ID, SIM_CUSTOMER_ID

#: Where the simulator's market clock starts: a regular session, so data flows at any hour.
REGULAR_SESSION = parse_market_time("2025-06-10T09:35")


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def _serve(config: SimConfig, pipe: Connection) -> None:
    """The simulator process: start, hand back (base URL, access token), serve until killed."""
    _pin(0)

    async def main() -> None:
        running = await start(config)
        access, _ = running.state.tokens.login()
        pipe.send((running.base_url, running.state.streamer_url, access))
        await asyncio.Event().wait()

    asyncio.run(main())


def _request(rid: int, service: str, command: str, **params: str) -> str:
    return json.dumps(
        {
            "requests": [
                {
                    "service": service,
                    "requestid": str(rid),
                    "command": command,
                    "SchwabClientCustomerId": SIM_CUSTOMER_ID,
                    "SchwabClientCorrelId": SIM_CORREL_ID,
                    "parameters": params,
                }
            ]
        }
    )


def _frames_sent(base_url: str) -> int:
    with urllib.request.urlopen(base_url + "/sim/stats", timeout=5) as answer:  # noqa: S310
        stats: dict[str, Any] = json.loads(answer.read())
    return int(stats["frames_sent"])


async def _drain(url: str, token: str, base_url: str, args: argparse.Namespace) -> None:
    symbols = list(EQUITIES)
    keys = ",".join((symbols * (args.symbols // len(symbols) + 1))[: args.symbols])
    if args.symbols > len(symbols):
        keys = ",".join(symbols + [f"SYM{n}" for n in range(args.symbols - len(symbols))])
    fields = "0,1,2,3" if args.service.endswith("_BOOK") else ",".join(map(str, range(52)))
    async with connect(url, max_size=None, compression=None) as ws:
        await ws.send(
            _request(
                0,
                "ADMIN",
                "LOGIN",
                Authorization=token,
                SchwabClientChannel="N9",
                SchwabClientFunctionId="APIAPP",
            )
        )
        await ws.recv()
        await ws.send(_request(1, args.service, "SUBS", keys=keys, fields=fields))
        warm_until = time.monotonic() + args.warmup
        while time.monotonic() < warm_until:
            await ws.recv()
        sent_before = _frames_sent(base_url)
        frames = items = size = 0
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < args.seconds:
            text = await ws.recv()
            frames += 1
            size += len(text)
            if args.count_items:
                items += sum(len(b["content"]) for b in json.loads(text).get("data", []))
        sent = _frames_sent(base_url) - sent_before
    print(
        f"service            {args.service} x {args.symbols} symbols, "
        f"symbols_per_frame={args.symbols_per_frame}"
    )
    print(f"frames/s received  {frames / elapsed:,.0f}")
    if args.count_items:
        print(f"items/s received   {items / elapsed:,.0f}")
    print(f"MB/s received      {size / elapsed / 1e6:,.1f}")
    print(f"frames/s sent      {sent / elapsed:,.0f}  (simulator's frames_sent)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service", default="LEVELONE_EQUITIES")
    parser.add_argument("--symbols", type=int, default=50)
    parser.add_argument("--symbols-per-frame", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--count-items",
        action="store_true",
        help="parse every frame to count items (costs client CPU)",
    )
    args = parser.parse_args()
    config = SimConfig(
        rate=1e9,
        symbols_per_frame=args.symbols_per_frame,
        book_interval=0.0001,
        heartbeat_interval=10,
        idle_timeout=60,
        symbol_limit=100_000,
        market_time=REGULAR_SESSION,  # the market open, whatever the hour
    )
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(config, child), daemon=True)
    server.start()
    try:
        base_url, url, token = parent.recv()
        _pin(1)
        asyncio.run(_drain(url, token, base_url, args))
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
