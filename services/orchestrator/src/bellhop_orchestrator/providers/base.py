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
"""

from __future__ import annotations

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

    async def aclose(self) -> None:
        """Release the provider's resources; running workers keep running."""
        ...
