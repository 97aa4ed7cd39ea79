"""ACCT_ACTIVITY: an order's life as account-activity messages (created .. filled).

Played on demand (`POST /sim/account/order`); ids draw from the market's own order RNG, prices
from the instrument's current quote, so a fixed seed and clock give the same messages.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from schwab_stream.sim.clock import ET
from schwab_stream.sim.registry import Market
from schwab_stream.sim.tokens import SIM_ACCOUNT

ORDER_LIFE = (
    "OrderCreated",
    "OrderAccepted",
    "ExecutionRequested",
    "ExecutionRequestCreated",
    "ExecutionRequestCompleted",
    "OrderFillCompleted",
)


def order_life(
    market: Market, symbol: str, quantity: int, side: str, now_ms: int
) -> list[tuple[str, str]]:
    """An order's account-activity messages: (message type, message data as a JSON string).

    The message data mirrors the structure seen in public captures (SchwabOrderID,
    AccountNumber, BaseEvent.EventType and one event-specific object; prices as
    {"lo": ..., "signScale": 12}); the full real payload is much larger and UNVERIFIED.
    """
    inst = market.instrument(symbol)
    price = 0.0 if inst is None else inst.ask if side == "BUY" else inst.bid
    order_id = str(1_000_000_000_000 + market.order_rng.randint(0, 999_999_999_999))
    exec_id = str(market.order_rng.randint(10**9, 10**10 - 1))

    def money(value: float) -> dict[str, Any]:
        return {"lo": str(round(value * 1_000_000)), "signScale": 12}

    stamp = datetime.fromtimestamp(now_ms / 1000, ET).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    leg = {
        "LegID": "1",
        "Security": {
            "Symbol": symbol,
            "SecurityType": "Common_Stock"
            if inst is None or inst.kind == "equity"
            else inst.kind.title(),
        },
        "BuySellCode": "Buy" if side == "BUY" else "Sell",
        "Quantity": {"lo": str(quantity)},
    }
    payloads: dict[str, tuple[str, dict[str, Any]]] = {
        "OrderCreated": (
            "OrderCreatedEventEquityOrder",
            {
                "EventType": "OrderCreated",
                "Order": {
                    "SchwabOrderID": order_id,
                    "AccountNumber": SIM_ACCOUNT,
                    "Order": {
                        "LifecycleCreatedTimestamp": {"DateTimeString": stamp},
                        "LifecycleSchwabOrderID": order_id,
                        "AssetOrderEquityOrderLeg": {
                            "OrderInstruction": {
                                "ExecutionStrategy": {
                                    "Type": "ES_Limit",
                                    "LimitExecutionStrategy": {"LimitPrice": money(price)},
                                },
                            },
                            "TimeInForce": "TIF_Day",
                            "OrderLegs": [leg],
                        },
                    },
                },
            },
        ),
        "OrderAccepted": (
            "OrderAcceptedEvent",
            {
                "EventType": "OrderAccepted",
                "CreatedTimeStamp": {"DateTimeString": stamp},
                "Status": "Open",
            },
        ),
        "ExecutionRequested": (
            "ExecutionRequestedEventRoutedInfo",
            {
                "EventType": "ExecutionRequested",
                "RouteName": "SIMX",
                "RouteRequestedQuantity": {"lo": str(quantity)},
                "RouteRequestedPrice": money(price),
            },
        ),
        "ExecutionRequestCreated": (
            "ExecutionRequestCreatedEvent",
            {
                "EventType": "ExecutionRequestCreated",
                "ExecutionRequestID": exec_id,
            },
        ),
        "ExecutionRequestCompleted": (
            "ExecutionRequestCompletedEvent",
            {
                "EventType": "ExecutionRequestCompleted",
                "ExecutionRequestID": exec_id,
            },
        ),
        "OrderFillCompleted": (
            "OrderFillCompletedEventOrderLegQuantityInfo",
            {
                "EventType": "OrderFillCompleted",
                "LegId": "1",
                "ExecutionInfo": {
                    "ExecutionSequenceNumber": 1,
                    "ExecutionQuantity": {"lo": str(quantity)},
                    "ExecutionPrice": money(price),
                    "ExecutionTimeStamp": {"DateTimeString": stamp},
                    "ExecutionID": exec_id,
                },
            },
        ),
    }
    messages = []
    for kind in ORDER_LIFE:
        name, body = payloads[kind]
        data = {
            "SchwabOrderID": order_id,
            "AccountNumber": SIM_ACCOUNT,
            "BaseEvent": {"EventType": kind, name: body},
        }
        messages.append((kind, json.dumps(data, separators=(",", ":"))))
    return messages
