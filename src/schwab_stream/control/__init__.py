"""Live subscriptions: change what the running bridge streams, through Redis."""

from schwab_stream.control.api import InvalidRequest, Result, ResultKind, SubscriptionControl

__all__ = ["InvalidRequest", "Result", "ResultKind", "SubscriptionControl"]
