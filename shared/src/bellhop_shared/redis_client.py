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


def tls_options(url: str) -> dict[str, Any]:
    """Return the certificate options for a rediss:// URL, else nothing."""
    if not url.startswith("rediss://"):
        return {}
    setting = os.environ.get("REDIS_SSL_CERT_REQS", "required").lower()
    if setting not in _CERT_REQS:
        raise ValueError(
            f"Invalid REDIS_SSL_CERT_REQS {setting!r}: use none, optional or required."
        )
    return {"ssl_cert_reqs": _CERT_REQS[setting]}


def connection_options(url: str) -> dict[str, Any]:
    """Return the keyword arguments every Redis client of Bellhop is built with."""
    return {
        "socket_timeout": SOCKET_TIMEOUT_S,
        "socket_connect_timeout": 5.0,
        "health_check_interval": 30,
        **tls_options(url),
    }


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, decode_responses=True, **connection_options(url))


def connect_async(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, decode_responses=True, **connection_options(url)
    )
