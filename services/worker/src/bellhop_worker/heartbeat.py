"""The heartbeat key, rewritten from a background thread.

The thread keeps the key alive while the main thread is busy for a long time,
loading a dataset or computing one request, so the orchestrator and the
gateway can tell a busy worker from a dead one.
"""

from __future__ import annotations

import json
import logging
import threading

import redis

from bellhop_worker.status import WorkerStatus

logger = logging.getLogger(__name__)


class Heartbeat:
    """Write the status to the heartbeat key every interval with a TTL."""

    def __init__(
        self,
        client: redis.Redis,
        key: str,
        status: WorkerStatus,
        interval_s: float,
        ttl_s: float,
    ) -> None:
        self._client = client
        self._key = key
        self._status = status
        self._interval_s = interval_s
        self._ttl_ms = int(ttl_s * 1000)
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)
        self._failing = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for a write in progress to finish."""
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def write(self) -> None:
        """Write the key now; raises redis errors to the caller."""
        document = json.dumps(self._status.heartbeat())
        self._client.set(self._key, document, px=self._ttl_ms)

    def delete(self) -> None:
        self._client.delete(self._key)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            self._write_logged()

    def _write_logged(self) -> None:
        # Log the first failure and the recovery only, not every interval.
        try:
            self.write()
        except redis.RedisError as exc:
            if not self._failing:
                logger.warning(
                    "heartbeat write failed, retrying in %.1f s error=%s",
                    self._interval_s,
                    exc,
                )
            self._failing = True
            return
        if self._failing:
            logger.info("heartbeat write recovered")
        self._failing = False
