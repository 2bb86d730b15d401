"""Admission to a session's queue: message size, rate limit and queue cap.

The rate limit is a token bucket per session, stored in the session's gateway
record (fields tokens and stamp), so every replica shares one bucket. One Lua
script checks the bucket and the queue length, then pushes the item, so a
rejected item never touches the queue. The script reads the clock with Redis
TIME, so replicas with skewed clocks still agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import redis.asyncio as aioredis
from bellhop_shared.keys import Keys

# KEYS: record, queue. ARGV: rate per s, burst, cost, max queue, item.
# Returns {status, detail}: detail is the queue length after a push, the wait
# in seconds before the bucket contains `cost` tokens, or the queue length that
# hit the cap.
_ADMIT = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'ended', '0'} end
if redis.call('HGET', KEYS[1], 'state') == 'ending' then return {'ended', '0'} end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_queue = tonumber(ARGV[4])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local tokens = burst
if rate > 0 then
  local stored = redis.call('HMGET', KEYS[1], 'tokens', 'stamp')
  if stored[1] and stored[2] then
    local elapsed = math.max(0, now - tonumber(stored[2]))
    tokens = math.min(burst, tonumber(stored[1]) + elapsed * rate)
  end
  if tokens < cost then
    return {'rate_limited', tostring((cost - tokens) / rate)}
  end
end
if max_queue > 0 then
  local length = redis.call('LLEN', KEYS[2])
  if length >= max_queue then return {'queue_full', tostring(length)} end
end
if rate > 0 then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - cost), 'stamp', tostring(now))
end
return {'queued', tostring(redis.call('LPUSH', KEYS[2], ARGV[5]))}
"""


class Admission(StrEnum):
    QUEUED = "queued"
    RATE_LIMITED = "rate_limited"
    QUEUE_FULL = "queue_full"
    ENDED = "ended"


@dataclass(frozen=True)
class AdmissionResult:
    status: Admission
    detail: float


@dataclass(frozen=True)
class Limits:
    """The per-session limits, from GatewaySettings."""

    max_message_bytes: int
    rate_per_s: float
    burst: int
    max_queue: int


class QueueAdmitter:
    """Pushes items onto session queues when the limits allow it."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, limits: Limits) -> None:
        self._keys = keys
        self.limits = limits
        self._admit = redis.register_script(_ADMIT)

    async def push(self, session_id: str, item: str, cost: int) -> AdmissionResult:
        """LPUSH item unless the session is over a limit; cost = requests in it."""
        keys = [self._keys.gateway(session_id), self._keys.queue(session_id)]
        args = [self.limits.rate_per_s, self.limits.burst, cost]
        args += [self.limits.max_queue, item]
        status, detail = await self._admit(keys=keys, args=args)
        return AdmissionResult(Admission(status), float(detail))
