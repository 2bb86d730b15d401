"""One pub/sub connection per replica that carries every session's results channel.

Sessions subscribe and unsubscribe as they attach and detach. A single reader
task reads the connection and hands each message to the handlers of its
channel, so the number of Redis connections does not grow with the sessions.
Pub/sub delivers at most once, so `subscribe` returns only after Redis has
confirmed the subscription.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

SUBSCRIBE_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 1.0
INITIAL_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0

MessageHandler = Callable[[bytes], Awaitable[None]]


class ResultSubscriber:
    """Subscribes this replica's session channels on one connection and routes them.

    The client passed in must not decode responses (messages arrive as bytes)
    and should not retry on its own, because the reader reconnects itself.
    """

    def __init__(self, redis: aioredis.Redis, label: str) -> None:
        self._redis = redis
        self._label = label
        self._pubsub: PubSub = redis.pubsub()
        self._handlers: dict[str, list[MessageHandler]] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        # UNSUBSCRIBE commands sent but not yet confirmed, per channel. A
        # subscribe confirmation that arrives before theirs is stale.
        self._unsubscribing: dict[str, int] = {}
        self._confirmed: set[str] = set()
        self._commands = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self._close_pubsub(self._pubsub)
        await self._redis.aclose()

    async def subscribe(self, channel: str, handler: MessageHandler) -> None:
        """Add handler to channel and wait until Redis confirms the subscription.

        Raises RedisError or OSError when the command cannot be sent, and
        TimeoutError when no confirmation arrives within SUBSCRIBE_TIMEOUT_S.
        """
        handlers = self._handlers.setdefault(channel, [])
        handlers.append(handler)
        if channel in self._confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(waiter)
        try:
            async with self._commands:
                await self._pubsub.subscribe(channel)
            async with asyncio.timeout(SUBSCRIBE_TIMEOUT_S):
                await waiter
        except BaseException:
            self._drop_waiter(channel, waiter)
            await self.unsubscribe(channel, handler)
            raise

    async def unsubscribe(self, channel: str, handler: MessageHandler) -> None:
        """Remove handler, and unsubscribe the channel when no handler is left."""
        handlers = self._handlers.get(channel, [])
        if handler in handlers:
            handlers.remove(handler)
        if handlers:
            return
        self._handlers.pop(channel, None)
        self._confirmed.discard(channel)
        self._unsubscribing[channel] = self._unsubscribing.get(channel, 0) + 1
        try:
            async with self._commands:
                await self._pubsub.unsubscribe(channel)
        except (RedisError, OSError) as exc:
            # The next reconnect subscribes only the channels still in use.
            logger.debug(
                "%s unsubscribe failed channel=%s error=%r", self._label, channel, exc
            )

    async def _run(self) -> None:
        """Read until cancelled, and reconnect with doubling backoff after an error."""
        backoff_s = INITIAL_BACKOFF_S
        broken = False
        while True:
            try:
                if broken:
                    await self._reconnect()
                    broken = False
                message = await self._read()
            except (RedisError, OSError) as exc:
                broken = True
                logger.warning(
                    "%s results connection failed error=%r; retrying in %.1f s",
                    self._label,
                    exc,
                    backoff_s,
                )
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, MAX_BACKOFF_S)
                continue
            backoff_s = INITIAL_BACKOFF_S
            if message is not None:
                await self._handle(message)

    async def _read(self) -> dict[str, Any] | None:
        if self._pubsub.connection is None:
            # Nothing was subscribed yet, so there is no connection to read.
            await asyncio.sleep(READ_TIMEOUT_S / 10)
            return None
        message: dict[str, Any] | None = await self._pubsub.get_message(
            timeout=READ_TIMEOUT_S
        )
        return message

    async def _reconnect(self) -> None:
        """Replace the connection and subscribe every channel still in use.

        Responses published while the connection was down are lost, because
        pub/sub keeps nothing for absent subscribers. Calls waiting on them
        end with their GATEWAY_RPC_TIMEOUT_S timeout.
        """
        async with self._commands:
            await self._close_pubsub(self._pubsub)
            self._pubsub = self._redis.pubsub()
            self._confirmed.clear()
            self._unsubscribing.clear()
            channels = list(self._handlers)
            if channels:
                await self._pubsub.subscribe(*channels)
        logger.info(
            "%s results connection restored channels=%d", self._label, len(channels)
        )

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = _text(message["channel"])
        if kind == "message":
            for handler in list(self._handlers.get(channel, ())):
                await self._deliver(handler, channel, message["data"])
        elif kind == "subscribe":
            self._on_subscribed(channel)
        elif kind == "unsubscribe" and self._unsubscribing.get(channel):
            self._unsubscribing[channel] -= 1

    async def _deliver(
        self, handler: MessageHandler, channel: str, data: bytes
    ) -> None:
        try:
            await handler(data)
        except Exception:
            # The reader serves every session of the replica, so a bug in one
            # handler must not stop it.
            logger.exception(
                "%s failed to handle a message channel=%s", self._label, channel
            )

    def _on_subscribed(self, channel: str) -> None:
        if self._unsubscribing.get(channel) or channel not in self._handlers:
            return
        self._confirmed.add(channel)
        for waiter in self._waiters.pop(channel, []):
            if not waiter.done():
                waiter.set_result(None)

    def _drop_waiter(self, channel: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(channel, [])
        if waiter in waiters:
            waiters.remove(waiter)
        if not waiters:
            self._waiters.pop(channel, None)

    async def _close_pubsub(self, pubsub: PubSub) -> None:
        try:
            await pubsub.aclose()
        except (RedisError, OSError) as exc:
            logger.debug(
                "%s results connection close failed error=%r", self._label, exc
            )


def _text(value: bytes | str | None) -> str:
    """Return a channel name as str; pong replies carry no channel."""
    if isinstance(value, bytes):
        return value.decode()
    return value or ""
