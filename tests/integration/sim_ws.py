"""A raw streamer client for simulator tests: the `websockets` library and json, no project code.

It speaks Schwab's envelopes by hand so the tests check the simulator against the protocol, not
against this project's own client.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from websockets.sync.client import ClientConnection, connect

from schwab_stream.sim.server import SimThread
from schwab_stream.sim.tokens import SIM_CORREL_ID, SIM_CUSTOMER_ID

Frame = dict[str, Any]


class RawClient:
    """One websocket to the simulator with helpers to send requests and wait for frames."""

    def __init__(self, sim: SimThread) -> None:
        self.sim = sim
        self._stack = contextlib.ExitStack()
        self.ws: ClientConnection = self._stack.enter_context(
            connect(sim.state.streamer_url, open_timeout=5)
        )
        self.next_id = 0
        self.backlog: list[Frame] = []

    def close(self) -> None:
        self._stack.close()

    def send_request(self, service: str, command: str, **parameters: str) -> str:
        rid = str(self.next_id)
        self.next_id += 1
        self.ws.send(
            json.dumps(
                {
                    "requests": [
                        {
                            "service": service,
                            "requestid": rid,
                            "command": command,
                            "SchwabClientCustomerId": SIM_CUSTOMER_ID,
                            "SchwabClientCorrelId": SIM_CORREL_ID,
                            "parameters": parameters,
                        }
                    ]
                }
            )
        )
        return rid

    def login(self, token: str | None = None) -> Frame:
        """LOGIN (with a fresh valid token unless given one); returns the response item."""
        if token is None:
            token, _ = self.sim.state.tokens.login()
        rid = self.send_request(
            "ADMIN",
            "LOGIN",
            Authorization=token,
            SchwabClientChannel="N9",
            SchwabClientFunctionId="APIAPP",
        )
        return self.response(rid)

    def command(self, service: str, command: str, **parameters: str) -> Frame:
        """Send one command and return its response item (other frames stay in the backlog)."""
        return self.response(self.send_request(service, command, **parameters))

    def recv(self, timeout: float = 3.0) -> Frame:
        if self.backlog:
            return self.backlog.pop(0)
        frame: Frame = json.loads(self.ws.recv(timeout=timeout))
        return frame

    def response(self, rid: str, timeout: float = 3.0) -> Frame:
        def match(frame: Frame) -> bool:
            return any(r.get("requestid") == rid for r in frame.get("response", []))

        frame = self.wait_for(match, timeout, keep_others=True)
        item: Frame = next(r for r in frame["response"] if r["requestid"] == rid)
        return item

    def wait_for(
        self, match: Callable[[Frame], bool], timeout: float = 3.0, keep_others: bool = False
    ) -> Frame:
        """The first frame that matches; others are dropped (or kept for later recv())."""
        for i, frame in enumerate(self.backlog):
            if match(frame):
                return self.backlog.pop(i)
        deadline = time.monotonic() + timeout
        skipped: list[Frame] = []
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching frame")
                frame = json.loads(self.ws.recv(timeout=left))
                if match(frame):
                    return frame
                skipped.append(frame)
        finally:
            if keep_others:
                self.backlog.extend(skipped)

    def data(self, service: str, timeout: float = 3.0) -> Frame:
        """The next data block of a service."""

        def match(frame: Frame) -> bool:
            return any(d.get("service") == service for d in frame.get("data", []))

        frame = self.wait_for(match, timeout)
        block: Frame = next(d for d in frame["data"] if d["service"] == service)
        return block


def post(sim: SimThread, path: str) -> Any:
    """POST to the simulator's control API; returns the decoded JSON answer."""
    url = sim.base_url + path
    request = urllib.request.Request(url, method="POST", data=b"")  # noqa: S310 - loopback
    with urllib.request.urlopen(request, timeout=5) as answer:  # noqa: S310
        return json.loads(answer.read())


def is_heartbeat(frame: Frame) -> bool:
    return "heartbeat" in frame.get("notify", [{}])[0]
