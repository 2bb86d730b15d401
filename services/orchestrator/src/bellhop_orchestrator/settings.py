"""Orchestrator settings, read from the environment at start and validated once.

Every duration is in seconds. Heroku's own names (PORT, REDIS_URL) are read
unprefixed; the worker's WORKER_* settings are passed through to local workers
and, when set, to Heroku dynos as dyno environment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Literal

from bellhop_shared.settings import BaseServiceSettings
from pydantic import Field, SecretStr, model_validator

# Values that mark a secret nobody filled in; settings with them are rejected.
_PLACEHOLDERS = {"", "changeme", "change-me", "changethis", "placeholder", "secret"}
_HEROKU_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,28}[a-z0-9]$")
# Heroku caps a one-off dyno's time_to_live at 24 hours.
MAX_TIME_TO_LIVE_S = 86_400


def is_placeholder(value: str) -> bool:
    """Return True for an empty or obviously unfilled secret such as `changeme`."""
    lowered = value.strip().lower()
    return lowered in _PLACEHOLDERS or lowered.startswith(("<", "your-", "your_"))


class OrchestratorSettings(BaseServiceSettings):
    """Everything the orchestrator reads from its environment."""

    host: str = Field(default="127.0.0.1", alias="HOST")
    port: int = Field(default=8100, ge=1, le=65535, alias="PORT")
    orchestrator_token: SecretStr | None = Field(
        default=None, alias="ORCHESTRATOR_TOKEN"
    )
    provider: Literal["local", "heroku"] = Field(default="local", alias="PROVIDER")

    # Heroku provider.
    heroku_api_token: SecretStr | None = Field(default=None, alias="HEROKU_API_TOKEN")
    heroku_app: str | None = Field(default=None, alias="HEROKU_APP")
    heroku_api_url: str = Field(
        default="https://api.heroku.com", alias="HEROKU_API_URL"
    )
    heroku_dyno_size: str = Field(default="standard-1X", alias="HEROKU_DYNO_SIZE")
    heroku_dyno_type: str = Field(default="worker", alias="HEROKU_DYNO_TYPE")
    heroku_page_size: int = Field(default=200, ge=1, le=1000, alias="HEROKU_PAGE_SIZE")
    heroku_request_timeout_s: float = Field(
        default=15.0, gt=0, alias="HEROKU_REQUEST_TIMEOUT_S"
    )
    # The longest one call may spend backing off from 429s before it gives up.
    heroku_max_backoff_s: float = Field(
        default=20.0, ge=0, alias="HEROKU_MAX_BACKOFF_S"
    )
    heroku_first_backoff_s: float = Field(
        default=1.0, gt=0, alias="HEROKU_FIRST_BACKOFF_S"
    )
    heroku_server_error_retries: int = Field(
        default=3, ge=0, alias="HEROKU_SERVER_ERROR_RETRIES"
    )

    # Local provider.
    local_worker_command: str = Field(default="", alias="LOCAL_WORKER_COMMAND")
    local_stop_timeout_s: float = Field(
        default=10.0, gt=0, alias="LOCAL_STOP_TIMEOUT_S"
    )
    local_kill_timeout_s: float = Field(default=5.0, gt=0, alias="LOCAL_KILL_TIMEOUT_S")
    local_worker_nice: int = Field(
        default=5,
        ge=0,
        le=19,
        alias="LOCAL_WORKER_NICE",
        description="Scheduling niceness of local workers; 0 = the same as the "
        "orchestrator.",
    )

    # Limits.
    worker_time_to_live_s: int = Field(
        default=3600, ge=60, le=MAX_TIME_TO_LIVE_S, alias="WORKER_TIME_TO_LIVE_S"
    )
    max_workers: int = Field(default=50, ge=0, alias="MAX_WORKERS")
    max_workers_per_user: int = Field(default=5, ge=0, alias="MAX_WORKERS_PER_USER")
    limit_retry_after_s: int = Field(default=30, ge=1, alias="LIMIT_RETRY_AFTER_S")

    # Reaper and reconciliation.
    reaper_enabled: bool = Field(default=True, alias="REAPER_ENABLED")
    reaper_interval_s: float = Field(default=5.0, gt=0, alias="REAPER_INTERVAL_S")
    reconcile_interval_s: float = Field(
        default=30.0, gt=0, alias="RECONCILE_INTERVAL_S"
    )
    worker_start_timeout_s: float = Field(
        default=120.0, gt=0, alias="WORKER_START_TIMEOUT_S"
    )
    worker_heartbeat_grace_s: float = Field(
        default=5.0, ge=0, alias="WORKER_HEARTBEAT_GRACE_S"
    )
    gateway_grace_s: float = Field(default=30.0, ge=0, alias="GATEWAY_GRACE_S")
    ended_retention_s: float = Field(default=600.0, ge=0, alias="ENDED_RETENTION_S")

    # Worker settings passed through to the workers this orchestrator starts.
    worker_idle_timeout_s: float | None = Field(
        default=None, gt=0, alias="WORKER_IDLE_TIMEOUT_S"
    )
    worker_heartbeat_interval_s: float | None = Field(
        default=None, gt=0, alias="WORKER_HEARTBEAT_INTERVAL_S"
    )
    worker_heartbeat_ttl_s: float | None = Field(
        default=None, gt=0, alias="WORKER_HEARTBEAT_TTL_S"
    )
    catalog_path: str | None = Field(default=None, alias="BELLHOP_CATALOG")

    @model_validator(mode="after")
    def _check_secrets(self) -> OrchestratorSettings:
        token = self.orchestrator_token
        if token is not None and not token.get_secret_value():
            # An empty variable means "unset", as in most deployment tools.
            self.orchestrator_token = None
        elif token is not None and is_placeholder(token.get_secret_value()):
            raise ValueError(
                "ORCHESTRATOR_TOKEN is empty or a placeholder; set a random value "
                "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe())'`) "
                "or unset it to run without API authentication."
            )
        if self.provider == "heroku":
            self._check_heroku()
        return self

    def _check_heroku(self) -> None:
        token = self.heroku_api_token
        if token is None or is_placeholder(token.get_secret_value()):
            raise ValueError(
                "PROVIDER=heroku needs HEROKU_API_TOKEN, which is missing or a "
                "placeholder; set it to an API token (`heroku authorizations:create`)."
            )
        if not self.heroku_app or not _HEROKU_APP_NAME.match(self.heroku_app):
            raise ValueError(
                f"PROVIDER=heroku needs HEROKU_APP, the app name, got "
                f"{self.heroku_app!r}; set it to a name like `my-bellhop`."
            )
        if not self.heroku_api_url.startswith(("https://", "http://")):
            raise ValueError(
                f"HEROKU_API_URL must be an http(s) URL, got {self.heroku_api_url!r}."
            )

    def worker_environment(self) -> dict[str, str]:
        """Return the WORKER_* settings that were set, as environment strings."""
        values = {
            "WORKER_IDLE_TIMEOUT_S": self.worker_idle_timeout_s,
            "WORKER_HEARTBEAT_INTERVAL_S": self.worker_heartbeat_interval_s,
            "WORKER_HEARTBEAT_TTL_S": self.worker_heartbeat_ttl_s,
        }
        return {name: f"{value:g}" for name, value in values.items() if value}


@lru_cache(maxsize=1)
def get_settings() -> OrchestratorSettings:
    """Return the settings read from the environment; tests call cache_clear()."""
    return OrchestratorSettings()
