"""What a connection's data frames carry: one service per frame, the services taking turns.

Level one is conflated (a snapshot of the requested fields first, then only what changed); books
and screeners are whole snapshots every book_interval; charts send each bar once it finishes.
Outside its market's session a service sends what Schwab does then (docs/simulator.md): level one
the snapshot of a new key and nothing more, charts the last bar of the session, books and
screeners nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from schwab_stream.sim import books, levelone, screeners
from schwab_stream.sim.charts import chart_item
from schwab_stream.sim.instruments import Instrument
from schwab_stream.sim.registry import Market
from schwab_stream.sim.services import (
    ACCT_SERVICE,
    BOOK_SERVICES,
    CHART_SERVICES,
    LEVELONE_SERVICES,
    SCREENER_SERVICES,
)
from schwab_stream.sim.state import SimConfig
from schwab_stream.sim.subscriptions import Sub

Content = list[dict[str, Any]]


class Feed:
    """One connection's data production: round-robin over services, per-service chart seq."""

    def __init__(self, config: SimConfig, market: Market) -> None:
        self.config = config
        self.market = market
        self.round_robin = 0
        self.seq: dict[str, int] = {}

    def next_block(self, subs: dict[str, Sub], now: float) -> tuple[str, Content] | None:
        """(service, content) of the next service in turn that has something to send."""
        services = [s for s in subs if s != ACCT_SERVICE]
        for _ in range(len(services)):
            svc = services[self.round_robin % len(services)]
            self.round_robin += 1
            content = self._content(svc, subs[svc], now)
            if content:
                return svc, content
        return None

    def _pick(self, sub: Sub) -> list[str]:
        """The keys this frame updates: all, or symbols_per_frame of them taken in turn."""
        keys = list(sub.keys)
        per_frame = self.config.symbols_per_frame
        if per_frame <= 0 or per_frame >= len(keys):
            return keys
        start = sub.cursor % len(keys)
        sub.cursor = start + per_frame
        return (keys[start:] + keys[:start])[:per_frame]

    def _content(self, svc: str, sub: Sub, now: float) -> Content:
        if svc in LEVELONE_SERVICES:
            return self._levelone(svc, sub)
        if svc in BOOK_SERVICES or svc in SCREENER_SERVICES:
            return self._snapshots(svc, sub, now)
        if svc in CHART_SERVICES:
            return self._charts(svc, sub)
        return []

    def _picked(self, svc: str, sub: Sub) -> Iterator[tuple[str, Instrument]]:
        """The keys this frame updates, with their instruments (keys of no instrument: none)."""
        for key in self._pick(sub):
            inst = self.market.for_service(svc, key)
            if inst is not None:
                yield key, inst

    def _levelone(self, svc: str, sub: Sub) -> Content:
        now_ms = self.market.now_ms()
        content: Content = []
        for key, inst in self._picked(svc, sub):
            inst.step(now_ms)
            extras, values = levelone.fields(svc, inst, now_ms)
            last = sub.last.get(key)
            if last is not None and not inst.hours.open_at(now_ms):
                continue
            if last is None:
                item = {"key": key, **extras}
                item.update((f, values[f]) for f in sub.fields)
                sub.last[key] = {f: values[f] for f in sub.fields}
            else:
                changed = {f: values[f] for f in sub.fields if last.get(f, None) != values[f]}
                if not changed:
                    continue
                last.update(changed)
                item = {"key": key, **changed}
            content.append(item)
        return content

    def _snapshots(self, svc: str, sub: Sub, now: float) -> Content:
        """Books and screeners: each due key's whole snapshot, then due again book_interval on."""
        market = self.market
        now_ms = market.now_ms()
        content: Content = []
        limit = self.config.symbols_per_frame or None
        for key in [k for k in sub.keys if sub.due.get(k, 0.0) <= now][:limit]:
            sub.due[key] = now + self.config.book_interval
            if svc in BOOK_SERVICES:
                inst = market.for_service(svc, key)
                if inst is None or not inst.hours.open_at(now_ms):
                    continue
                inst.step(now_ms)
                body = books.snapshot(svc, inst, now_ms)
            else:
                if not market.schedule(screeners.KINDS[svc]).open_at(now_ms):
                    continue
                screened = screeners.snapshot(market, svc, key, now_ms)
                if screened is None:
                    continue
                body = screened
            item = {"key": key}
            item.update((f, body[f]) for f in sub.fields if f in body)
            content.append(item)
        return content

    def _charts(self, svc: str, sub: Sub) -> Content:
        """Bars that finished since the last one sent: those before the subscription are history,
        not stream, except that a subscription outside the session gets the session's last bar
        (a real one at 21:15 got the day's 19:59 bar)."""
        now_ms = self.market.now_ms()
        content: Content = []
        for key, inst in self._picked(svc, sub):
            inst.catch_up(now_ms)
            sent = sub.bar_sent.get(key)
            if sent is None:
                open_now = inst.hours.open_at(now_ms)
                back = 1 if open_now else 2
                sent = sub.bar_sent[key] = (
                    inst.bars[-back].start_ms if len(inst.bars) >= back else 0
                )
                if open_now:
                    continue
            for bar in inst.bars:
                if bar.start_ms > sent:
                    seq = self.seq.get(svc, 0)
                    self.seq[svc] = seq + 1
                    values = chart_item(svc, bar)
                    item = {"seq": seq, "key": key}
                    item.update((f, values[f]) for f in sub.fields if f in values)
                    content.append(item)
                    sub.bar_sent[key] = bar.start_ms
        return content
