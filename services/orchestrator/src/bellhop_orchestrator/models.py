"""Wire models: the session record stored in Redis and returned by the REST API."""

from __future__ import annotations

import re
import time
from enum import StrEnum
from typing import Any

from bellhop_shared.keys import is_valid_session_id
from pydantic import BaseModel, ConfigDict, Field, field_validator

# User ids come from token subjects, so any printable text is allowed; the
# providers quote them on command lines.
USER_ID_PATTERN = r"^[^\x00-\x1f\x7f]{1,128}$"
# The shape bellhop_shared.keys.is_valid_session_id accepts.
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{22,128}$"
_USER_ID = re.compile(USER_ID_PATTERN)


class RecordState(StrEnum):
    """States of a session record.

    starting: the record exists and a worker was requested, but no worker
      heartbeat has been seen yet.
    running: the worker has written its heartbeat at least once.
    ended: the session was stopped, and `ended_reason` contains the reason.
    failed: the worker could not start, reported a failure (e.g. a missing
      dataset) or stopped unexpectedly (a crash or a kill), and
      `ended_reason` contains the error.
    """

    STARTING = "starting"
    RUNNING = "running"
    ENDED = "ended"
    FAILED = "failed"


LIVE_STATES = frozenset({RecordState.STARTING, RecordState.RUNNING})


class SessionRecord(BaseModel):
    """One session and its worker, as stored in the `sessions` hash."""

    session_id: str
    dataset: str
    user: str | None = None
    state: RecordState
    worker_id: str
    provider: str
    provider_ref: str | None = Field(
        default=None,
        description="The provider's handle: `pid:<pid>:<start ticks>` for local "
        "workers, the dyno id on Heroku; null until the worker was requested.",
    )
    created_at: float = Field(description="Unix time in seconds.")
    updated_at: float = Field(description="Unix time in seconds.")
    ended_reason: str | None = None

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_STATES

    def age_s(self, now: float | None = None) -> float:
        return (now or time.time()) - self.created_at

    def to_json(self) -> str:
        return self.model_dump_json()

    def with_changes(self, **changes: Any) -> SessionRecord:
        """Return a copy with `changes` applied and `updated_at` set to now."""
        return self.model_copy(update={**changes, "updated_at": time.time()})


class CreateSessionRequest(BaseModel):
    """Body of POST /v1/sessions."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(min_length=1, max_length=200)
    session_id: str | None = Field(
        default=None,
        description="22 to 128 characters of A-Z, a-z, 0-9, `_` and `-`; "
        "generated when omitted.",
        # Documented here, checked by the validator below for a clearer error.
        json_schema_extra={"pattern": SESSION_ID_PATTERN},
    )
    user: str | None = Field(
        default=None,
        description="1 to 128 characters, none of them a control character.",
        # Documented here, checked by the validator below for a clearer error.
        json_schema_extra={"pattern": USER_ID_PATTERN},
    )

    @field_validator("session_id")
    @classmethod
    def _check_session_id(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_session_id(value):
            raise ValueError(
                "session_id must be 22 to 128 characters of A-Z, a-z, 0-9, _ and -; "
                "omit it to have the orchestrator generate one"
            )
        return value

    @field_validator("user")
    @classmethod
    def _check_user(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_user_id(value):
            raise ValueError(
                "user must be 1 to 128 characters, none of them a control "
                "character; omit it for an anonymous session"
            )
        return value


class ErrorResponse(BaseModel):
    """Body of every error response."""

    detail: str
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Per-field problems, for a 422 validation error."
    )


class HealthResponse(BaseModel):
    status: str


def is_valid_user_id(user: str) -> bool:
    # fullmatch, because `$` also matches before a final newline.
    return bool(_USER_ID.fullmatch(user))
