"""Refresh-token expiry alerts: the channels a person notices from afar, and the user's hook.

When the refresh token's end comes near (the thresholds are `expiry.THRESHOLDS`: 48 h, 24 h, 1 h),
the auth client logs a warning and calls the pipeline's `ExpiryNotifier`, which publishes a
`token_expiring` status event and runs the optional `SCHWAB_EXPIRY_HOOK` so the person hears about
it wherever they are. The hook runs in the background with a timeout: a slow or broken hook is
logged, never a reason to stop streaming.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from schwab_stream.auth.token_store import TokenRecord
    from schwab_stream.sink import EventSink

log = logging.getLogger(__name__)

#: How long the hook may run before it is killed.
HOOK_TIMEOUT = 30.0
#: Environment variables the hook must not inherit: the app secret may be exported by the user.
_WITHHELD = frozenset({"SCHWAB_APP_SECRET"})
#: The most hook output kept for the log line (its tail), in characters.
_OUTPUT_TAIL = 500


@dataclass(frozen=True)
class ExpiryAlert:
    """One announcement: what the status event and the hook's environment carry (no token)."""

    threshold: float
    seconds_left: float
    expires_at: float
    message: str

    @classmethod
    def from_record(
        cls, record: TokenRecord, threshold: float, message: str, now: float | None = None
    ) -> ExpiryAlert:
        return cls(
            threshold=threshold,
            seconds_left=record.refresh_seconds_left(time.time() if now is None else now),
            expires_at=record.refresh_expires_at,
            message=message,
        )

    @property
    def expires_at_iso(self) -> str:
        return datetime.fromtimestamp(self.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    @property
    def threshold_label(self) -> str:
        """`48h`, `24h`, `1h` (or `90m` for a threshold that is not whole hours)."""
        if self.threshold % 3600 == 0:
            return f"{int(self.threshold // 3600)}h"
        return f"{int(self.threshold // 60)}m"

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """`base` (the bridge's environment, minus the app secret) plus the alert's details."""
        env = {k: v for k, v in base.items() if k.upper() not in _WITHHELD}
        env.update(
            {
                "SCHWAB_STREAM_EXPIRES_AT": self.expires_at_iso,
                "SCHWAB_STREAM_SECONDS_LEFT": str(int(self.seconds_left)),
                "SCHWAB_STREAM_THRESHOLD": self.threshold_label,
                "SCHWAB_STREAM_MESSAGE": self.message,
            }
        )
        return env


async def run_hook(command: str, alert: ExpiryAlert, timeout: float = HOOK_TIMEOUT) -> int | None:
    """Run `command` through the shell with the alert in its environment; its exit code, or None
    when it ran past `timeout` and was killed (with everything it started)."""
    started = time.monotonic()
    proc = await asyncio.create_subprocess_shell(
        command,
        env=alert.environment(os.environ),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout kills its children too
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError) as exc:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(exc, asyncio.CancelledError):
            raise
        log.warning(
            "expiry hook ran longer than %.0f s and was killed",
            timeout,
            extra={"threshold": alert.threshold_label},
        )
        return None
    tail = output.decode("utf-8", "replace").strip()[-_OUTPUT_TAIL:]
    code = proc.returncode
    assert code is not None
    extra = {
        "threshold": alert.threshold_label,
        "exit_code": code,
        "seconds": round(time.monotonic() - started, 3),
        "output": tail,
    }
    if code == 0:
        log.info("expiry hook ran", extra=extra)
    else:
        log.warning("expiry hook failed with exit code %d", code, extra=extra)
    return code


class ExpiryNotifier:
    """The pipeline's `on_expiry_warning`: a status event at once, the hook in the background.

    The auth client decides when (once per threshold per login) and logs the warning; this adds the
    channels a person notices from afar. `sink` takes the status event (the publisher, or a list in
    tests); `clock` is the wall clock the time left is read on.
    """

    def __init__(
        self,
        hook: str,
        sink: EventSink,
        timeout: float = HOOK_TIMEOUT,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.hook = hook.strip()
        self.sink = sink
        self.timeout = timeout
        self.clock = clock
        self.alerts: list[ExpiryAlert] = []
        self._tasks: set[asyncio.Task[int | None]] = set()

    def __call__(self, record: TokenRecord, threshold: float, message: str) -> None:
        alert = ExpiryAlert.from_record(record, threshold, message, now=self.clock())
        self.alerts.append(alert)
        self.sink.status(
            "token_expiring",
            message,
            threshold=alert.threshold_label,
            seconds_left=int(alert.seconds_left),
            expires_at=alert.expires_at_iso,
        )
        if self.hook:
            task = asyncio.get_running_loop().create_task(
                self._run(alert), name=f"expiry-hook-{alert.threshold_label}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _run(self, alert: ExpiryAlert) -> int | None:
        try:
            return await run_hook(self.hook, alert, self.timeout)
        except OSError as exc:  # the shell itself could not start
            log.warning("expiry hook could not start: %s", exc)
            return None

    async def wait(self) -> None:
        """Wait for hooks still running (tests, and a clean shutdown that lets them finish)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self, grace: float = 2.0) -> None:
        """Give running hooks `grace` seconds, then kill them."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=grace)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
