"""Redis connections with the timeouts Bellhop's blocking reads need."""

from __future__ import annotations

import os
from typing import Any

import redis
import redis.asyncio as aioredis

# Blocking reads (BLMOVE) wait at most this long, so the socket timeout must be
# longer; redis-py 8 defaults to 5 s, which would cut a longer wait short.
SOCKET_TIMEOUT_S = 30.0

# Heroku Key-Value Store serves rediss:// with a self-signed certificate, so
# there REDIS_SSL_CERT_REQS=none turns off certificate verification.
_CERT_REQS = {"none": None, "optional": "optional", "required": "required"}


def connection_options(url: str) -> dict[str, Any]:
    """Return the keyword arguments every Redis client of Bellhop is built with."""
    options: dict[str, Any] = {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
    }
    if url.startswith("rediss://"):
        setting = os.environ.get("REDIS_SSL_CERT_REQS", "required").lower()
        if setting not in _CERT_REQS:
            raise ValueError(
                f"Invalid REDIS_SSL_CERT_REQS {setting!r}: "
                "use none, optional or required."
            )
        options["ssl_cert_reqs"] = _CERT_REQS[setting]
    return options


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **connection_options(url))


def connect_async(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, decode_responses=True, **connection_options(url)
    )
