"""`schwab-stream subscribe`, `unsubscribe` and `subscriptions`: change and read what the running
bridge streams, through its Redis (`control.SubscriptionControl` on the command line).

Exit codes (docs/subscriptions.md): 0 acknowledged by Schwab; 1 Redis unreachable or another
failure; 2 a usage error (unknown service, a key in the wrong format); 5 Schwab refused some keys
(named); 6 no bridge is running (the change is stored and applies when one starts); 7 the bridge
did not answer in time (stored; applies when it reconnects).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click
import msgspec

from schwab_stream.cli.common import redis_options, redis_target
from schwab_stream.cli.formatting import printable
from schwab_stream.errors import ExitCode
from schwab_stream.redact import safe_url

T = TypeVar("T")

_EXIT = {
    "applied": ExitCode.OK,
    "refused": ExitCode.REFUSED,
    "invalid": ExitCode.BAD_SETTINGS,
    "no_bridge": ExitCode.NO_BRIDGE,
    "no_answer": ExitCode.NO_ANSWER,
}


def _run(redis_url: str, what: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run one exchange; Redis unreachable is one line naming the URL (password masked)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    try:
        return asyncio.run(what())
    except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
        said = f"cannot reach Redis at {safe_url(redis_url)}: {type(exc).__name__}: {exc}"
    except RedisError as exc:  # NOPERM from an ACL, a read-only replica, ...
        said = f"Redis at {safe_url(redis_url)} refused: {type(exc).__name__}: {exc}"
    click.echo(f"schwab-stream: {said}", err=True)
    raise click.exceptions.Exit(ExitCode.FAILED)


def _parse(pairs: tuple[str, ...]) -> dict[str, list[str]]:
    from schwab_stream.config import parse_subscribe_option
    from schwab_stream.errors import ConfigError

    if not pairs:
        raise click.UsageError("give at least one SERVICE=KEY1,KEY2")
    try:
        return parse_subscribe_option(pairs)
    except ConfigError as exc:
        raise click.UsageError(str(exc).replace("--subscribe ", "")) from None


_common: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option(
        "--holder",
        default="cli",
        show_default=True,
        help="Who holds the keys: a key leaves Schwab only when its last holder lets go.",
    ),
    click.option(
        "--timeout",
        type=click.FloatRange(0.1, 600),
        default=10.0,
        show_default=True,
        help="Seconds to wait for Schwab's answer.",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print the bridge's answer as JSON."),
    redis_options("The bridge's Redis"),
]


def _with_common(func: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_common):
        func = option(func)
    return func


def _change(
    op: str,
    pairs: tuple[str, ...],
    holder: str,
    ttl: float | None,
    timeout: float,
    as_json: bool,
    redis_url: str | None,
    prefix: str | None,
) -> None:
    from schwab_stream.control import InvalidRequest, Result, SubscriptionControl

    subs = _parse(pairs)
    url, key_prefix = redis_target(redis_url, prefix)

    async def exchange() -> Result:
        async with SubscriptionControl(url, key_prefix, holder=holder) as control:
            if op == "subscribe":
                return await control.subscribe(subs, ttl=ttl, timeout=timeout)
            return await control.unsubscribe(subs, timeout=timeout)

    try:
        result = _run(url, exchange)
    except InvalidRequest as exc:
        raise click.UsageError(str(exc)) from None
    answer = result.answer
    if as_json:
        payload: dict[str, Any] = {"result": result.kind.value, "detail": result.detail}
        if result.not_held:
            payload["not_held"] = result.not_held
        if answer is not None:
            from schwab_stream.control.holds import encode

            payload["answer"] = json.loads(encode(answer))
        click.echo(json.dumps(payload))
    else:
        stream = sys.stdout if result.kind.value == "applied" else sys.stderr
        click.echo(f"schwab-stream {op}: {result.detail}", file=stream)
        for refused in answer.refused if answer is not None else []:
            click.echo(
                f"  refused {refused.service}={refused.key}: code {refused.code} "
                f"({refused.message})",
                err=True,
            )
        for kept in answer.kept if answer is not None else []:
            click.echo(f"  kept {kept.service}={kept.key}: still held by {', '.join(kept.holders)}")
    raise click.exceptions.Exit(_EXIT[result.kind.value])


@click.command()
@click.argument("pairs", nargs=-1, metavar="SERVICE=KEYS...")
@click.option(
    "--ttl",
    type=click.FloatRange(0.1, 86_400),
    metavar="SECONDS",
    help="Hold the keys as a lease: released unless renewed (subscribe again) within SECONDS.",
)
@_with_common
def subscribe(
    pairs: tuple[str, ...],
    ttl: float | None,
    holder: str,
    timeout: float,
    as_json: bool,
    redis_url: str | None,
    prefix: str | None,
) -> None:
    """Add keys to the running bridge, without a restart or a reconnect.

    \b
    Examples:
      schwab-stream subscribe LEVELONE_EQUITIES=NVDA,AMD CHART_EQUITY=NVDA
      schwab-stream subscribe --holder scanner --ttl 60 LEVELONE_EQUITIES=PLTR

    Exits 0 once Schwab acknowledged every key; 5 when it refused some (named); 6 when no bridge
    runs (the change is stored and applies when one starts); 7 when the bridge did not answer in
    time; 2 for an unknown service or a key in the wrong format.
    """
    _change("subscribe", pairs, holder, ttl, timeout, as_json, redis_url, prefix)


@click.command()
@click.argument("pairs", nargs=-1, metavar="SERVICE=KEYS...")
@_with_common
def unsubscribe(
    pairs: tuple[str, ...],
    holder: str,
    timeout: float,
    as_json: bool,
    redis_url: str | None,
    prefix: str | None,
) -> None:
    """Let go of keys: each leaves Schwab when no other holder (settings, another program)
    still holds it; keys kept for others are named. Exit codes as for `subscribe`."""
    _change("unsubscribe", pairs, holder, None, timeout, as_json, redis_url, prefix)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the view as JSON.")
@click.option(
    "--clear",
    is_flag=True,
    help="Delete the stored holds (with --holder: only that holder's) instead of listing.",
)
@click.option("--holder", help="With --clear: only this holder's holds.")
@redis_options("The bridge's Redis")
def subscriptions(
    as_json: bool, clear: bool, holder: str | None, redis_url: str | None, prefix: str | None
) -> None:
    """What is wanted, by whom, what Schwab acknowledged, and when each key last had data.

    Exits 6 when no bridge is running (the stored holds are listed anyway)."""
    from schwab_stream.control import SubscriptionControl

    url, key_prefix = redis_target(redis_url, prefix)

    async def read() -> tuple[Any, list[tuple[str, str, str, str]], int]:
        async with SubscriptionControl(url, key_prefix) as control:
            if clear:
                return None, [], await control.clear(holder)
            try:
                view: Any = await control.view()
            except (msgspec.DecodeError, RecursionError) as exc:
                view = exc  # said below, in one line
            return view, await control.stored(), 0

    view, stored, cleared = _run(url, read)
    if clear:
        click.echo(f"schwab-stream subscriptions: {cleared} stored holds deleted")
        return
    if view is not None and not _is_view(view):
        why = str(view) if isinstance(view, Exception) else "its fields are not a bridge's"
        click.echo(
            f"schwab-stream: the bridge's view under the prefix {key_prefix!r} is not one a "
            f"bridge writes ({why}): is something else writing there?",
            err=True,
        )
        raise click.exceptions.Exit(ExitCode.FAILED)
    if not as_json and (view is not None or stored):
        click.echo(f"{'SERVICE':<26} {'KEY':<24} {'STATE':<9} {'LAST DATA':<10} HOLDERS")
    if as_json:
        click.echo(json.dumps({"bridge": view, "stored": [list(s) for s in stored]}))
    elif view is None:
        click.echo(
            f"no bridge is running on this Redis under the prefix {key_prefix!r}; stored holds:",
            err=True,
        )
        for service, key, who, kind in stored:
            click.echo(f"{service:<26} {key:<24} {'-':<9} {'-':<10} {who} ({kind})")
    else:
        _print_view(view)
    if view is None:
        raise click.exceptions.Exit(ExitCode.NO_BRIDGE)


def _is_view(view: Any) -> bool:
    """Whether `view` has the shape `_print_view` reads (what `ControlBridge.view` writes)."""
    if not isinstance(view, dict) or not isinstance(view.get("keys"), list):
        return False
    for entry in view["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("holders"), list):
            return False
        if not all(isinstance(entry.get(name), str) for name in ("service", "key", "state")):
            return False
        if not isinstance(entry.get("last_data_ns") or 0, int):
            return False
        refused = entry.get("refused")
        if refused and not (isinstance(refused, dict) and {"code", "message"} <= refused.keys()):
            return False
        for hold in entry["holders"]:
            if not (isinstance(hold, dict) and isinstance(hold.get("holder"), str)):
                return False
            if "kind" not in hold:
                return False
    return True


def _print_view(view: dict[str, Any]) -> None:
    now_ns = time.time_ns()
    for entry in view["keys"]:
        last = entry.get("last_data_ns")
        age = "never" if not last else f"{max(0.0, (now_ns - last) / 1e9):.1f}s ago"
        holders = ", ".join(
            h["holder"] if h["kind"] == "pinned" else f"{h['holder']} ({h['kind']})"
            for h in entry["holders"]
        )
        state = entry["state"]
        refused = entry.get("refused")
        if refused:
            state = f"{state} (code {refused['code']}: {refused['message']})"
        line = f"{entry['service']:<26} {entry['key']:<24} {state:<9} {age:<10} {holders}"
        click.echo(printable(line))
