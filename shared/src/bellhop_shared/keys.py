"""Redis key names, the only place they are spelled out.

| key                                | type            | written by   |
|------------------------------------|-----------------|--------------|
| {prefix}session:{sid}:queue        | list            | gateway      |
| {prefix}session:{sid}:inflight     | list            | worker       |
| {prefix}session:{sid}:results      | pub/sub channel | worker       |
| {prefix}session:{sid}:worker       | string + TTL    | worker       |
| {prefix}session:{sid}:client       | string + TTL    | gateway      |
| {prefix}session:{sid}:gateway      | hash + TTL      | gateway      |
| {prefix}sessions                   | hash            | orchestrator |
| {prefix}gateway:detached           | sorted set      | gateway      |
| {prefix}gateway:socketio           | pub/sub channel | gateway      |
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

DEFAULT_PREFIX = "bellhop:"

# 32 random bytes in URL-safe base64 give 43 characters and 256 bits.
_SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{22,128}$")


def new_session_id() -> str:
    """Return a random, unguessable session id (256 bits)."""
    return secrets.token_urlsafe(32)


def is_valid_session_id(session_id: str) -> bool:
    """Return True when session_id has the shape of an id this system issues."""
    # fullmatch, because `$` also matches before a final newline.
    return bool(_SESSION_ID_PATTERN.fullmatch(session_id))


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def session(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def queue(self, session_id: str) -> str:
        return f"{self.session(session_id)}:queue"

    def inflight(self, session_id: str) -> str:
        return f"{self.session(session_id)}:inflight"

    def results(self, session_id: str) -> str:
        return f"{self.session(session_id)}:results"

    def worker(self, session_id: str) -> str:
        return f"{self.session(session_id)}:worker"

    def client(self, session_id: str) -> str:
        return f"{self.session(session_id)}:client"

    def gateway(self, session_id: str) -> str:
        """Return the gateway's record of a session: user, dataset, resume hash."""
        return f"{self.session(session_id)}:gateway"

    @property
    def detached_sessions(self) -> str:
        """Return the sorted set of detached session ids, scored by grace deadline."""
        return f"{self.prefix}gateway:detached"

    @property
    def socketio_channel(self) -> str:
        """Return the channel gateway replicas share through AsyncRedisManager."""
        return f"{self.prefix}gateway:socketio"

    @property
    def sessions(self) -> str:
        return f"{self.prefix}sessions"

    def session_keys(self, session_id: str) -> list[str]:
        """Return every key that belongs to one session (the channel excluded)."""
        return [
            self.queue(session_id),
            self.inflight(session_id),
            self.worker(session_id),
            self.client(session_id),
            self.gateway(session_id),
        ]
