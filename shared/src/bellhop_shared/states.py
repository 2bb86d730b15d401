"""Lifecycle states shared by the worker, the orchestrator and the gateway."""

from enum import StrEnum


class WorkerState(StrEnum):
    """States a worker reports in its heartbeat and its state notifications."""

    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    TERMINATING = "terminating"
    FAILED = "failed"


class SessionState(StrEnum):
    """States of a session as the gateway reports them to its client."""

    PROVISIONING = "provisioning"
    STARTING = "starting"
    LOADING = "loading"
    READY = "ready"
    ENDED = "ended"
    FAILED = "failed"


# The notification method a worker publishes on its results channel at every
# state change; params: {"state", "progress", "message", "worker_id"}.
STATE_NOTIFICATION = "worker.state"

# The notification the orchestrator publishes on a session's results channel
# when it ends the session itself (reaper, limits, DELETE); params: {"reason"}.
SESSION_ENDED_NOTIFICATION = "session.ended"
