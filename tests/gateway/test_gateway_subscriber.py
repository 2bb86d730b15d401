"""The gateway's pub/sub connection, against a real redis-server and a silent peer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from bellhop_gateway import subscriber
from bellhop_gateway.subscriber import PubSubConnection, ResultSubscriber
from redis.exceptions import ConnectionError as RedisConnectionError
from support import free_port
from test_gateway_pipelined import ServerFactory, start_plain_redis, start_redis

__all__ = ["start_redis"]


async def _read_until(connection: PubSubConnection, count: int) -> list[Any]:
    replies: list[Any] = []
    async with asyncio.timeout(10):
        while len(replies) < count:
            replies += await connection.read()
    return replies


def test_messages_arrive_in_order_as_bytes(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def scenario() -> list[Any]:
        connection = PubSubConnection(redis_url, "bellhop-test-sub")
        try:
            await connection.open()
            connection.send("SUBSCRIBE", "results")
            confirmation = await _read_until(connection, 1)
            for number in range(50):
                redis_client.publish("results", f"message {number}")
            return confirmation + await _read_until(connection, 50)
        finally:
            await connection.aclose()

    replies = asyncio.run(scenario())

    assert replies[0] == [b"subscribe", b"results", 1]
    expected = [[b"message", b"results", f"message {n}".encode()] for n in range(50)]
    assert replies[1:] == expected


def test_idle_connection_sends_ping(redis_url: str) -> None:
    async def scenario() -> list[Any]:
        connection = PubSubConnection(
            redis_url, "bellhop-test-sub", health_interval_s=0.2
        )
        try:
            await connection.open()
            connection.send("SUBSCRIBE", "quiet")
            return await _read_until(connection, 2)
        finally:
            await connection.aclose()

    replies = asyncio.run(scenario())

    assert replies == [[b"subscribe", b"quiet", 1], [b"pong", b""]]


def test_lost_connection_fails_read(redis_url: str, redis_client: redis.Redis) -> None:
    async def scenario() -> None:
        connection = PubSubConnection(redis_url, "bellhop-test-lost")
        try:
            await connection.open()
            connection.send("SUBSCRIBE", "results")
            await _read_until(connection, 1)
            redis_client.client_kill_filter(_type="pubsub")
            with pytest.raises(RedisConnectionError):
                await _read_until(connection, 1)
            assert not connection.is_open
        finally:
            await connection.aclose()

    asyncio.run(scenario())


def test_silent_peer_is_dropped() -> None:
    """A peer that accepts the connection and then sends nothing is closed."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Reply OK to CLIENT SETNAME, then send nothing more.
        await reader.readuntil(b"SETNAME\r\n")
        await reader.readline()
        await reader.readline()
        writer.write(b"+OK\r\n")
        await writer.drain()
        await reader.read()

    async def scenario() -> tuple[str, float]:
        port = free_port()
        server = await asyncio.start_server(serve, "127.0.0.1", port)
        connection = PubSubConnection(
            f"redis://127.0.0.1:{port}/0", "bellhop-test-silent", health_interval_s=0.2
        )
        try:
            await connection.open()
            started = time.monotonic()
            with pytest.raises(RedisConnectionError) as raised:
                async with asyncio.timeout(5):
                    await connection.read()
            return str(raised.value), time.monotonic() - started
        finally:
            await connection.aclose()
            server.close()

    message, waited_s = asyncio.run(scenario())

    assert "no data from Redis" in message
    assert 0.3 < waited_s < 2.0


def test_unread_replies_stay_in_redis(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriber, "MAX_UNREAD_REPLIES", 100)

    async def scenario() -> tuple[int, list[Any]]:
        connection = PubSubConnection(redis_url, "bellhop-test-paused")
        try:
            await connection.open()
            connection.send("SUBSCRIBE", "busy")
            await _read_until(connection, 1)
            # 8 MB, more than the kernel's socket buffers take in.
            with redis_client.pipeline(transaction=False) as pipe:
                for number in range(2000):
                    pipe.publish("busy", f"{number:04d}" + "x" * 4000)
                pipe.execute()
            await asyncio.sleep(0.3)
            buffered = _output_buffer_bytes(redis_client, "bellhop-test-paused")
            return buffered, await _read_until(connection, 2000)
        finally:
            await connection.aclose()

    buffered, replies = asyncio.run(scenario())

    assert buffered > 0
    assert [reply[2][:4] for reply in replies] == [
        f"{n:04d}".encode() for n in range(2000)
    ]


def test_subscribe_cuts_reconnect_backoff_short(start_redis: ServerFactory) -> None:
    port = free_port()
    start_plain_redis(start_redis, port)
    url = f"redis://127.0.0.1:{port}/0"
    publisher = redis.Redis(port=port)
    received: list[bytes] = []

    async def on_message(data: bytes) -> None:
        received.append(data)

    async def scenario() -> float:
        results = ResultSubscriber(
            url, "bellhop-test-results", "test", initial_backoff_s=20.0
        )
        results.start()
        try:
            await results.subscribe("before", on_message)
            publisher.shutdown(nosave=True)
            # The reader fails and starts waiting out its 20 s backoff.
            await asyncio.sleep(1.0)
            await asyncio.to_thread(start_plain_redis, start_redis, port)
            started = time.monotonic()
            await results.subscribe("after", on_message)
            waited_s = time.monotonic() - started
            await asyncio.to_thread(redis.Redis(port=port).publish, "before", "b")
            await asyncio.to_thread(redis.Redis(port=port).publish, "after", "a")
            async with asyncio.timeout(5):
                while len(received) < 2:
                    await asyncio.sleep(0.02)
            return waited_s
        finally:
            await results.stop()

    waited_s = asyncio.run(scenario())

    assert waited_s < 5.0
    assert sorted(received) == [b"a", b"b"]


def _output_buffer_bytes(client: redis.Redis, name: str) -> int:
    for entry in client.client_list():
        if entry["name"] == name:
            return int(entry["omem"])
    raise AssertionError(f"no client named {name}")


def test_loss_reported_while_handler_runs(
    redis_url: str, redis_client: redis.Redis
) -> None:
    """A drop while the reader awaits a handler still reaches the listeners."""
    losses: list[bool] = []

    async def scenario() -> tuple[bool, bool]:
        results = ResultSubscriber(redis_url, "bellhop-test-busy", "test")
        handler_started = asyncio.Event()

        async def slow_handler(data: bytes) -> None:
            handler_started.set()
            await asyncio.sleep(0.5)

        async def ignore(data: bytes) -> None:
            return None

        results.add_loss_listener(lambda: losses.append(True))
        results.start()
        try:
            await results.subscribe("busy", slow_handler)
            await results.subscribe("waiting", ignore)
            await asyncio.to_thread(redis_client.publish, "busy", "work")
            await handler_started.wait()
            await asyncio.to_thread(redis_client.client_kill_filter, _type="pubsub")
            await asyncio.sleep(0.1)
            # The handler is still running, so the reader has not looked yet.
            return bool(losses), results.is_confirmed("waiting")
        finally:
            await results.stop()

    reported, still_confirmed = asyncio.run(scenario())

    assert reported
    assert not still_confirmed
