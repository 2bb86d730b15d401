"""Gateway settings: environment variables first, validated once at start."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path

from bellhop_shared.settings import BaseServiceSettings
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

# The source checkout keeps the page and npm's node_modules beside src/.
_SERVICE_DIR = Path(__file__).resolve().parents[2]

# HS256 signs with HMAC-SHA-256; RFC 7518 section 3.2 requires a key of at
# least 256 bits for it.
MIN_SECRET_BYTES = 32


class GatewaySettings(BaseServiceSettings):
    """Everything the gateway reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    port: int = Field(default=8000, description="TCP port to listen on.")
    gateway_host: str = Field(
        default="127.0.0.1",
        description="Interface to bind; the images set 0.0.0.0 for a dyno.",
    )
    gateway_id: str = Field(
        default_factory=lambda: f"g-{secrets.token_hex(4)}",
        description="Name of this replica in logs and in request ids.",
    )
    orchestrator_url: str = "http://127.0.0.1:8100"
    orchestrator_token: SecretStr | None = None
    orchestrator_timeout_s: float = Field(default=30.0, gt=0)
    gateway_secret: SecretStr | None = Field(
        default=None, description="HS256 key for client tokens; unset = anonymous."
    )
    gateway_resume_grace_s: float = Field(default=30.0, ge=0)
    gateway_rpc_timeout_s: float = Field(default=60.0, gt=0)
    gateway_max_message_bytes: int = Field(default=262_144, gt=0)
    gateway_rate_limit: float = Field(
        default=50.0, ge=0, description="Requests per second per session; 0 = off."
    )
    gateway_rate_burst: int = Field(default=100, gt=0)
    gateway_max_queue: int = Field(
        default=1000, ge=0, description="Queued items per session; 0 = no cap."
    )
    gateway_ws_compression: bool = Field(
        default=False,
        description="Compress websocket messages (permessage-deflate).",
    )
    gateway_redis_connections: int = Field(
        default=20,
        gt=0,
        description="Command connections per replica, shared by all its sessions.",
    )
    gateway_client_ttl_s: float = Field(default=15.0, gt=0)
    gateway_client_heartbeat_s: float = Field(default=5.0, gt=0)
    gateway_state_poll_s: float = Field(
        default=1.0, gt=0, description="Worker heartbeat reads until ready."
    )
    gateway_cors_origins: str = Field(
        default="", description='Comma-separated origins, "*" for any, empty = same.'
    )
    gateway_web_dir: Path = _SERVICE_DIR / "web"
    gateway_node_modules: Path = _SERVICE_DIR / "node_modules"

    @field_validator("gateway_secret")
    @classmethod
    def _check_secret_length(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"GATEWAY_SECRET is shorter than {MIN_SECRET_BYTES} bytes, too weak "
                "for HS256; generate one with `python -c 'import secrets; "
                "print(secrets.token_urlsafe(48))'`."
            )
        return value

    @model_validator(mode="after")
    def _check_heartbeat(self) -> GatewaySettings:
        if self.gateway_client_heartbeat_s >= self.gateway_client_ttl_s:
            raise ValueError(
                f"GATEWAY_CLIENT_HEARTBEAT_S ({self.gateway_client_heartbeat_s}) must "
                f"be shorter than GATEWAY_CLIENT_TTL_S ({self.gateway_client_ttl_s}), "
                "or the client key expires between refreshes."
            )
        return self

    @property
    def cors_origins(self) -> list[str] | str | None:
        """Return the value python-socketio's cors_allowed_origins expects."""
        raw = self.gateway_cors_origins.strip()
        if not raw:
            return None
        if raw == "*":
            return "*"
        return [origin.strip() for origin in raw.split(",") if origin.strip()]

    @property
    def engine_max_bytes(self) -> int:
        """Return the websocket frame limit: 4 x the message limit, at least +64 KiB.

        The headroom lets a message up to 4 times GATEWAY_MAX_MESSAGE_BYTES
        reach the rpc handler, which returns a JSON-RPC error that names the
        limit. A frame over this limit makes the server close the connection
        (websocket close code 1009) without an error, so it bounds the size
        of one frame: 1 MiB with the default limit. A message under it is
        decoded in full before its size is checked.
        """
        limit = self.gateway_max_message_bytes
        return max(4 * limit, limit + 65_536)

    @property
    def record_ttl_s(self) -> int:
        """Return the lifetime of the gateway's session record after a refresh.

        Attached replicas refresh it with the client heartbeat. A detached
        record must outlive the grace period so a resume can still find it.
        """
        margin_s = 60.0
        return int(self.gateway_client_ttl_s + self.gateway_resume_grace_s + margin_s)


@lru_cache(maxsize=1)
def get_settings() -> GatewaySettings:
    """Return the settings read from the environment, once per process."""
    return GatewaySettings()
