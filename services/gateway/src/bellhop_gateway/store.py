"""The gateway's session records in Redis, shared by every gateway replica.

Each session has a hash at Keys.gateway(sid) with the fields user, dataset,
resume_hash (SHA-256 of the resume token, never the token), attached (the
"<gateway_id>/<socket sid>" attached to the session, empty while detached),
state ("active", or "ending" once a replica has claimed it for deletion) and
the rate limiter's tokens and stamp. Detached sessions wait in the sorted set
Keys.detached_sessions, scored by the unix time their grace period ends.

Attach, detach and claim are Lua scripts, so they are atomic against each
other: a resume that wins removes the session from the sorted set before a
replica can claim it, and a claim that wins marks the record "ending" so a
later resume is rejected.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from enum import Enum, StrEnum

import redis.asyncio as aioredis
from bellhop_shared.keys import Keys

# KEYS: record, detached set, client key. ARGV: sid, resume hash, attachment,
# record ttl s, client heartbeat JSON, client ttl s.
# Comparing hashes instead of tokens makes a timing difference worthless: it
# can only reveal bytes of a SHA-256 digest, never of the token.
_ATTACH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {'missing', ''} end
if redis.call('HGET', KEYS[1], 'state') == 'ending' then return {'ending', ''} end
if redis.call('HGET', KEYS[1], 'resume_hash') ~= ARGV[2] then
  return {'wrong_token', ''}
end
local previous = redis.call('HGET', KEYS[1], 'attached') or ''
redis.call('HSET', KEYS[1], 'attached', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6])
return {'attached', previous}
"""

# KEYS: record, detached set, client key. ARGV: sid, attachment, deadline,
# record ttl s, client JSON, client ttl s. Only the current attachment may
# detach. The client key lives on through the grace, so the orchestrator's
# reaper does not end a session its client may still resume; should this
# gateway die, the key expires and the reaper takes over.
_DETACH = """
if redis.call('HGET', KEYS[1], 'attached') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'attached', '')
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[1])
redis.call('SET', KEYS[3], ARGV[5], 'EX', ARGV[6])
return 1
"""

# KEYS: record, detached set. ARGV: sid, now. A session whose grace has ended
# and that no socket re-attached is marked ending and leaves the set.
_CLAIM = """
local deadline = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not deadline or tonumber(deadline) > tonumber(ARGV[2]) then return 0 end
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('EXISTS', KEYS[1]) == 0 then return 1 end
if (redis.call('HGET', KEYS[1], 'attached') or '') ~= '' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'ending')
return 1
"""

# KEYS: record, client key. ARGV: attachment, record ttl s, client JSON,
# client ttl s. Refreshes both keys while this attachment is the current one.
_REFRESH = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('HGET', KEYS[1], 'attached') ~= ARGV[1] then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[4])
return 1
"""


class Holder(Enum):
    """The socket a session is attached to, as one attachment's heartbeat sees it."""

    THIS = 1
    OTHER = 0
    NONE = -1


class AttachResult(StrEnum):
    ATTACHED = "attached"
    MISSING = "missing"
    ENDING = "ending"
    WRONG_TOKEN = "wrong_token"


@dataclass(frozen=True)
class SessionRecord:
    """The fields of a session record a replica needs to serve it."""

    session_id: str
    user: str | None
    dataset: str


def hash_resume_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def seconds(value: float) -> int:
    """Return a whole-second TTL of at least 1, as EXPIRE requires."""
    return max(1, int(round(value)))


class SessionStore:
    """Reads and changes gateway session records for one gateway replica."""

    def __init__(
        self, redis: aioredis.Redis, keys: Keys, record_ttl_s: int, client_ttl_s: float
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._record_ttl_s = record_ttl_s
        self._client_ttl_s = seconds(client_ttl_s)
        self._attach = redis.register_script(_ATTACH)
        self._detach = redis.register_script(_DETACH)
        self._claim = redis.register_script(_CLAIM)
        self._refresh = redis.register_script(_REFRESH)

    async def create(
        self, record: SessionRecord, resume_hash: str, attachment: str
    ) -> None:
        key = self._keys.gateway(record.session_id)
        fields = {
            "user": record.user or "",
            "dataset": record.dataset,
            "resume_hash": resume_hash,
            "attached": attachment,
            "state": "active",
            "created_at": repr(time.time()),
        }
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._record_ttl_s)
            await pipe.execute()

    async def attach(
        self, session_id: str, resume_hash: str, attachment: str, client_json: str
    ) -> tuple[AttachResult, str]:
        """Attach a resuming socket; return the outcome and the previous holder."""
        keys = self._session_keys(session_id)
        args = [session_id, resume_hash, attachment, self._record_ttl_s]
        args += [client_json, self._client_ttl_s]
        status, previous = await self._attach(keys=keys, args=args)
        return AttachResult(status), previous

    async def read(self, session_id: str) -> SessionRecord | None:
        fields = await self._redis.hgetall(self._keys.gateway(session_id))
        if not fields:
            return None
        return SessionRecord(
            session_id=session_id,
            user=fields.get("user") or None,
            dataset=fields.get("dataset", ""),
        )

    async def detach(self, session_id: str, attachment: str, grace_s: float) -> bool:
        """Start the grace period; False when another socket is attached instead."""
        keys = self._session_keys(session_id)
        deadline = time.time() + grace_s
        args = [session_id, attachment, repr(deadline), self._record_ttl_s]
        client_json = json.dumps({"detached_at": time.time(), "grace_s": grace_s})
        args += [client_json, seconds(grace_s + self._client_ttl_s)]
        return bool(await self._detach(keys=keys, args=args))

    async def refresh(
        self, session_id: str, attachment: str, client_json: str
    ) -> Holder:
        """Refresh the client heartbeat while this attachment is the current one."""
        keys = [self._keys.gateway(session_id), self._keys.client(session_id)]
        args = [attachment, self._record_ttl_s, client_json, self._client_ttl_s]
        return Holder(int(await self._refresh(keys=keys, args=args)))

    async def exists(self, session_id: str) -> bool:
        return bool(await self._redis.exists(self._keys.gateway(session_id)))

    async def due_sessions(self, limit: int = 100) -> list[str]:
        """Return detached sessions whose grace period has ended."""
        found = await self._redis.zrangebyscore(
            self._keys.detached_sessions, "-inf", repr(time.time()), 0, limit
        )
        return [str(session_id) for session_id in found]

    async def claim(self, session_id: str) -> bool:
        """Take a due session for deletion; only one replica ever wins it."""
        keys = [self._keys.gateway(session_id), self._keys.detached_sessions]
        args = [session_id, repr(time.time())]
        return bool(await self._claim(keys=keys, args=args))

    async def defer(self, session_id: str, delay_s: float) -> None:
        """Put a claimed session back in the set, to retry its deletion later."""
        deadline = time.time() + delay_s
        await self._redis.zadd(self._keys.detached_sessions, {session_id: deadline})

    async def forget(self, session_id: str) -> None:
        """Delete every key of a session the orchestrator never took on."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*self._keys.session_keys(session_id))
            pipe.zrem(self._keys.detached_sessions, session_id)
            await pipe.execute()

    def _session_keys(self, session_id: str) -> list[str]:
        return [
            self._keys.gateway(session_id),
            self._keys.detached_sessions,
            self._keys.client(session_id),
        ]
