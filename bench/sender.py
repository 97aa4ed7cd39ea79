"""Bench-only Schwab streamer stand-in: answers LOGIN and SUBS, then sends pre-encoded frames.

It runs in its own process so sending costs the measured process nothing, and it sends the frames
of a file (one per line) either as fast as the socket takes them (`--rate 0`) or on an absolute
schedule of `--rate` frames per second (frames that fall due while it sleeps go out together, as
Schwab's own bursts do). With `--times FILE` it records each frame's send time (`time.time_ns()`
just before the frame is handed to the socket: the start of the send->ack latency) and writes
them there, int64 in frame order, before it prints `sent N SECONDS` once the last frame is
written.

    python bench/sender.py --port PORT --frames FILE [--rate R] [--subs N] [--times FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from array import array
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve


def _response(request: dict[str, object]) -> str:
    return json.dumps(
        {
            "response": [
                {
                    "service": request["service"],
                    "command": request["command"],
                    "requestid": request["requestid"],
                    "SchwabClientCorrelId": request.get("SchwabClientCorrelId", ""),
                    "timestamp": int(time.time() * 1000),
                    "content": {"code": 0, "msg": "ok"},
                }
            ]
        }
    )


async def _send(ws: ServerConnection, frames: list[str], rate: float, times: Path | None) -> None:
    sent = array("q")
    stamp = sent.append if times is not None else None
    start = time.perf_counter()
    if rate <= 0:
        for frame in frames:
            if stamp is not None:
                stamp(time.time_ns())
            await ws.send(frame)
    else:
        interval = 1.0 / rate
        for index, frame in enumerate(frames):
            delay = start + index * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if stamp is not None:
                stamp(time.time_ns())
            await ws.send(frame)
    seconds = time.perf_counter() - start
    if times is not None:
        _write(times, sent.tobytes())
    print(f"sent {len(frames)} {seconds:.6f}", flush=True)


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)


def _handler(frames: list[str], rate: float, subs: int, times: Path | None) -> object:
    async def handle(ws: ServerConnection) -> None:
        subscribed = 0
        sender: asyncio.Task[None] | None = None
        async for message in ws:
            for request in json.loads(message)["requests"]:
                await ws.send(_response(request))
                if request["command"] == "SUBS":
                    subscribed += 1
                    if subscribed == subs and sender is None:
                        sender = asyncio.create_task(_send(ws, frames, rate, times))
        if sender is not None:
            sender.cancel()

    return handle


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--frames", type=Path, required=True)
    parser.add_argument("--rate", type=float, default=0.0, help="frames/s; 0 sends at once")
    parser.add_argument("--subs", type=int, default=1, help="SUBS to answer before sending")
    parser.add_argument("--times", type=Path, help="write each frame's send time (ns) here")
    args = parser.parse_args()
    frames = args.frames.read_text().splitlines()
    handler = _handler(frames, args.rate, args.subs, args.times)
    async with serve(handler, "127.0.0.1", args.port, compression=None, max_size=None):  # type: ignore[arg-type]
        print("ready", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main())
