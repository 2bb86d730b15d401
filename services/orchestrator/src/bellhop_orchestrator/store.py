"""Redis bookkeeping: session records, heartbeat reads, cleanup and notifications.

Records live in the `sessions` hash as JSON. Every change is a compare-and-set
on the record's stored text, so two replicas (or the API and the reaper) never
both act on one transition.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

import redis.asyncio as aioredis
from bellhop_shared.jsonrpc import notification
from bellhop_shared.keys import Keys
from bellhop_shared.states import SESSION_ENDED_NOTIFICATION
from pydantic import ValidationError

from bellhop_orchestrator.models import SessionRecord

logger = logging.getLogger(__name__)

# Creates a record unless a live one exists, counting live records against the
# limits in the same atomic step so concurrent creates never exceed them.
# KEYS[1] = sessions hash; ARGV = session id, record JSON, user ("" for none),
# max total (0 = no limit), max per user (0 = no limit).
_CREATE_SCRIPT = """
local function is_live(raw)
  local ok, rec = pcall(cjson.decode, raw)
  return ok and (rec.state == 'starting' or rec.state == 'running'), rec
end
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing then
  local live = is_live(existing)
  if live then return {'exists', existing} end
end
local total, per_user = 0, 0
for _, raw in ipairs(redis.call('HVALS', KEYS[1])) do
  local live, rec = is_live(raw)
  if live then
    total = total + 1
    if ARGV[3] ~= '' and rec.user == ARGV[3] then per_user = per_user + 1 end
  end
end
local max_total, max_user = tonumber(ARGV[4]), tonumber(ARGV[5])
if max_total > 0 and total >= max_total then
  return {'limit_total', tostring(total)}
end
if ARGV[3] ~= '' and max_user > 0 and per_user >= max_user then
  return {'limit_user', tostring(per_user)}
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {'created', ARGV[2]}
"""

# Replaces (or deletes, when ARGV[3] is empty) a record only if its stored text
# is still ARGV[2]. KEYS[1] = sessions hash; ARGV = session id, old, new.
_SWAP_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1
"""

_SWAP_ATTEMPTS = 10


class CreateStatus(StrEnum):
    CREATED = "created"
    EXISTS = "exists"
    LIMIT_TOTAL = "limit_total"
    LIMIT_USER = "limit_user"


@dataclass(frozen=True)
class CreateOutcome:
    status: CreateStatus
    record: SessionRecord | None = None
    live_count: int = 0


@dataclass(frozen=True)
class StoredRecord:
    """A record together with the exact text it was read from."""

    raw: str
    record: SessionRecord


class SessionStore:
    """The orchestrator's view of Redis for one key prefix."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._create = client.register_script(_CREATE_SCRIPT)
        self._swap = client.register_script(_SWAP_SCRIPT)

    async def ping(self) -> bool:
        return bool(await self.client.ping())

    async def create(
        self, record: SessionRecord, max_total: int, max_per_user: int
    ) -> CreateOutcome:
        """Insert `record` unless a live record exists or a limit is reached."""
        args = [record.session_id, record.to_json(), record.user or ""]
        reply = await self._create(
            keys=[self.keys.sessions], args=[*args, max_total, max_per_user]
        )
        status, payload = CreateStatus(reply[0]), reply[1]
        if status in (CreateStatus.CREATED, CreateStatus.EXISTS):
            return CreateOutcome(status, SessionRecord.model_validate_json(payload))
        return CreateOutcome(status, live_count=int(payload))

    async def get(self, session_id: str) -> SessionRecord | None:
        stored = await self.get_stored(session_id)
        return stored.record if stored else None

    async def get_stored(self, session_id: str) -> StoredRecord | None:
        raw = cast(str | None, await self.client.hget(self.keys.sessions, session_id))
        return _parse(session_id, raw) if raw is not None else None

    async def list_records(self) -> list[SessionRecord]:
        return [stored.record for stored in await self.list_stored()]

    async def update(
        self,
        session_id: str,
        change: Callable[[SessionRecord], SessionRecord | None],
    ) -> SessionRecord | None:
        """Apply `change` atomically; it returns the new record, or None to skip.

        Returns the record as written, or None when there was no record or
        `change` declined. A concurrent writer makes the change run again on
        the fresh record.
        """
        for _ in range(_SWAP_ATTEMPTS):
            stored = await self.get_stored(session_id)
            if stored is None:
                return None
            new = change(stored.record)
            if new is None:
                return None
            if await self._swap_raw(session_id, stored.raw, new.to_json()):
                return new
        raise RuntimeError(
            f"session {session_id} record kept changing during "
            f"{_SWAP_ATTEMPTS} update attempts; retry the request"
        )

    async def remove(self, session_id: str) -> None:
        await self.client.hdel(self.keys.sessions, session_id)

    async def remove_if_unchanged(self, stored: StoredRecord) -> bool:
        return await self._swap_raw(stored.record.session_id, stored.raw, "")

    async def list_stored(self) -> list[StoredRecord]:
        # The client decodes responses (decode_responses=True), so keys and
        # values are str.
        entries = cast(dict[str, str], await self.client.hgetall(self.keys.sessions))
        parsed = (_parse(sid, raw) for sid, raw in entries.items())
        return [stored for stored in parsed if stored is not None]

    async def worker_heartbeat(self, session_id: str) -> dict[str, Any] | None:
        """Return the worker's heartbeat payload, or None when the key is gone."""
        raw = await self.client.get(self.keys.worker(session_id))
        if raw is None:
            return None
        try:
            payload = json.loads(raw)
        except ValueError:
            logger.warning("session %s worker heartbeat is not JSON", session_id)
            return {}
        return payload if isinstance(payload, dict) else {}

    async def has_client(self, session_id: str) -> bool:
        return bool(await self.client.exists(self.keys.client(session_id)))

    async def delete_session_keys(
        self, session_id: str, keep_worker_key: bool = False
    ) -> None:
        names = self.keys.session_keys(session_id)
        if keep_worker_key:
            names.remove(self.keys.worker(session_id))
        await self.client.delete(*names)

    async def publish_ended(self, session_id: str, reason: str, state: str) -> None:
        """Publish `session.ended` with the reason and the final state."""
        params = {"reason": reason, "state": state}
        message = notification(SESSION_ENDED_NOTIFICATION, params)
        await self.client.publish(self.keys.results(session_id), json.dumps(message))

    async def _swap_raw(self, session_id: str, old: str, new: str) -> bool:
        args = [session_id, old, new]
        return bool(await self._swap(keys=[self.keys.sessions], args=args))


def _parse(session_id: str, raw: str) -> StoredRecord | None:
    try:
        return StoredRecord(raw, SessionRecord.model_validate_json(raw))
    except ValidationError as exc:
        logger.error(
            "session %s record in Redis is invalid and is ignored error=%s",
            session_id,
            exc.errors(include_url=False)[:1],
        )
        return None
