"""Bounded retries of Redis calls: doubling backoff with a cap, then give up."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Errors that a Redis restart, failover or network blip produce. Any other
# error (a wrong key type, a script error) is a bug that retrying cannot fix.
RETRYABLE_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class RedisUnavailable(Exception):
    """Redis stayed unreachable for longer than the give-up time."""


class RedisRetry:
    """Run Redis calls, retrying connection errors until a total time runs out.

    The backoff starts at first_delay_s and doubles up to max_delay_s. It gives
    up early once should_stop() is true, so a SIGTERM during an outage is not
    delayed by the backoff.
    """

    def __init__(
        self,
        give_up_s: float,
        should_stop: Callable[[], bool],
        first_delay_s: float = 0.5,
        max_delay_s: float = 8.0,
    ) -> None:
        self._give_up_s = give_up_s
        self._should_stop = should_stop
        self._first_delay_s = first_delay_s
        self._max_delay_s = max_delay_s

    def call(self, operation: str, func: Callable[..., T], *args: Any) -> T:
        """Return func(*args); `operation` names the call in log lines."""
        failing_since: float | None = None
        delay_s = self._first_delay_s
        while True:
            try:
                return func(*args)
            except RETRYABLE_ERRORS as exc:
                failing_since = failing_since or time.monotonic()
                self._wait_or_give_up(operation, exc, failing_since, delay_s)
                delay_s = min(delay_s * 2, self._max_delay_s)

    def _wait_or_give_up(
        self, operation: str, exc: Exception, failing_since: float, delay_s: float
    ) -> None:
        failing_s = time.monotonic() - failing_since
        if failing_s + delay_s > self._give_up_s or self._should_stop():
            logger.error(
                "redis %s failed, giving up failing_s=%.1f error=%s",
                operation,
                failing_s,
                exc,
            )
            raise RedisUnavailable(
                f"Redis {operation} failed for {failing_s:.0f} s ({exc}); "
                "check REDIS_URL and that the server is up."
            ) from exc
        logger.warning(
            "redis %s failed, retrying in %.1f s error=%s", operation, delay_s, exc
        )
        self._sleep(delay_s)

    def _sleep(self, delay_s: float) -> None:
        # Short slices instead of an Event: a signal handler may not take locks.
        deadline = time.monotonic() + delay_s
        while time.monotonic() < deadline and not self._should_stop():
            time.sleep(min(0.1, delay_s))
