"""An asyncio Socket.IO client that records what the gateway sends it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import aiohttp
import socketio

TERMINAL_STATES = {"ready", "failed", "ended"}


class Rejected(Exception):
    """The gateway refused the connection; data is its {"message", "code"}."""

    def __init__(self, error: Any) -> None:
        super().__init__(error)
        if isinstance(error, dict) and isinstance(error.get("data"), dict):
            self.data: dict[str, Any] = error["data"]
        else:
            self.data = {"message": str(error)}


class GatewayClient:
    """Connects with an auth object, records `session` and `notification` events."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self._changed = asyncio.Event()
        self._rejection: Any = None
        # Owned here so it is closed even after a rejected connection, which
        # python-socketio leaves open.
        self._http = aiohttp.ClientSession()
        self.sio = socketio.AsyncClient(reconnection=False, http_session=self._http)
        self.sio.on("session", self._on_session)
        self.sio.on("notification", self._on_notification)
        self.sio.on("connect_error", self._on_connect_error)
        self.sio.on("disconnect", self._on_disconnect)

    async def connect(self, auth: dict[str, Any] | None = None) -> GatewayClient:
        try:
            await self.sio.connect(
                self.url,
                auth=auth if auth is not None else {"dataset": "flights"},
                transports=["websocket"],
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError as exc:
            await self._http.close()
            raise Rejected(self._rejection or str(exc)) from exc
        return self

    async def _on_session(self, data: dict[str, Any]) -> None:
        self.events.append(data)
        self._changed.set()

    async def _on_notification(self, data: dict[str, Any]) -> None:
        self.notifications.append(data)
        self._changed.set()

    async def _on_connect_error(self, data: Any) -> None:
        self._rejection = data

    async def _on_disconnect(self, *reason: Any) -> None:
        self.disconnected.set()
        self._changed.set()

    @property
    def states(self) -> list[str]:
        return [event["state"] for event in self.events]

    @property
    def session_id(self) -> str:
        return str(self.events[0]["session_id"])

    @property
    def resume_token(self) -> str:
        return str(self.events[0]["resume_token"])

    async def wait_for(
        self, predicate: Callable[[GatewayClient], Any], timeout_s: float = 20
    ) -> Any:
        """Wait until predicate(self) is truthy and return its value."""
        async with asyncio.timeout(timeout_s):
            while True:
                value = predicate(self)
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()

    async def wait_state(self, timeout_s: float = 20) -> dict[str, Any]:
        """Wait for ready, failed or ended and return that event."""

        def terminal(client: GatewayClient) -> dict[str, Any] | None:
            found = [e for e in client.events if e["state"] in TERMINAL_STATES]
            return found[0] if found else None

        result: dict[str, Any] = await self.wait_for(terminal, timeout_s)
        return result

    async def wait_state_named(
        self, state: str, timeout_s: float = 20
    ) -> dict[str, Any]:
        def named(client: GatewayClient) -> dict[str, Any] | None:
            return next((e for e in client.events if e["state"] == state), None)

        result: dict[str, Any] = await self.wait_for(named, timeout_s)
        return result

    async def wait_ready(self, timeout_s: float = 20) -> dict[str, Any]:
        event = await self.wait_state(timeout_s)
        assert event["state"] == "ready", f"session did not become ready: {event}"
        return event

    async def rpc(self, payload: Any, timeout_s: float = 20) -> Any:
        return await self.sio.call("rpc", payload, timeout=timeout_s)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        await self._http.close()


def request(request_id: Any, method: str, params: Any = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    return message


def run(scenario: Coroutine[Any, Any, Any], timeout_s: float = 60) -> Any:
    """Run one async test scenario with an overall time limit."""

    async def limited() -> Any:
        async with asyncio.timeout(timeout_s):
            return await scenario

    return asyncio.run(limited())
