"""Load progress: a fraction 0..1 that only grows, split into phases."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

ProgressCallback = Callable[[float], None]
T = TypeVar("T")

# How often a blocking step that runs in a thread has its progress polled.
POLL_INTERVAL_S = 0.05


class Progress:
    """Forward fractions to a callback, never going backwards."""

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._last = 0.0

    def report(self, fraction: float) -> None:
        fraction = min(max(fraction, self._last), 1.0)
        if fraction > self._last or fraction == 0.0:
            self._last = fraction
            self._callback(fraction)

    def phase(self, start: float, end: float) -> ProgressCallback:
        """Return a callback that maps 0..1 onto start..end of this progress."""
        return lambda fraction: self.report(start + (end - start) * fraction)


def run_polled(
    step: Callable[[], T], fraction: Callable[[], float], report: ProgressCallback
) -> T:
    """Run step in a thread and report fraction() until it finishes.

    Used for pyarrow readers that block without callbacks; the fraction comes
    from a counter their input stream updates. Exceptions of step re-raise here.
    """
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = step()
        except BaseException as exc:  # re-raised in the calling thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="dataset-reader", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_INTERVAL_S)
        report(fraction())
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]
