"""A leader lock in Redis, so one orchestrator replica at a time runs the reaper.

The holder SETs the key NX with an expiry and renews it on every reaper tick
with a compare-and-expire; if the holder dies, the key expires and another
replica takes over.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket

import redis.asyncio as aioredis

logger = logging.getLogger(__name__)

# Renews the lock only when this replica still holds it.
_RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaderLock:
    """One replica's handle on the shared lock key."""

    def __init__(self, client: aioredis.Redis, key: str, ttl_s: float) -> None:
        self.key = key
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._client = client
        self._ttl_ms = max(int(ttl_s * 1000), 1000)
        self._renew = client.register_script(_RENEW_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)
        self.is_held = False

    async def hold(self) -> bool:
        """Renew the lock, or try to take it; return True while this replica leads."""
        if self.is_held:
            if await self._renew(keys=[self.key], args=[self.owner, self._ttl_ms]):
                return True
            logger.warning("reaper leadership lost owner=%s", self.owner)
        acquired = await self._client.set(
            self.key, self.owner, nx=True, px=self._ttl_ms
        )
        self.is_held = bool(acquired)
        if self.is_held:
            logger.info("reaper leadership taken owner=%s", self.owner)
        return self.is_held

    async def release(self) -> None:
        if self.is_held:
            await self._release(keys=[self.key], args=[self.owner])
            self.is_held = False
