"""The provider contract: how the orchestrator starts, stops and finds workers.

A provider runs one worker process per session somewhere (a local subprocess,
a Heroku one-off dyno). The API and the reaper only use this interface, so
they never know which provider runs.

Worker status, as `poll` reports it:

- running: the provider has the worker and it has not exited. It may still
  be booting or loading its dataset.
- exited: the worker is known to be gone (it exited, was stopped, or the
  handle points at a process that is no longer the one started).
- unknown: the provider cannot tell right now (e.g. its API failed); callers
  decide again later and never stop a worker on this status alone.

`find_exited` checks many workers at once and reports how each one that is
gone ended (`WorkerExit`), so the reaper can end a session as soon as its
worker dies.
"""

from __future__ import annotations

import signal
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class WorkerStatus(StrEnum):
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class WorkerSpec:
    """What a provider needs to start one session's worker."""

    session_id: str
    dataset: str
    worker_id: str
    user: str | None = None

    def worker_args(self) -> list[str]:
        """Return the worker's command-line arguments after the program name.

        The `--name=value` form keeps a value that starts with "-" (session
        ids and user ids may) from being read as an option.
        """
        args = [f"--session={self.session_id}", f"--dataset={self.dataset}"]
        if self.user:
            args.append(f"--user={self.user}")
        return args


@dataclass(frozen=True)
class RunningWorker:
    """A worker the provider runs, as `list` reports it."""

    provider_ref: str
    session_id: str
    worker_id: str | None = None
    detail: str = ""


@dataclass(frozen=True)
class WorkerExit:
    """The exit of a gone worker, as far as the provider can tell.

    `exit_code` follows asyncio.subprocess: the exit status, or minus the
    signal number for a worker killed by a signal. It is None when the
    provider cannot know it: Heroku reports none, and a local worker that
    another orchestrator process started is not this process's child.
    """

    exit_code: int | None = None
    detail: str = ""
    # False when the worker may still be starting but is not listed yet, as
    # a Heroku dyno that another replica created moments ago can be.
    certain: bool = True

    def describe(self) -> str:
        """Return the exit in words, e.g. `killed by SIGKILL` or `exit status 1`."""
        if self.exit_code is None:
            return self.detail or "exit status unknown"
        if self.exit_code < 0:
            return f"killed by {_signal_name(-self.exit_code)}"
        return f"exit status {self.exit_code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Provider(Protocol):
    """Starts and stops session workers; every method is safe to call twice."""

    name: str

    async def start(self, spec: WorkerSpec) -> str:
        """Start a worker and return its provider_ref.

        Raises ProviderCapacityError when the provider is at its limit and
        ProviderError for any other failure.
        """
        ...

    async def stop(self, provider_ref: str, reason: str) -> None:
        """Stop a worker: gracefully (SIGTERM) first, then forcibly.

        Stopping a worker that is already gone is not an error.
        """
        ...

    async def list(self) -> list[RunningWorker]:
        """Return every Bellhop worker the provider runs for this deployment."""
        ...

    async def poll(self, provider_ref: str) -> WorkerStatus:
        """Report whether the worker behind `provider_ref` still runs."""
        ...

    async def find_exited(
        self, provider_refs: Collection[str]
    ) -> dict[str, WorkerExit]:
        """Return the workers among `provider_refs` that are gone, by ref.

        A ref missing from the result runs, or its status is unknown right
        now. Raises ProviderError when the provider cannot be asked.
        """
        ...

    async def aclose(self) -> None:
        """Release the provider's resources; running workers keep running."""
        ...
