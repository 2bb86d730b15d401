"""Redis connections of the gateway's own, for the two on every request's path.

The gateway queues every request with one EVALSHA, and its results arrive on
one pub/sub connection (see subscriber.py). redis-py's asyncio client takes a
pool connection per command and runs each write under asyncio.wait_for,
which starts a task. A loop of sequential EVALSHA calls measured 83 us of CPU
and 102 us of wall time per call through redis-py 8.2. Writing the command
and parsing the reply with hiredis, as this module does, measured 28 us and
62 us (2-vCPU AMD EPYC).

Redis replies to the commands of a connection in the order it received them,
so each command's future waits in a FIFO and every reply resolves the oldest.
A reply that takes longer than the reply timeout closes the connection,
because the replies after it would no longer match their commands. Commands
that were waiting then fail with ConnectionError, and the next command
connects again.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from bellhop_shared.redis_client import SOCKET_TIMEOUT_S, connection_options
from redis.asyncio.connection import SSLConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError

CONNECT_TIMEOUT_S = 5.0

Argument = str | bytes | int | float


class ReplyLostError(RedisConnectionError):
    """A command was sent, but the connection closed before its reply arrived.

    Redis may or may not have run the command.
    """


@dataclass(frozen=True)
class Endpoint:
    """The address, credentials and TLS settings of a Redis URL."""

    host: str
    port: int
    path: str | None
    db: int
    username: str | None
    password: str | None
    tls: ssl.SSLContext | None

    @classmethod
    def from_url(cls, url: str) -> Endpoint:
        # The same options redis-py's from_url would use, so TLS settings in
        # the URL and REDIS_SSL_CERT_REQS mean here what they mean for the
        # gateway's redis-py clients.
        options = {**connection_options(url), **parse_url(url)}
        tls = None
        if options.pop("connection_class", None) is SSLConnection:
            tls = SSLConnection(**options).ssl_context.get()
        return cls(
            host=options.get("host", "localhost"),
            port=int(options.get("port", 6379)),
            path=options.get("path"),
            db=int(options.get("db", 0)),
            username=options.get("username"),
            password=options.get("password"),
            tls=tls,
        )

    def describe(self) -> str:
        return self.path or f"{self.host}:{self.port}"


class PipelinedConnection:
    """Sends commands on one lazily opened connection and returns their replies.

    Replies are decoded as UTF-8 text. An error reply raises ResponseError
    and leaves the connection usable. A failed connect raises redis-py's
    ConnectionError, and a connection lost or a reply slower than
    reply_timeout_s after the command was sent raises ReplyLostError.
    """

    def __init__(
        self,
        url: str,
        client_name: str,
        reply_timeout_s: float = SOCKET_TIMEOUT_S,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self._endpoint = Endpoint.from_url(url)
        self._client_name = client_name
        self._reply_timeout_s = reply_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._protocol: RespProtocol | None = None
        self._connecting: asyncio.Task[RespProtocol] | None = None

    async def execute(self, *args: Argument) -> Any:
        """Send one command and return its reply."""
        protocol = self._protocol
        if protocol is None or protocol.is_closed:
            protocol = await self._connect()
        return await protocol.send(args)

    async def aclose(self) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
            await asyncio.gather(connecting, return_exceptions=True)
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.close()
            await protocol.wait_closed()

    async def _connect(self) -> RespProtocol:
        """Wait for the connect attempt in flight, or start one.

        Every caller that finds the connection down shares one attempt and
        its outcome, so callers do not wait for attempts one after another.
        """
        if self._connecting is None:
            self._connecting = asyncio.create_task(self._open())
            self._connecting.add_done_callback(self._connect_done)
        return await asyncio.shield(self._connecting)

    async def _open(self) -> RespProtocol:
        self._protocol = await open_connection(
            self._endpoint,
            self._client_name,
            lambda: RespProtocol(self._reply_timeout_s),
            self._connect_timeout_s,
        )
        return self._protocol

    def _connect_done(self, attempt: asyncio.Task[RespProtocol]) -> None:
        if self._connecting is attempt:
            self._connecting = None
        # Retrieve the error, so an attempt whose callers were all cancelled
        # does not log "exception was never retrieved".
        if not attempt.cancelled():
            attempt.exception()


async def open_connection(
    endpoint: Endpoint,
    client_name: str,
    factory: Callable[[], RespProtocol],
    timeout_s: float = CONNECT_TIMEOUT_S,
) -> RespProtocol:
    """Connect, authenticate, select the database and name the connection.

    Raises redis-py's ConnectionError when any step fails or takes longer
    than timeout_s in all.
    """
    loop = asyncio.get_running_loop()
    protocol: RespProtocol | None = None
    try:
        async with asyncio.timeout(timeout_s):
            if endpoint.path is not None:
                _, protocol = await loop.create_unix_connection(factory, endpoint.path)
            else:
                _, protocol = await loop.create_connection(
                    factory, endpoint.host, endpoint.port, ssl=endpoint.tls
                )
            if endpoint.password is not None:
                credentials = [endpoint.username] if endpoint.username else []
                await protocol.send(("AUTH", *credentials, endpoint.password))
            if endpoint.db:
                await protocol.send(("SELECT", endpoint.db))
            await protocol.send(("CLIENT", "SETNAME", client_name))
    except TimeoutError as exc:
        failure: BaseException = exc
        reason = f"timed out after {timeout_s:g} s"
    except (OSError, RedisError) as exc:
        failure = exc
        reason = str(exc)
    except BaseException:
        if protocol is not None:
            protocol.close()
        raise
    else:
        return protocol
    if protocol is not None:
        protocol.close()
    raise RedisConnectionError(
        f"Error connecting to Redis at {endpoint.describe()}: {reason}"
    ) from failure


class RespProtocol(asyncio.Protocol):
    """The connection's transport, its reply parser and the FIFO of waiting calls.

    A reply that arrives while no call waits goes to on_push, which is how a
    connection in pub/sub mode receives its messages. Replies are decoded
    with encoding, or left as bytes when it is None. on_lost runs once, when
    the connection closes.
    """

    def __init__(
        self,
        reply_timeout_s: float,
        encoding: str | None = "utf-8",
        on_push: Callable[[Any], None] | None = None,
        on_lost: Callable[[], None] | None = None,
    ) -> None:
        self._reply_timeout_s = reply_timeout_s
        self._on_push = on_push
        self._on_lost = on_lost
        if encoding is None:
            self._reader = hiredis.Reader(replyError=ResponseError)
        else:
            self._reader = hiredis.Reader(encoding=encoding, replyError=ResponseError)
        self.last_received = time.monotonic()
        # Each entry is a command's future and the monotonic time it was sent.
        self._waiting: deque[tuple[asyncio.Future[Any], float]] = deque()
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._failure = "Redis closed the connection"
        self._can_write = asyncio.Event()
        self._can_write.set()

    @property
    def is_closed(self) -> bool:
        """Whether the connection is closed or closing, so writes would be lost."""
        if self._closed.done():
            return True
        return self._transport is not None and self._transport.is_closing()

    @property
    def failure(self) -> str:
        """The reason the connection closed, or will close."""
        return self._failure

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.last_received = time.monotonic()
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:
                self.fail(f"Redis sent an invalid reply: {exc}")
                return
            if reply is False:
                return
            if not self._waiting:
                if self._on_push is None:
                    self.fail("Redis sent a reply to no command")
                    return
                self._on_push(reply)
                continue
            future, _ = self._waiting.popleft()
            if future.done():
                # Its caller was cancelled; the reply only keeps the FIFO in step.
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def pause_writing(self) -> None:
        self._can_write.clear()

    def resume_writing(self) -> None:
        self._can_write.set()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None and self._failure == "Redis closed the connection":
            self._failure = f"the connection to Redis failed: {exc!r}"
        if self._timer is not None:
            self._timer.cancel()
        while self._waiting:
            future, _ = self._waiting.popleft()
            if not future.done():
                future.set_exception(ReplyLostError(self._failure))
        self._can_write.set()
        if not self._closed.done():
            self._closed.set_result(None)
            if self._on_lost is not None:
                self._on_lost()

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def send_nowait(self, args: tuple[Argument, ...]) -> None:
        """Write a command whose replies go to on_push."""
        if self.is_closed or self._transport is None:
            raise RedisConnectionError(self._failure)
        self._transport.write(hiredis.pack_command(args))

    async def send(self, args: tuple[Argument, ...]) -> Any:
        if not self._can_write.is_set():
            # The transport's buffer is over its high-water mark.
            await self._can_write.wait()
        if self.is_closed or self._transport is None:
            raise RedisConnectionError(self._failure)
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((future, time.monotonic()))
        self._transport.write(hiredis.pack_command(args))
        if self._timer is None:
            self._arm_timer(self._reply_timeout_s)
        return await future

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)

    def fail(self, reason: str) -> None:
        """Abort the connection; calls still waiting fail with reason."""
        self._failure = reason
        if self._transport is not None:
            self._transport.abort()

    def _arm_timer(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(delay_s, self._check_oldest)

    def _check_oldest(self) -> None:
        """Close the connection when the oldest command waited past the timeout."""
        self._timer = None
        if not self._waiting or self.is_closed:
            return
        _, sent_at = self._waiting[0]
        waited_s = time.monotonic() - sent_at
        if waited_s >= self._reply_timeout_s:
            self.fail(f"no reply from Redis within {self._reply_timeout_s:g} s")
            return
        self._arm_timer(self._reply_timeout_s - waited_s)
