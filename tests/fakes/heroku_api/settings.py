"""Settings of the fake Heroku API, from FAKE_HEROKU_* environment variables."""

from __future__ import annotations

import json

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class FakeSettings(BaseSettings):
    """Limits and behaviour of the fake; every duration is in seconds."""

    model_config = SettingsConfigDict(env_prefix="FAKE_HEROKU_", extra="ignore")

    token: str = "fake-heroku-token"
    apps: str = Field(default="bellhop-test", description="Comma-separated names.")
    # JSON object of the app's config vars, given to every dyno.
    config_vars: str = "{}"
    # The real API refills 4500 tokens an hour: 75 a minute.
    rate_capacity: float = 4500.0
    rate_refill_per_s: float = 1.25
    one_off_limit: int = 50
    stop_grace_s: float = 30.0
    boot_s: float = 0.2
    # The first N info calls for each new dyno return 404, as the real API
    # sometimes does right after a create.
    info_404_count: int = 0
    log_dir: str | None = None

    @field_validator("config_vars")
    @classmethod
    def _check_config_vars(cls, value: str) -> str:
        parsed = json.loads(value)
        if not isinstance(parsed, dict):
            raise ValueError("FAKE_HEROKU_CONFIG_VARS must be a JSON object")
        return value

    @property
    def app_names(self) -> list[str]:
        return [name.strip() for name in self.apps.split(",") if name.strip()]

    @property
    def config_var_map(self) -> dict[str, str]:
        return {k: str(v) for k, v in json.loads(self.config_vars).items()}
