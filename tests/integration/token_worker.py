"""A separate process for test_token_crash.py (settings come from the environment).

token_worker.py loop   refresh (forced) in a tight loop until killed; "ready" after the first
token_worker.py once   load the file, print "ready", wait for a line on stdin, then ask for an
                       access token and print its SHA-256 (never the token itself)
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import sys

from schwab_stream.auth.client import SchwabAuthClient
from schwab_stream.config import load_settings


async def refresh_loop() -> None:
    client = SchwabAuthClient(load_settings())
    client.retry_base_delay = 0.01
    await client.refresh(force=True)
    print("ready", flush=True)
    while True:
        await client.refresh(force=True)
        # A pause lets the other workers' lock polls win now and then (filelock polls; it does
        # not queue waiters), so every worker keeps refreshing until it is killed.
        await asyncio.sleep(random.uniform(0.0, 0.01))


async def once() -> None:
    client = SchwabAuthClient(load_settings())
    client.store.load()
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    token = await client.access_token()
    print(hashlib.sha256(token.encode()).hexdigest(), flush=True)
    await client.aclose()


if __name__ == "__main__":
    asyncio.run(refresh_loop() if sys.argv[1] == "loop" else once())
