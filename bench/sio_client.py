"""An asyncio Socket.IO client for the benchmarks, as a browser would connect.

The same client library (python-socketio's AsyncClient over aiohttp
websockets) talks to the gateway and to the bare echo server, so its own
cost is in both the measured path and the floor.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import socketio

CONNECT_TIMEOUT_S = 60.0
FINAL_STATES = {"ready", "failed", "ended"}


class SessionClient:
    """One Socket.IO connection; records `session` events as they arrive."""

    def __init__(self) -> None:
        self.sio = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self.connect_started = 0.0
        self._changed = asyncio.Event()
        self.sio.on("session", self._on_session)

    async def _on_session(self, data: dict[str, Any]) -> None:
        self.events.append({**data, "received_at": time.perf_counter()})
        self._changed.set()

    async def connect(self, url: str, auth: dict[str, Any] | None = None) -> None:
        self.connect_started = time.perf_counter()
        await self.sio.connect(
            url,
            auth=auth,
            transports=["websocket"],
            wait_timeout=CONNECT_TIMEOUT_S,
        )

    async def wait_ready(self, timeout_s: float) -> dict[str, Any]:
        """Wait for the session to reach ready; raise when it fails or ends."""
        async with asyncio.timeout(timeout_s):
            while True:
                final = [e for e in self.events if e.get("state") in FINAL_STATES]
                if final:
                    break
                self._changed.clear()
                await self._changed.wait()
        event = final[0]
        if event["state"] != "ready":
            raise RuntimeError(f"session did not become ready: {event}")
        return event

    def event_time(self, state: str) -> float | None:
        """Return seconds from connect to the first event of state, if any."""
        for event in self.events:
            if event.get("state") == state:
                return float(event["received_at"]) - self.connect_started
        return None

    @property
    def session_id(self) -> str | None:
        for event in self.events:
            if "session_id" in event:
                return str(event["session_id"])
        return None

    async def call(self, request: Any, timeout_s: float = 60.0) -> Any:
        return await self.sio.call("rpc", request, timeout=timeout_s)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()


def filter_request(request_id: int, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "filter", "params": params}
