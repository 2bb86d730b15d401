"""A small synchronous Socket.IO client for the system tests."""

from __future__ import annotations

import threading
import time
from typing import Any

import socketio


class SessionClient:
    """Connects to the gateway, records `session` events and sends `rpc` requests."""

    def __init__(self, gateway_url: str, auth: dict[str, Any] | None = None):
        self.events: list[dict[str, Any]] = []
        self.notifications: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("session", self._on_session)
        self.sio.on("notification", self._on_notification)
        self.sio.connect(
            gateway_url,
            auth=auth if auth is not None else {"dataset": "flights"},
            transports=["websocket"],
            wait_timeout=10,
        )

    def _on_session(self, data: dict[str, Any]) -> None:
        with self._changed:
            self.events.append({**data, "received_at": time.monotonic()})
            self._changed.notify_all()

    def _on_notification(self, data: dict[str, Any]) -> None:
        self.notifications.append(data)

    @property
    def session_id(self) -> str:
        return str(self.wait_for_event(lambda e: "session_id" in e, 10)["session_id"])

    def states(self) -> list[str]:
        return [str(event.get("state")) for event in self.events]

    def wait_for_event(self, predicate: Any, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                for event in self.events:
                    if predicate(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no matching session event within {timeout_s} s; "
                        f"got {self.events}"
                    )
                self._changed.wait(remaining)

    def wait_ready(self, timeout_s: float = 60) -> dict[str, Any]:
        event = self.wait_for_event(
            lambda e: e.get("state") in {"ready", "failed", "ended"}, timeout_s
        )
        assert event["state"] == "ready", f"session did not become ready: {event}"
        return event

    def rpc(self, request: Any, timeout_s: float = 60) -> Any:
        return self.sio.call("rpc", request, timeout=timeout_s)

    def close(self) -> None:
        if self.sio.connected:
            self.sio.disconnect()
