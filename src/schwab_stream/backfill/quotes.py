"""A quote before the first tick: at start (`SCHWAB_QUOTES_AT_START=true`), each level-one key's
latest-state key (`PREFIX:latest:tick:SYMBOL`) is seeded from Schwab's REST quotes, so a program
that starts before the stream's first tick, or reads a key that trades rarely, sees a quote.

Seeded only where no latest state exists (SET NX): a live tick is always newer, and the stream
itself gets nothing from REST (its `seq` counts live events only). The seeded event says so:
`snapshot: true`, `seq: 0`, `fields.source = "rest"`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from redis.exceptions import RedisError

from schwab_stream.errors import RestError, SchwabStreamError
from schwab_stream.events import TickEvent, encode_event
from schwab_stream.publish.keys import StreamKeys
from schwab_stream.redis_client import async_redis, is_cluster
from schwab_stream.rest.client import MarketDataClient
from schwab_stream.rest.models import Quote

log = logging.getLogger(__name__)

#: The level-one services REST quotes stand in for.
QUOTED_SERVICES = (
    "LEVELONE_EQUITIES",
    "LEVELONE_OPTIONS",
    "LEVELONE_FUTURES",
    "LEVELONE_FUTURES_OPTIONS",
    "LEVELONE_FOREX",
)


def quote_event(service: str, quote: Quote, recv_ns: int) -> TickEvent | None:
    """The tick a REST quote stands for (None without a `quote` block)."""
    q = quote.quote
    if q is None:
        return None
    return TickEvent(
        service=service,
        symbol=quote.symbol,
        seq=0,
        recv_ns=recv_ns,
        bid=q.bid_price,
        ask=q.ask_price,
        last=q.last_price,
        bid_size=q.bid_size,
        ask_size=q.ask_size,
        last_size=q.last_size,
        volume=q.total_volume,
        open=q.open_price,
        high=q.high_price,
        low=q.low_price,
        close=q.close_price,
        mark=q.mark,
        net_change=q.net_change,
        quote_time=q.quote_time,
        trade_time=q.trade_time,
        snapshot=True,
        fields={"source": "rest"},
    )


async def seed_latest(
    rest: MarketDataClient, redis_url: str, prefix: str, wanted: Mapping[str, list[str]]
) -> int:
    """Seed the latest-state keys of `wanted`'s level-one keys that have none; returns how many
    were written. Trouble with Schwab or Redis is one warning: streaming does not wait for it."""
    service_of = {key: s for s in QUOTED_SERVICES for key in wanted.get(s, [])}
    if not service_of:
        return 0
    try:
        answer = await rest.quotes(list(service_of))
    except (RestError, SchwabStreamError) as exc:
        log.warning("quotes at start: %s; the latest-state keys wait for the first ticks", exc)
        return 0
    now = time.time_ns()
    written = 0
    keys = StreamKeys(prefix, cluster=is_cluster(redis_url))
    client = async_redis(redis_url, socket_connect_timeout=2.0, socket_timeout=5.0)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for symbol, quote in answer.quotes.items():
                event = quote_event(service_of.get(symbol, "LEVELONE_EQUITIES"), quote, now)
                if event is not None:
                    pipe.set(keys.latest("tick", symbol), encode_event(event), nx=True)
            written = sum(1 for done in await pipe.execute() if done)
    except (RedisError, OSError) as exc:
        log.warning("quotes at start: redis: %s", exc)
    finally:
        await client.aclose()
    if answer.invalid_symbols:
        log.warning("quotes at start: Schwab knows no %s", ", ".join(answer.invalid_symbols))
    log.info("quotes at start: %d latest-state keys seeded from REST quotes", written)
    return written
