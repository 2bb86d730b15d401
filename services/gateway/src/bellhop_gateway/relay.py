"""One session's results channel: the subscription and the calls waiting on it.

Pub/sub delivers at most once, so the relay subscribes and waits for Redis to
confirm before any request of the session is queued. Each relay owns its own
connection, read by a single task, so reads never interleave.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from bellhop_gateway.rpc import PreparedMessage

logger = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 1.0
MAX_BACKOFF_S = 30.0

NotificationHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class PendingCall:
    """A queued message whose responses have not all arrived."""

    prepared: PreparedMessage
    future: asyncio.Future[None]
    responses: dict[str, dict[str, Any]] = field(default_factory=dict)


class ResultRelay:
    """Routes a session's published results to waiting calls and handlers."""

    def __init__(
        self,
        redis: aioredis.Redis,
        channel: str,
        on_notification: NotificationHandler,
        label: str,
    ) -> None:
        self._pubsub: PubSub = redis.pubsub()
        self._channel = channel
        self._on_notification = on_notification
        self._label = label
        self._pending: dict[str, PendingCall] = {}

    async def subscribe(self) -> None:
        """SUBSCRIBE and wait for the confirmation, so nothing published is missed."""
        await self._pubsub.subscribe(self._channel)
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
            while True:
                message = await self._pubsub.get_message(timeout=READ_TIMEOUT_S)
                if message and message["type"] == "subscribe":
                    return

    async def run(self) -> None:
        """Read the channel until cancelled, reconnecting with backoff."""
        backoff_s = 0.5
        while True:
            try:
                message = await self._pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=READ_TIMEOUT_S
                )
                backoff_s = 0.5
            except (RedisError, OSError) as exc:
                logger.warning(
                    "%s results read failed error=%r; retrying in %.1f s",
                    self._label,
                    exc,
                    backoff_s,
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
                continue
            if message and message["type"] == "message":
                await self._dispatch_safely(message["data"])

    async def close(self) -> None:
        try:
            await self._pubsub.aclose()
        except (RedisError, OSError) as exc:
            logger.debug(
                "%s results connection close failed error=%r", self._label, exc
            )

    def register(self, prepared: PreparedMessage) -> PendingCall:
        call = PendingCall(prepared, asyncio.get_running_loop().create_future())
        for request_id in prepared.expected_ids:
            self._pending[request_id] = call
        return call

    def unregister(self, call: PendingCall) -> None:
        for request_id in call.prepared.expected_ids:
            self._pending.pop(request_id, None)

    def release_all(self) -> None:
        """Wake every waiting call; used when the session ends."""
        for call in list(self._pending.values()):
            if not call.future.done():
                call.future.set_result(None)
        self._pending.clear()

    async def _dispatch_safely(self, text: str) -> None:
        try:
            await self._dispatch(text)
        except Exception:
            # The reader must outlive a bug in one message's handling, or every
            # later response of the session would time out.
            logger.exception("%s failed to handle a result", self._label)

    async def _dispatch(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            logger.warning("%s ignored a result that is not JSON", self._label)
            return
        if isinstance(message, dict) and "method" in message:
            await self._on_notification(message)
        elif isinstance(message, dict):
            self._resolve([message])
        elif isinstance(message, list):
            self._resolve(message)
        else:
            logger.warning("%s ignored a result of type %s", self._label, type(message))

    def _resolve(self, responses: list[Any]) -> None:
        touched: list[PendingCall] = []
        for response in responses:
            request_id = response.get("id") if isinstance(response, dict) else None
            call = (
                self._pending.get(request_id) if isinstance(request_id, str) else None
            )
            if call is None:
                # Another replica's call, a repeat after a worker restart (delivery
                # is at least once), or a call that already timed out.
                logger.debug("%s ignored a response id=%r", self._label, request_id)
                continue
            call.responses[request_id] = response
            touched.append(call)
        for call in touched:
            self.unregister(call)
            if not call.future.done():
                call.future.set_result(None)
