"""Helpers for tests that run `bellhop-worker` as a real process."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from bellhop_shared.keys import Keys
from bellhop_shared.states import STATE_NOTIFICATION
from support import VENV_BIN, ServiceProcess, service_env, wait_until

KEYS = Keys()

# Short intervals keep the tests fast; the defaults are for production.
FAST_ENV = {
    "WORKER_HEARTBEAT_INTERVAL_S": "0.5",
    "WORKER_HEARTBEAT_TTL_S": "5",
    "WORKER_BLOCK_TIMEOUT_S": "0.5",
    "WORKER_IDLE_TIMEOUT_S": "120",
    "LOG_LEVEL": "DEBUG",
}

# Loading flights on a busy 2-core machine can take a while; ready must come
# well before this.
READY_TIMEOUT_S = 90.0


def start_worker(
    redis_url: str,
    log_dir: Path,
    session_id: str,
    dataset: str = "flights",
    name: str = "worker",
    results: Results | None = None,
    **env: str,
) -> ServiceProcess:
    """Start a worker; results, if given, then fails fast when the worker dies."""
    argv = [
        str(VENV_BIN / "bellhop-worker"),
        "--session",
        session_id,
        "--dataset",
        dataset,
    ]
    worker = ServiceProcess(
        name, argv, service_env(redis_url, **{**FAST_ENV, **env}), log_dir
    )
    if results is not None:
        results.watch(worker)
    return worker


def rpc(method: str, request_id: Any, **params: Any) -> str:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
    if params:
        message["params"] = params
    return json.dumps(message)


def push(client: redis.Redis, session_id: str, *items: str | bytes) -> None:
    """LPUSH items one by one, in order, as the gateway does."""
    for item in items:
        client.lpush(KEYS.queue(session_id), item)


def heartbeat(client: redis.Redis, session_id: str) -> dict[str, Any] | None:
    document = client.get(KEYS.worker(session_id))
    return None if document is None else json.loads(document)


def wait_exit(worker: ServiceProcess, timeout_s: float) -> int:
    """Return the worker's exit status, failing the test if it outlives timeout_s."""
    wait_until(lambda: worker.proc.poll() is not None, timeout_s)
    return int(worker.proc.returncode)


class Results:
    """A subscription to a session's results channel that keeps every message.

    Subscribe before starting the worker or pushing requests: pub/sub drops
    messages published while no client is subscribed.
    """

    def __init__(self, redis_url: str, session_id: str) -> None:
        self._client = redis.Redis.from_url(redis_url, decode_responses=True)
        self._pubsub = self._client.pubsub()
        self._pubsub.subscribe(KEYS.results(session_id))
        self.messages: list[Any] = []
        self._worker: ServiceProcess | None = None

    def watch(self, worker: ServiceProcess) -> None:
        """Make waits fail at once, with the log, when worker exits silently."""
        self._worker = worker

    def close(self) -> None:
        self._pubsub.close()
        self._client.close()

    def wait_for(self, predicate: Callable[[Any], bool], timeout_s: float) -> Any:
        """Return the first message so far or to come that matches predicate."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = self._find(predicate)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                pytest.fail(
                    f"no matching message on the results channel in {timeout_s} s; "
                    f"got {self.messages[-5:]!r}"
                )
            if self._has_exited():
                return self._find_after_exit(predicate)
            self._receive(0.1)

    def _find(self, predicate: Callable[[Any], bool]) -> Any:
        return next((m for m in self.messages if predicate(m)), None)

    def _find_after_exit(self, predicate: Callable[[Any], bool]) -> Any:
        # The worker published everything before it exited; read what is left.
        self.drain(0.5)
        found = self._find(predicate)
        if found is None:
            assert self._worker is not None
            pytest.fail(
                f"the worker exited with status {self._worker.proc.returncode} "
                f"before the expected message; its log ends:\n{self._log_tail()}"
            )
        return found

    def _has_exited(self) -> bool:
        return self._worker is not None and self._worker.proc.poll() is not None

    def _log_tail(self) -> str:
        assert self._worker is not None
        return "\n".join(self._worker.log_text().splitlines()[-30:])

    def wait_for_state(self, state: str, timeout_s: float = READY_TIMEOUT_S) -> Any:
        return self.wait_for(lambda m: state_of(m) == state, timeout_s)

    def wait_for_response(self, request_id: Any, timeout_s: float = 30.0) -> Any:
        return self.wait_for(
            lambda m: (
                isinstance(m, dict) and "method" not in m and m.get("id") == request_id
            ),
            timeout_s,
        )

    def responses(self) -> list[Any]:
        """Return every message that is not a notification, in arrival order."""
        return [m for m in self.messages if not is_notification(m)]

    def states(self) -> list[str]:
        return [state for m in self.messages if (state := state_of(m))]

    def drain(self, quiet_s: float = 0.3) -> None:
        """Receive until no message arrives for quiet_s."""
        while self._receive(quiet_s):
            pass

    def _receive(self, timeout_s: float) -> bool:
        """Read one pub/sub message; return False when none came in timeout_s."""
        message = self._pubsub.get_message(timeout=timeout_s)
        if message is None:
            return False
        if message["type"] == "message":
            self.messages.append(json.loads(message["data"]))
        return True


def is_notification(message: Any) -> bool:
    return isinstance(message, dict) and "method" in message


def state_of(message: Any) -> str | None:
    if is_notification(message) and message["method"] == STATE_NOTIFICATION:
        return str(message["params"]["state"])
    return None
