"""The progress callback handed to Engine.load: throttled publishing and cancel."""

from __future__ import annotations

import time
from collections.abc import Callable


class LoadCancelled(Exception):
    """Raised from the progress callback to stop a load after SIGTERM or SIGINT."""


class ProgressPublisher:
    """Publish load progress at most every min_interval_s, unless it jumped.

    A step of at least min_step is published at once, so a client sees every
    tenth of the load. A smaller step waits until min_interval_s has passed
    since the last published update.
    """

    def __init__(
        self,
        publish: Callable[[float], None],
        is_cancelled: Callable[[], bool],
        min_step: float = 0.1,
        min_interval_s: float = 0.25,
    ) -> None:
        self._publish = publish
        self._is_cancelled = is_cancelled
        self._min_step = min_step
        self._min_interval_s = min_interval_s
        self._last_fraction = 0.0
        self._last_published = time.monotonic()

    def __call__(self, fraction: float, *details: object) -> None:
        """Take a progress fraction from 0 to 1; extra arguments are ignored."""
        if self._is_cancelled():
            raise LoadCancelled("the worker was asked to stop during the load")
        fraction = min(max(float(fraction), 0.0), 1.0)
        now = time.monotonic()
        # The tolerance keeps 0.3 - 0.2, which is 0.0999... in floats, a full step.
        jumped = fraction - self._last_fraction >= self._min_step - 1e-9
        waited = now - self._last_published >= self._min_interval_s
        if fraction > self._last_fraction and (jumped or waited):
            self._last_fraction = fraction
            self._last_published = now
            self._publish(fraction)
