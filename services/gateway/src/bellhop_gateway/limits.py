"""Admission to a session's queue: message size, rate limit and queue cap.

The rate limit is a token bucket per session, stored in the session's gateway
record (fields tokens and stamp), so every replica shares one bucket. One Lua
script checks the bucket and the queue length, then pushes the item, so a
rejected item never touches the queue. The script reads the clock with Redis
TIME, so replicas with skewed clocks still agree. It runs on the replica's
pipelined connection (see pipelined.py), because it is on the critical path
of every request.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from bellhop_shared.keys import Keys
from redis.exceptions import ResponseError

from bellhop_gateway.pipelined import PipelinedConnection

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

    def __init__(
        self, connection: PipelinedConnection, keys: Keys, limits: Limits
    ) -> None:
        self._connection = connection
        self._keys = keys
        self.limits = limits
        self._sha = hashlib.sha1(_ADMIT.encode()).hexdigest()

    async def push(self, session_id: str, item: str, cost: int) -> AdmissionResult:
        """LPUSH item unless the session is over a limit; cost = requests in it."""
        limits = self.limits
        args = (
            2,
            self._keys.gateway(session_id),
            self._keys.queue(session_id),
            limits.rate_per_s,
            limits.burst,
            cost,
            limits.max_queue,
            item,
        )
        try:
            reply = await self._connection.execute("EVALSHA", self._sha, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
            # Redis lost its script cache (a restart, SCRIPT FLUSH, a
            # failover). EVAL runs the script and caches it again.
            reply = await self._connection.execute("EVAL", _ADMIT, *args)
        status, detail = reply
        return AdmissionResult(Admission(status), float(detail))

    async def aclose(self) -> None:
        await self._connection.aclose()
