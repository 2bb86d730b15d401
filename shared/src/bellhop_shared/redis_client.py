"""Redis connections with the timeouts Bellhop's blocking reads need."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis

# Blocking reads (BLMOVE) wait at most this long, so the socket timeout must be
# longer; redis-py 8 defaults to 5 s, which would cut a longer wait short.
SOCKET_TIMEOUT_S = 30.0


def connect(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )


def connect_async(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=5.0,
        health_check_interval=30,
    )
