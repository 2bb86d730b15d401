"""The worker's own view of itself: identity, state, progress and counters.

The main thread updates it and the heartbeat thread reads it, so every access
takes the lock.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any

from bellhop_shared.states import WorkerState


class WorkerStatus:
    """State and counters that the heartbeat key and `ping` report."""

    def __init__(self, worker_id: str, session_id: str, dataset: str) -> None:
        self.worker_id = worker_id
        self.session_id = session_id
        self.dataset = dataset
        self.started_at = time.time()
        self._started_monotonic = time.monotonic()
        self._lock = threading.Lock()
        self._state = WorkerState.STARTING
        self._progress = 0.0
        self._message = ""
        self._requests = 0

    @property
    def state(self) -> WorkerState:
        with self._lock:
            return self._state

    @property
    def progress(self) -> float:
        with self._lock:
            return self._progress

    @property
    def message(self) -> str:
        with self._lock:
            return self._message

    @property
    def requests(self) -> int:
        with self._lock:
            return self._requests

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._started_monotonic

    def set_state(self, state: WorkerState, progress: float, message: str) -> None:
        with self._lock:
            self._state = state
            self._progress = progress
            self._message = message

    def set_progress(self, progress: float) -> None:
        with self._lock:
            self._progress = progress

    def count_request(self) -> None:
        with self._lock:
            self._requests += 1

    def state_params(self) -> dict[str, Any]:
        """Return the params of a `worker.state` notification."""
        with self._lock:
            return {
                "state": self._state.value,
                "progress": self._progress,
                "message": self._message,
                "worker_id": self.worker_id,
            }

    def heartbeat(self) -> dict[str, Any]:
        """Return the heartbeat key's JSON document; times are unix seconds."""
        with self._lock:
            return {
                "worker_id": self.worker_id,
                "session_id": self.session_id,
                "dataset": self.dataset,
                "state": self._state.value,
                "progress": self._progress,
                "message": self._message,
                "pid": os.getpid(),
                "hostname": socket.gethostname(),
                "started_at": self.started_at,
                "updated_at": time.time(),
                "requests": self._requests,
            }
