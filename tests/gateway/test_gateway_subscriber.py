"""The gateway's pub/sub connection, against a real redis-server and a silent peer."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
from bellhop_gateway.subscriber import PubSubConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from support import free_port


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
