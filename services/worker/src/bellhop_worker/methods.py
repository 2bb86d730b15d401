"""The JSON-RPC methods a ready worker provides, bound to its engine and status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from bellhop_worker.dispatch import Method, Params
from bellhop_worker.status import WorkerStatus


class QueryEngine(Protocol):
    """The part of the engine that the methods call."""

    def describe(self) -> dict[str, Any]: ...

    def filter(self, params: dict[str, Any]) -> dict[str, Any]: ...

    def compute(self, params: dict[str, Any]) -> dict[str, Any]: ...


def build_methods(
    engine: QueryEngine,
    status: WorkerStatus,
    request_terminate: Callable[[], None],
) -> dict[str, Method]:
    """Return the method table; `terminate` calls request_terminate and returns."""

    def describe(params: Params) -> dict[str, Any]:
        return engine.describe()

    def ping(params: Params) -> dict[str, Any]:
        return {
            "pong": True,
            "worker_id": status.worker_id,
            "session_id": status.session_id,
            "uptime_s": round(status.uptime_s, 3),
            "requests": status.requests,
        }

    def terminate(params: Params) -> dict[str, Any]:
        # The runtime exits after the batch, once this response is published.
        request_terminate()
        return {"terminating": True}

    return {
        "describe": Method(describe, takes_params=False),
        "filter": Method(engine.filter),
        "compute": Method(engine.compute),
        "ping": Method(ping, takes_params=False),
        "terminate": Method(terminate, takes_params=False),
    }
