"""Worker settings, read from the environment (the orchestrator sets them)."""

from __future__ import annotations

import secrets

from bellhop_shared.redis_client import SOCKET_TIMEOUT_S
from bellhop_shared.settings import BaseServiceSettings
from pydantic import Field, model_validator


def new_worker_id() -> str:
    """Return a random worker id of the form `w-xxxxxxxx`."""
    return f"w-{secrets.token_hex(4)}"


class WorkerSettings(BaseServiceSettings):
    """Timeouts and identity of one worker process; every duration is in seconds."""

    worker_id: str = Field(default_factory=new_worker_id, alias="WORKER_ID")
    idle_timeout_s: float = Field(default=300.0, gt=0, alias="WORKER_IDLE_TIMEOUT_S")
    heartbeat_interval_s: float = Field(
        default=3.0, gt=0, alias="WORKER_HEARTBEAT_INTERVAL_S"
    )
    heartbeat_ttl_s: float = Field(default=15.0, gt=0, alias="WORKER_HEARTBEAT_TTL_S")
    # The longest one BLMOVE waits for a request before the loop checks the
    # idle timeout again. An idle worker sends one BLMOVE and one drain script
    # (EVAL with one LLEN inside) per block timeout. A signal interrupts the
    # wait, so a long timeout does not delay a SIGTERM exit. It must stay
    # below the socket timeout.
    block_timeout_s: float = Field(
        default=20.0, gt=0, lt=SOCKET_TIMEOUT_S, alias="WORKER_BLOCK_TIMEOUT_S"
    )
    # Maximum length of a Redis outage before the worker exits with status 1.
    redis_give_up_s: float = Field(default=60.0, gt=0, alias="WORKER_REDIS_GIVE_UP_S")
    # The most queued requests moved into one batch; the rest wait for the next.
    max_batch: int = Field(default=1000, gt=0, alias="WORKER_MAX_BATCH")
    catalog_path: str | None = Field(default=None, alias="BELLHOP_CATALOG")

    @model_validator(mode="after")
    def _check_heartbeat_ttl(self) -> WorkerSettings:
        if self.heartbeat_ttl_s <= self.heartbeat_interval_s:
            raise ValueError(
                f"WORKER_HEARTBEAT_TTL_S={self.heartbeat_ttl_s} must be longer than "
                f"WORKER_HEARTBEAT_INTERVAL_S={self.heartbeat_interval_s}, or the "
                "heartbeat key expires between two writes; raise the TTL."
            )
        return self
