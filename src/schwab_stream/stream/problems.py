"""What can be wrong in a data message, as data: the `Problem` kinds (the `frames_bad_total`
reasons) and the bounds that keep what the server sends from growing our counters, log lines
and events without limit.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final

#: Problem details quote server-sent names; keep them bounded
MAX_NAME: Final = 64
#: Distinct problem details kept (and logged once each); more share `KIND:(more)`
MAX_DETAILS: Final = 256
#: The deepest JSON value an event may carry as received (a level-one field kept in `fields`, an
#: account message). Real ones are a few levels deep; the bound keeps every event far from the
#: recursion limit of the encoder that writes it to Redis.
MAX_VALUE_DEPTH: Final = 64
CONTAINERS: Final[frozenset[type]] = frozenset({dict, list})


def too_deep(value: Any, limit: int = MAX_VALUE_DEPTH) -> bool:
    """Whether `value` (decoded JSON) nests containers deeper than `limit`; iterative, so any
    depth is safe to ask about. A scalar has depth 0, `[]` and `{}` depth 1."""
    if value.__class__ not in CONTAINERS:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if node.__class__ is dict else node
        stack.extend((child, depth + 1) for child in children if child.__class__ in CONTAINERS)
    return False


class Problem(StrEnum):
    """What was wrong in a data message: a closed set, the `frames_bad_total` reasons."""

    #: A data message of a service we have no table for: all its items are dropped
    UNKNOWN_SERVICE = "unknown_service"
    #: An item that is not a JSON object: dropped
    ITEM_NOT_OBJECT = "item_not_object"
    #: An item without a non-empty string `key` (the symbol): dropped
    ITEM_NO_KEY = "item_no_key"
    #: A known field with a value of the wrong type: left out of the event
    BAD_VALUE = "bad_value"
    #: A field we have no name for: kept (`fields["f<NUM>"]`, or a level or item's extra key)
    UNKNOWN_FIELD = "unknown_field"
    #: A malformed book level: dropped from its side
    BAD_LEVEL = "bad_level"
    #: A malformed market maker of a book level: dropped from its level
    BAD_MAKER = "bad_maker"
    #: A malformed screener entry: dropped from the screener's items
    BAD_SCREENER_ITEM = "bad_screener_item"
    #: A value nested deeper than `MAX_VALUE_DEPTH` (a level-one field is left out of its event;
    #: an account message that is JSON text stays that text), so no event is too deep to encode
    TOO_DEEP = "too_deep"
    #: Data for a service or key we do not hold (never subscribed, or already unsubscribed):
    #: dropped, so a consumer only ever sees what someone asked for
    NOT_SUBSCRIBED = "not_subscribed"
