"""One session's results channel: its subscription and the calls waiting on it.

Pub/sub delivers at most once, so the relay waits for Redis to confirm the
subscription before any request of the session is queued. The channel rides
on the replica's shared ResultSubscriber connection.

A response to a waiting call is not decoded: its id is read from the head of
the text, and the rest goes back to the client as it came (see
EncodedResponse). For a filter with every facet counted, decoding the result
and encoding it again measured about 25 us per request (a loop of such
responses on a 2-vCPU Xeon).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from bellhop_shared.logging import describe_error
from redis.exceptions import RedisError

from bellhop_gateway.rpc import EncodedResponse, PreparedMessage, WorkerResponse
from bellhop_gateway.subscriber import ResultSubscriber

logger = logging.getLogger(__name__)

NotificationHandler = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass
class PendingCall:
    """A queued message whose responses have not all arrived."""

    prepared: PreparedMessage
    future: asyncio.Future[None]
    responses: dict[str, WorkerResponse] = field(default_factory=dict)
    # Set when the results connection dropped while the call waited, so
    # its responses may have been published to no one.
    lost: bool = False


class ResultRelay:
    """Routes a session's published results to waiting calls and handlers."""

    def __init__(
        self,
        subscriber: ResultSubscriber,
        channel: str,
        on_notification: NotificationHandler,
        label: str,
    ) -> None:
        self._subscriber = subscriber
        self._channel = channel
        self._on_notification = on_notification
        self._label = label
        self._pending: dict[str, PendingCall] = {}

    @property
    def is_subscribed(self) -> bool:
        """Whether a response published now would reach this relay."""
        return self._subscriber.is_confirmed(self._channel)

    async def subscribe(self) -> None:
        """SUBSCRIBE and wait for the confirmation, so nothing published is missed."""
        self._subscriber.add_loss_listener(self._on_connection_lost)
        await self._subscriber.subscribe(self._channel, self._dispatch_safely)

    async def close(self) -> None:
        self._subscriber.remove_loss_listener(self._on_connection_lost)
        try:
            await self._subscriber.unsubscribe(self._channel, self._dispatch_safely)
        except (RedisError, OSError) as exc:
            logger.debug(
                "%s unsubscribe failed error=%s", self._label, describe_error(exc)
            )

    def register(self, prepared: PreparedMessage) -> PendingCall:
        call = PendingCall(prepared, asyncio.get_running_loop().create_future())
        for request_id in prepared.expected_ids:
            self._pending[request_id] = call
        return call

    def unregister(self, call: PendingCall) -> None:
        for request_id in call.prepared.expected_ids:
            self._pending.pop(request_id, None)

    def _on_connection_lost(self) -> None:
        """End every waiting call, because its responses may be lost."""
        for call in self._pending.values():
            call.lost = True
        self.release_all()

    def release_all(self) -> None:
        """Wake every waiting call; used when the session ends."""
        for call in list(self._pending.values()):
            if not call.future.done():
                call.future.set_result(None)
        self._pending.clear()

    async def _dispatch_safely(self, text: bytes) -> None:
        try:
            await self._dispatch(text)
        except Exception:
            # The reader must outlive a bug in one message's handling, or every
            # later response of the session would time out.
            logger.exception("%s failed to handle a result", self._label)

    async def _dispatch(self, text: bytes) -> None:
        encoded = EncodedResponse.split(text)
        if encoded is not None and encoded.request_id in self._pending:
            self._resolve([encoded])
            return
        try:
            message = orjson.loads(text)
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
            request_id = _response_id(response)
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


def _response_id(response: Any) -> Any:
    if isinstance(response, EncodedResponse):
        return response.request_id
    return response.get("id") if isinstance(response, dict) else None
