"""Settings base shared by every service (pydantic-settings, environment first)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from bellhop_shared.keys import DEFAULT_PREFIX, Keys


class BaseServiceSettings(BaseSettings):
    """Settings every service reads; Heroku's REDIS_URL is honoured unprefixed."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    redis_url: str = Field(default="redis://127.0.0.1:6379/0")
    # Validated here at start; bellhop_shared.redis_client reads the same
    # variable when it builds each connection.
    redis_ssl_cert_reqs: Literal["none", "optional", "required"] = Field(
        default="required", alias="REDIS_SSL_CERT_REQS"
    )
    key_prefix: str = Field(default=DEFAULT_PREFIX, alias="BELLHOP_KEY_PREFIX")
    log_level: str = Field(default="INFO")
    log_format: Literal["kv", "json"] = Field(default="kv")

    @property
    def keys(self) -> Keys:
        return Keys(self.key_prefix)
