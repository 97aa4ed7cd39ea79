"""Turn decoded data messages into contract events: the level-one merge state and the seq counters.

Pure and synchronous, so the reader task calls it inline. It never raises on what Schwab sends:
unknown services, unknown fields, items without a key and values of the wrong type are each a
`Problem`, a bounded kind counted in `Normalizer.by_kind` (the client passes its `bad_frames`
counter, so they reach `frames_bad_total{reason}`). `Normalizer.stats` counts them in detail
(kind, service and field), and `new_problems()` names each detail once so the client logs it once.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from operator import attrgetter, itemgetter
from typing import Any, Final, TypeGuard

import msgspec

from schwab_stream.events import (
    AccountEvent,
    BarEvent,
    Event,
    Level,
    Level2Event,
    Maker,
    ScreenerEvent,
    ScreenerItem,
    TickEvent,
)
from schwab_stream.stream.fields import (
    ACCT_ACTIVITY,
    BOOK_VENUES,
    CHART_EQUITY,
    CHART_FUTURES,
    FIELD_NAMES,
    LEVELONE_EXTRA_KEYS,
    LEVELONE_SERVICES,
    SCREENER_EQUITY,
    SCREENER_ITEM_FIELDS,
    SCREENER_OPTION,
    TICK_CORE_ATTRS,
    TICK_TIME_ATTRS,
)
from schwab_stream.stream.problems import (
    CONTAINERS,
    MAX_DETAILS,
    MAX_NAME,
    Problem,
    too_deep,
)
from schwab_stream.stream.protocol import BookItem, BookLevel, DataMessage

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_PRICE = attrgetter("price")


def _snake(name: str) -> str:
    return _CAMEL.sub("_", name).lower()


def _as_int(value: Any) -> int | None:
    """An int from an int (not bool) or an integral float; None when it is neither."""
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    return None


def _is_number(value: object) -> TypeGuard[float]:
    return type(value) is float or type(value) is int


# A TickEvent is built positionally from a per-quote argument list, which is much cheaper than
# keywords (docs/performance.md, "Figures behind design choices").
# Positions come from the Struct itself, so a field added to the contract cannot shift them.
_TICK_FIELDS: Final = TickEvent.__struct_fields__
_TICK_POS: Final = {name: pos for pos, name in enumerate(_TICK_FIELDS)}
_TICK_DEFAULTS: Final = tuple(getattr(TickEvent(), name) for name in _TICK_FIELDS)
_SERVICE, _SYMBOL, _SEQ, _TS, _RECV = (
    _TICK_POS[name] for name in ("service", "symbol", "seq", "schwab_ts", "recv_ns")
)
_SNAPSHOT, _CHANGED, _FIELDS = (_TICK_POS[name] for name in ("snapshot", "changed", "fields"))

_NUMBER_TYPES: Final[frozenset[type]] = frozenset({int, float, type(None)})
_TIME_TYPES: Final[frozenset[type]] = frozenset({int, type(None)})
_BOOL_TYPES: Final[frozenset[type]] = frozenset({bool, type(None)})
# Slot of a level-one item key: (position in the TickEvent arguments, accepted value types,
# name). Position 0 means "goes to `fields`", -1 means "skip" (the symbol: `key`, field 0).
_Slot = tuple[int, frozenset[type], str]
_TO_FIELDS: Final = 0
_SKIP: Final = -1


class _Quote:
    """The merged level-one state of one (service, symbol): TickEvent arguments and `fields`.

    `fields` is copied on write: an event keeps the dict it was given, so events share it until
    an extra field changes, instead of every event copying it.
    """

    __slots__ = ("args", "fields")

    def __init__(self, service: str, symbol: str) -> None:
        self.args: list[Any] = list(_TICK_DEFAULTS)
        self.args[_SERVICE] = service
        self.args[_SYMBOL] = symbol
        self.fields: dict[str, Any] = {}


def _tick_slots(service: str) -> dict[str, _Slot]:
    """Item key -> slot for one level-one service, built once."""
    anything: frozenset[type] = frozenset()
    slots: dict[str, _Slot] = {
        "key": (_SKIP, anything, "symbol"),
        "delayed": (_TICK_POS["delayed"], _BOOL_TYPES, "delayed"),
    }
    for extra, name in LEVELONE_EXTRA_KEYS.items():
        slots[extra] = (_TO_FIELDS, anything, name)
    for number, name in enumerate(FIELD_NAMES[service]):
        if number == 0:
            slots["0"] = (_SKIP, anything, name)
        elif name in TICK_TIME_ATTRS:
            slots[str(number)] = (_TICK_POS[name], _TIME_TYPES, name)
        elif name in TICK_CORE_ATTRS:
            slots[str(number)] = (_TICK_POS[name], _NUMBER_TYPES, name)
        else:
            slots[str(number)] = (_TO_FIELDS, anything, name)
    return slots


_MAX_PLANS: Final = 1024  # item shapes remembered per service; Schwab sends a handful
_PLAN_MIN_KEYS: Final = 8  # items with more keys than this are merged by plan


def _kept_name(key: str) -> str:
    """The name an unknown item key is kept under in `fields`: `f<NUM>` if numeric."""
    return f"f{key}" if key.isdigit() else _snake(key)


def _getter(keys: list[str]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """A function returning the values of `keys` of an item, as a tuple, in C when it can."""
    if len(keys) > 1:
        return itemgetter(*keys)
    if keys:
        key = keys[0]
        return lambda item: (item[key],)
    return lambda item: ()


class _Plan:
    """How to merge one item shape (its keys, in order) into a quote, worked out once: Schwab
    sends the same few shapes all day (the snapshot's, then a handful of delta shapes), so the
    per-key lookups happen once per shape and each item is merged by C-level getters."""

    __slots__ = ("changed", "core", "extra_names", "extras", "positions", "types", "unknown")

    def __init__(self, shape: tuple[str, ...], slots: dict[str, _Slot]) -> None:
        core_keys: list[str] = []
        extra_keys: list[str] = []
        self.positions: list[int] = []
        self.types: list[frozenset[type]] = []
        self.extra_names: list[str] = []
        self.changed: list[str] = []
        self.unknown: list[str] = []
        for key in shape:
            slot = slots.get(key)
            if slot is None:
                self.unknown.append(key)
                pos, name = _TO_FIELDS, _kept_name(key)
            else:
                pos, types, name = slot
            if pos == _SKIP:
                continue
            if pos == _TO_FIELDS:
                extra_keys.append(key)
                self.extra_names.append(name)
            else:
                core_keys.append(key)
                self.positions.append(pos)
                self.types.append(types)
            self.changed.append(name)
        self.core = _getter(core_keys)
        self.extras = _getter(extra_keys)


_BAR_NUMBERS: Final = frozenset({"open", "high", "low", "close", "volume"})
_BAR_INTS: Final = frozenset({"start", "sequence"})


def _bar_slots(service: str) -> dict[str, tuple[str | None, bool]]:
    """Item key -> (BarEvent attribute, or None for a known field we do not publish such as
    the chart day; whether the value is an int)."""
    slots: dict[str, tuple[str | None, bool]] = {"key": (None, False), "seq": (None, False)}
    for number, name in enumerate(FIELD_NAMES[service]):
        published = name in _BAR_NUMBERS or name in _BAR_INTS
        slots[str(number)] = (name if published else None, name in _BAR_INTS)
    return slots


_Handler = Callable[[DataMessage[Any], int], list[Event]]


#: service -> held key -> `recv_ns` of its last data (the `SubscriptionBook`'s `streaming`)
Held = dict[str, dict[str, int]]


class Normalizer:
    """Per-connection normalization state; `reset` it when Schwab will resend snapshots.

    Given `held`, only data of held keys is used (and each key's last data time is stamped
    there); without it, every key is (a decoder on its own, as in the bench).
    """

    def __init__(self, by_kind: Counter[str] | None = None, held: Held | None = None) -> None:
        self._held = held
        #: Problems by `Problem` kind: bounded, so fit for a metric label
        self.by_kind: Counter[str] = Counter() if by_kind is None else by_kind
        #: Problems in detail, `KIND:SERVICE[:FIELD]`: for the once-per-detail log line
        self.stats: Counter[str] = Counter()
        self._new: list[str] = []
        self._quotes: dict[str, dict[str, _Quote]] = {s: {} for s in LEVELONE_SERVICES}
        # seq per output stream (tick:{SYMBOL}, ...): never reset, so consumers see no rewind.
        self._tick_seq: dict[str, int] = {}
        self._level2_seq: dict[str, int] = {}
        self._bar_seq: dict[str, int] = {}
        self._screener_seq: dict[str, int] = {}
        self._account_seq = 0
        handlers: dict[str, _Handler] = {}
        for service in LEVELONE_SERVICES:
            handlers[service] = self._tick_handler(service)
        for service, venue in BOOK_VENUES.items():
            handlers[service] = self._book_handler(service, venue)
        for service in (CHART_EQUITY, CHART_FUTURES):
            handlers[service] = self._bar_handler(service)
        for service in (SCREENER_EQUITY, SCREENER_OPTION):
            handlers[service] = self._screener_handler(service)
        handlers[ACCT_ACTIVITY] = self._account
        self._handlers = handlers

    # --- public -----------------------------------------------------------------------------

    def feed(self, message: DataMessage[Any], recv_ns: int) -> list[Event]:
        """The events of one data message (one per well-formed item), in item order."""
        handler = self._handlers.get(message.service)
        if handler is None:
            self._problem(Problem.UNKNOWN_SERVICE, message.service[:MAX_NAME])
            return []
        if self._held is not None and message.service not in self._held:
            self._problem(Problem.NOT_SUBSCRIBED, message.service)
            return []
        return handler(message, recv_ns)

    def _marks(self, service: str) -> dict[str, int] | None:
        """The held keys of `service` to check each item against, or None to take every key."""
        return None if self._held is None else self._held.get(service)

    def _is_held(self, marks: dict[str, int] | None, service: str, key: str, recv_ns: int) -> bool:
        """Whether data for `key` is used (stamping its last data time), else counted."""
        if marks is None:
            return True
        if key not in marks:  # (per service: a large unsubscribe leaves data for many keys)
            self._problem(Problem.NOT_SUBSCRIBED, service)
            return False
        marks[key] = recv_ns
        return True

    def reset(self, service: str, keys: Iterable[str] | None = None) -> None:
        """Forget level-one state (all keys of `service`, or just `keys`), so the next event of
        each is a snapshot. Seq numbers continue. Other services hold no state: a no-op."""
        quotes = self._quotes.get(service)
        if quotes is None:
            return
        if keys is None:
            quotes.clear()
        else:
            for key in keys:
                quotes.pop(key, None)

    def new_problems(self) -> list[str]:
        """Problem details (keys of `stats`) seen for the first time since the last call."""
        new, self._new = self._new, []
        return new

    # --- problems -----------------------------------------------------------------------------

    def _problem(self, kind: Problem, service: str, field: str = "") -> None:
        self.by_kind[kind] += 1
        detail = f"{kind}:{service}:{field}" if field else f"{kind}:{service}"
        stats = self.stats
        if detail not in stats and len(stats) >= MAX_DETAILS:
            # The server chooses field and service names: past the bound, new details share one
            # per kind, so neither this counter nor the log lines grow without bound.
            detail = f"{kind}:(more)"
        count = self.stats[detail] + 1
        self.stats[detail] = count
        if count == 1:
            self._new.append(detail)

    def _symbol(self, service: str, item: Any) -> str | None:
        """The item's `key`, or None (counted) when the item is not an object with a key."""
        if type(item) is not dict:
            self._problem(Problem.ITEM_NOT_OBJECT, service)
            return None
        symbol = item.get("key")
        if type(symbol) is not str or not symbol:
            self._problem(Problem.ITEM_NO_KEY, service)
            return None
        return symbol

    def _unknown_field(self, service: str, key: str) -> str:
        """Count an unknown item key; return the name it is kept under."""
        self._problem(Problem.UNKNOWN_FIELD, service, key[:MAX_NAME])
        return _kept_name(key)

    # --- level one ----------------------------------------------------------------------------

    def _tick_handler(self, service: str) -> _Handler:
        slots = _tick_slots(service)
        slot_of = slots.get
        plans: dict[tuple[str, ...], _Plan] = {}
        quotes = self._quotes[service]
        seqs = self._tick_seq
        problem = self._problem

        def merge_keys(quote: _Quote, item: dict[str, Any]) -> list[str]:
            """Merge an item key by key; values of the wrong type are counted and left out.
            Returns the names of the fields it changed."""
            args = quote.args
            fields: dict[str, Any] | None = None  # copied on the first extra field
            changed: list[str] = []
            for key, value in item.items():
                slot = slot_of(key)
                if slot is None:
                    name = self._unknown_field(service, key)
                    if value.__class__ in CONTAINERS and too_deep(value):
                        problem(Problem.TOO_DEEP, service, key[:MAX_NAME])
                        continue
                    if fields is None:
                        fields = quote.fields = quote.fields.copy()
                    fields[name] = value
                else:
                    pos, types, name = slot
                    if pos > 0:
                        if value.__class__ not in types:
                            problem(Problem.BAD_VALUE, service, key)
                            continue
                        args[pos] = value
                    elif pos == _TO_FIELDS:
                        if value.__class__ in CONTAINERS and too_deep(value):
                            problem(Problem.TOO_DEEP, service, key[:MAX_NAME])
                            continue
                        if fields is None:
                            fields = quote.fields = quote.fields.copy()
                        fields[name] = value
                    else:
                        continue
                changed.append(name)
            return changed

        def ticks(message: DataMessage[Any], recv_ns: int) -> list[Event]:
            timestamp = message.timestamp
            events: list[Event] = []
            marks = self._marks(service)
            for item in message.content:
                if type(item) is not dict:
                    problem(Problem.ITEM_NOT_OBJECT, service)
                    continue
                symbol = item.get("key")
                if type(symbol) is not str or not symbol:
                    problem(Problem.ITEM_NO_KEY, service)
                    continue
                if marks is not None:
                    if symbol not in marks:
                        problem(Problem.NOT_SUBSCRIBED, service)
                        continue
                    marks[symbol] = recv_ns
                quote = quotes.get(symbol)
                snapshot = quote is None
                if quote is None:
                    quote = quotes[symbol] = _Quote(service, symbol)
                args = quote.args
                if len(item) <= _PLAN_MIN_KEYS:  # a delta: key by key is cheapest
                    changed = merge_keys(quote, item)
                else:  # a snapshot or a wide delta: merge by its shape's plan
                    shape = tuple(item)
                    plan = plans.get(shape)
                    if plan is None:
                        if len(plans) >= _MAX_PLANS:
                            plans.clear()
                        plan = plans[shape] = _Plan(shape, slots)
                    # zip without strict=True: the lengths match by construction, and the
                    # keyword adds to the cost of every call on the hot path.
                    for pos, types, value in zip(plan.positions, plan.types, plan.core(item)):  # noqa: B905
                        if value.__class__ not in types:  # the checked path counts it
                            changed = merge_keys(quote, item)
                            break
                        args[pos] = value
                    else:
                        # (only shapes with extra fields pay for the check: deltas have none)
                        extras = plan.extras(item) if plan.extra_names else ()
                        if extras and not CONTAINERS.isdisjoint(map(type, extras)):
                            # a nested value: the checked path bounds its depth (rare: real
                            # level-one fields are scalars)
                            changed = merge_keys(quote, item)
                        else:
                            for key in plan.unknown:
                                problem(Problem.UNKNOWN_FIELD, service, key[:MAX_NAME])
                            if plan.extra_names:
                                fields = quote.fields.copy()
                                fields.update(zip(plan.extra_names, extras))  # noqa: B905
                                quote.fields = fields
                            changed = list(plan.changed)
                seq = seqs.get(symbol, 0) + 1
                seqs[symbol] = seq
                args[_SEQ] = seq
                args[_TS] = timestamp
                args[_RECV] = recv_ns
                args[_SNAPSHOT] = snapshot
                args[_CHANGED] = changed
                args[_FIELDS] = quote.fields  # never mutated once published: replaced on change
                events.append(TickEvent(*args))
            return events

        return ticks

    # --- books --------------------------------------------------------------------------------

    def _book_handler(self, service: str, venue: str) -> _Handler:
        seqs = self._level2_seq

        def books(message: DataMessage[Any], recv_ns: int) -> list[Event]:
            timestamp = message.timestamp
            events: list[Event] = []
            marks = self._marks(service)
            for item in message.content:
                typed = type(item) is BookItem  # validated by the typed decode: the fast path
                symbol_or_none = item.key if typed else self._symbol(service, item)
                if symbol_or_none is None or not self._is_held(
                    marks, service, symbol_or_none, recv_ns
                ):
                    continue
                symbol = symbol_or_none
                if typed:
                    book_time = item.book_time
                    bids = _typed_levels(item.bids)
                    bids.sort(key=_PRICE, reverse=True)
                    asks = _typed_levels(item.asks)
                    asks.sort(key=_PRICE)
                else:
                    book_time, bids, asks = self._book_sides(service, item)
                seq = seqs.get(symbol, 0) + 1
                seqs[symbol] = seq
                events.append(
                    Level2Event(
                        service=service,
                        symbol=symbol,
                        seq=seq,
                        schwab_ts=timestamp,
                        recv_ns=recv_ns,
                        venue=venue,
                        book_time=book_time,
                        bids=bids,
                        asks=asks,
                    )
                )
            return events

        return books

    def _book_sides(
        self, service: str, item: dict[str, Any]
    ) -> tuple[int | None, list[Level], list[Level]]:
        """Book time, bids and asks of an item that failed the typed decode, checked key by key
        so each problem is counted precisely."""
        book_time: int | None = None
        bids: list[Level] = []
        asks: list[Level] = []
        for key, value in item.items():
            if key == "1":
                book_time = _as_int(value)
                if book_time is None and value is not None:
                    self._problem(Problem.BAD_VALUE, service, "1")
            elif key == "2":
                bids = self._levels(service, value, True)
            elif key == "3":
                asks = self._levels(service, value, False)
            elif key != "key" and key != "0":
                self._unknown_field(service, key)
        return book_time, bids, asks

    def _levels(self, service: str, raw: Any, bids: bool) -> list[Level]:
        """One book side, best first; malformed levels and makers are dropped and counted."""
        if raw is None:
            return []
        if type(raw) is not list:
            self._problem(Problem.BAD_VALUE, service, "2" if bids else "3")
            return []
        levels: list[Level] = []
        for entry in raw:
            if type(entry) is dict:
                price = entry.get("0")
                size = entry.get("1")
                count = entry.get("2")
                if type(size) is not int:
                    size = _as_int(size)
                if type(count) is not int:
                    count = _as_int(count)
                if _is_number(price) and size is not None and count is not None:
                    if len(entry) > 4:
                        self._unknown_level_keys(service, entry)
                    makers = entry.get("3")
                    levels.append(
                        Level(
                            float(price),
                            size,
                            count,
                            [] if makers is None else self._makers(service, makers),
                        )
                    )
                    continue
            self._problem(Problem.BAD_LEVEL, service)
        levels.sort(key=_PRICE, reverse=bids)
        return levels

    def _unknown_level_keys(self, service: str, level: dict[str, Any]) -> None:
        for key in level:
            if key not in ("0", "1", "2", "3"):
                self._unknown_field(service, f"level.{key}")

    def _makers(self, service: str, raw: Any) -> list[Maker]:
        if type(raw) is not list:
            self._problem(Problem.BAD_MAKER, service)
            return []
        makers: list[Maker] = []
        for entry in raw:
            if type(entry) is dict:
                maker_id = entry.get("0")
                size = entry.get("1")
                time_ms = entry.get("2")
                if type(size) is not int:
                    size = _as_int(size)
                valid_time = time_ms is None or type(time_ms) is int
                if not valid_time:
                    time_ms = _as_int(time_ms)
                    valid_time = time_ms is not None
                if type(maker_id) is str and size is not None and valid_time:
                    makers.append(Maker(maker_id, size, time_ms))
                    continue
            self._problem(Problem.BAD_MAKER, service)
        return makers

    # --- bars ---------------------------------------------------------------------------------

    def _bar_handler(self, service: str) -> _Handler:
        slots = _bar_slots(service)
        seqs = self._bar_seq

        def bars(message: DataMessage[Any], recv_ns: int) -> list[Event]:
            timestamp = message.timestamp
            events: list[Event] = []
            marks = self._marks(service)
            for item in message.content:
                symbol = self._symbol(service, item)
                if symbol is None or not self._is_held(marks, service, symbol, recv_ns):
                    continue
                values: dict[str, Any] = {}
                for key, value in item.items():
                    slot = slots.get(key)
                    if slot is None:
                        self._unknown_field(service, key)
                        continue
                    attr, integral = slot
                    if attr is None or value is None:
                        continue
                    if integral:
                        value = _as_int(value)
                        if value is None:
                            self._problem(Problem.BAD_VALUE, service, key)
                            continue
                    elif not _is_number(value):
                        self._problem(Problem.BAD_VALUE, service, key)
                        continue
                    values[attr] = value
                seq = seqs.get(symbol, 0) + 1
                seqs[symbol] = seq
                events.append(
                    BarEvent(
                        service=service,
                        symbol=symbol,
                        seq=seq,
                        schwab_ts=timestamp,
                        recv_ns=recv_ns,
                        **values,
                    )
                )
            return events

        return bars

    # --- screeners ----------------------------------------------------------------------------

    def _screener_handler(self, service: str) -> _Handler:
        seqs = self._screener_seq

        def screeners(message: DataMessage[Any], recv_ns: int) -> list[Event]:
            timestamp = message.timestamp
            events: list[Event] = []
            marks = self._marks(service)
            for item in message.content:
                symbol = self._symbol(service, item)
                if symbol is None or not self._is_held(marks, service, symbol, recv_ns):
                    continue
                screener_ts: int | None = None
                sort_field: str | None = None
                frequency: int | None = None
                items: list[ScreenerItem] = []
                for key, value in item.items():
                    if key == "1":
                        screener_ts = self._int_field(service, key, value)
                    elif key == "2":
                        if type(value) is str:
                            sort_field = value
                        elif value is not None:
                            self._problem(Problem.BAD_VALUE, service, "2")
                    elif key == "3":
                        frequency = self._int_field(service, key, value)
                    elif key == "4":
                        items = self._screener_items(service, value)
                    elif key != "key" and key != "0":
                        self._unknown_field(service, key)
                seq = seqs.get(symbol, 0) + 1
                seqs[symbol] = seq
                events.append(
                    ScreenerEvent(
                        service=service,
                        symbol=symbol,
                        seq=seq,
                        schwab_ts=timestamp,
                        recv_ns=recv_ns,
                        screener_ts=screener_ts,
                        sort_field=sort_field,
                        frequency=frequency,
                        items=items,
                    )
                )
            return events

        return screeners

    def _int_field(self, service: str, key: str, value: Any) -> int | None:
        number = _as_int(value)
        if number is None and value is not None:
            self._problem(Problem.BAD_VALUE, service, key)
        return number

    def _screener_items(self, service: str, raw: Any) -> list[ScreenerItem]:
        if raw is None:
            return []
        if type(raw) is not list:
            self._problem(Problem.BAD_VALUE, service, "4")
            return []
        items: list[ScreenerItem] = []
        for entry in raw:
            if type(entry) is not dict or type(entry.get("symbol")) is not str:
                self._problem(Problem.BAD_SCREENER_ITEM, service)
                continue
            values: dict[str, Any] = {}
            for key, value in entry.items():
                name = SCREENER_ITEM_FIELDS.get(key)
                if name is None:
                    self._unknown_field(service, f"item.{key}")
                elif name == "symbol" or value is None:
                    continue
                elif name == "description":
                    if type(value) is str:
                        values[name] = value
                    else:
                        self._problem(Problem.BAD_VALUE, service, f"item.{key}")
                elif _is_number(value):
                    values[name] = value
                else:
                    self._problem(Problem.BAD_VALUE, service, f"item.{key}")
            items.append(ScreenerItem(symbol=entry["symbol"], **values))
        return items

    # --- account activity ---------------------------------------------------------------------

    def _account(self, message: DataMessage[Any], recv_ns: int) -> list[Event]:
        service = ACCT_ACTIVITY
        timestamp = message.timestamp
        events: list[Event] = []
        marks = self._marks(service)
        if marks:  # the item key is the correl id we chose: the held key is ours, not Schwab's
            for key in marks:
                marks[key] = recv_ns
        for item in message.content:
            symbol = self._symbol(service, item)
            if symbol is None:
                continue
            account: str | None = None
            message_type: str | None = None
            data: Any = None
            item_seq: int | None = None
            for key, value in item.items():
                if key == "1":
                    account = self._text(service, key, value)
                elif key == "2":
                    message_type = self._text(service, key, value)
                elif key == "3":
                    data = self._account_data(value)
                elif key == "seq":
                    item_seq = self._int_field(service, key, value)
                elif key != "key" and key != "0":
                    self._unknown_field(service, key)
            self._account_seq += 1
            events.append(
                AccountEvent(
                    service=service,
                    symbol=symbol,
                    seq=self._account_seq,
                    schwab_ts=timestamp,
                    recv_ns=recv_ns,
                    account=account,
                    message_type=message_type,
                    data=data,
                    item_seq=item_seq,
                )
            )
        return events

    def _account_data(self, value: Any) -> Any:
        """Field 3: the order event, which Schwab sends as JSON text (decoded here; None when
        empty). Text that is not JSON, or nested too deep to decode or to publish as JSON,
        stays the text it came as; a value too deep to publish that did not come as text is
        left out. Nothing in it can raise."""
        if type(value) is not str:
            if value.__class__ in CONTAINERS and too_deep(value):
                self._problem(Problem.TOO_DEEP, ACCT_ACTIVITY, "3")
                return None
            return value
        text = value.strip()
        if not text:
            return None
        if text[0] not in "{[":
            return value
        try:
            decoded = msgspec.json.decode(text)
        except RecursionError:
            self._problem(Problem.TOO_DEEP, ACCT_ACTIVITY, "3")
            return value
        except (ValueError, OverflowError, TypeError, MemoryError):  # DecodeError included
            return value
        if decoded.__class__ in CONTAINERS and too_deep(decoded):
            self._problem(Problem.TOO_DEEP, ACCT_ACTIVITY, "3")
            return value
        return decoded

    def _text(self, service: str, key: str, value: Any) -> str | None:
        """A string field; account numbers may arrive as numbers, so ints are accepted too."""
        if type(value) is str:
            return value
        if type(value) is int:
            return str(value)
        if value is not None:
            self._problem(Problem.BAD_VALUE, service, key)
        return None


def _typed_levels(levels: list[BookLevel] | None) -> list[Level]:
    """Contract levels from typed wire levels (already validated), in wire order."""
    if not levels:
        return []
    return [
        Level(
            level.price,
            level.size,
            level.count,
            [Maker(m.id, m.size, m.time_ms) for m in level.makers] if level.makers else [],
        )
        for level in levels
    ]
