"""Many sessions on one gateway: few Redis connections, a response to every request."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import redis
from gateway_client import GatewayClient, request, run
from support import wait_until

SESSIONS = 150
REQUESTS_PER_SESSION = 3
CONNECT_BATCH = 25
# A small command pool, so the sessions must share it.
COMMAND_CONNECTIONS = 4


def gateway_connections(redis_client: redis.Redis, name: str) -> dict[str, int]:
    """Count the Redis connections of one gateway, by the client names it sets."""
    prefix = f"bellhop-gateway:{name}"
    counts = {"commands": 0, "results": 0}
    for client in redis_client.client_list():
        if client["name"] == f"{prefix}:results":
            counts["results"] += 1
        elif client["name"] == prefix:
            counts["commands"] += 1
    return counts


async def connect_ready(url: str) -> GatewayClient:
    client = await GatewayClient(url).connect({"dataset": "flights"})
    await client.wait_ready(timeout_s=90)
    return client


async def echo_all(client: GatewayClient, session_index: int) -> list[Any]:
    calls = [
        client.rpc(request(n, "echo", {"session": session_index, "n": n}), 60)
        for n in range(REQUESTS_PER_SESSION)
    ]
    return list(await asyncio.gather(*calls))


def test_many_sessions_share_connections(
    start_gateway: Callable[..., Any], redis_client: redis.Redis
) -> None:
    gateway = start_gateway(
        "g-scale", GATEWAY_REDIS_CONNECTIONS=str(COMMAND_CONNECTIONS)
    )

    async def scenario() -> tuple[dict[str, int], dict[str, int], list[list[Any]]]:
        clients: list[GatewayClient] = []
        try:
            clients.append(await connect_ready(gateway.url))
            await echo_all(clients[0], 0)
            with_one = gateway_connections(redis_client, "g-scale")
            while len(clients) < SESSIONS:
                batch = min(CONNECT_BATCH, SESSIONS - len(clients))
                clients += await asyncio.gather(
                    *(connect_ready(gateway.url) for _ in range(batch))
                )
            answers = await asyncio.gather(
                *(echo_all(client, i) for i, client in enumerate(clients))
            )
            with_all = gateway_connections(redis_client, "g-scale")
            return with_one, with_all, answers
        finally:
            await asyncio.gather(
                *(client.close() for client in clients), return_exceptions=True
            )

    with_one, with_all, answers = run(scenario(), timeout_s=240)

    assert len(answers) == SESSIONS
    for index, session_answers in enumerate(answers):
        expected = [
            {"jsonrpc": "2.0", "id": n, "result": {"session": index, "n": n}}
            for n in range(REQUESTS_PER_SESSION)
        ]
        assert session_answers == expected, f"session {index}: {session_answers}"
    assert with_one["results"] == 1
    assert with_all["results"] == 1
    assert 1 <= with_all["commands"] <= COMMAND_CONNECTIONS
    log = gateway.log_text()
    assert "MaxConnectionsError" not in log
    assert "lost its connection to Redis" not in log


async def echo_after_resubscribe(client: GatewayClient, request_id: int) -> Any:
    """Send echo until the gateway stops rejecting it for an unconfirmed channel.

    The log line "results connection restored" comes before Redis confirms
    the subscriptions, and until then the gateway queues nothing.
    """
    for _ in range(50):
        response = await client.rpc(request(request_id, "echo", {"n": request_id}))
        if "results connection to Redis is down" not in str(response):
            return response
        await asyncio.sleep(0.1)
    return response


def kill_results_connection(redis_client: redis.Redis, name: str) -> None:
    for client in redis_client.client_list():
        if client["name"] == f"bellhop-gateway:{name}:results":
            redis_client.client_kill_filter(_id=client["id"])


def test_results_connection_reconnects(
    start_gateway: Callable[..., Any], redis_client: redis.Redis
) -> None:
    gateway = start_gateway("g-reconnect")

    async def scenario() -> tuple[Any, Any]:
        client = await connect_ready(gateway.url)
        try:
            before = await client.rpc(request(1, "echo", {"n": 1}))
            kill_results_connection(redis_client, "g-reconnect")
            await asyncio.to_thread(
                wait_until,
                lambda: "results connection restored" in gateway.log_text(),
                30,
            )
            after = await echo_after_resubscribe(client, 2)
            return before, after
        finally:
            await client.close()

    before, after = run(scenario())

    assert before == {"jsonrpc": "2.0", "id": 1, "result": {"n": 1}}
    assert after == {"jsonrpc": "2.0", "id": 2, "result": {"n": 2}}
    assert "retrying in 0.5 s" in gateway.log_text()
    assert gateway_connections(redis_client, "g-reconnect")["results"] == 1


def test_lost_results_connection_ends_waiting_call(
    start_gateway: Callable[..., Any], redis_client: redis.Redis
) -> None:
    gateway = start_gateway("g-lost")

    async def scenario() -> tuple[Any, float, Any]:
        client = await connect_ready(gateway.url)
        try:
            # The fake worker never replies to blackhole, so the call waits.
            waiting = asyncio.create_task(client.rpc(request(1, "blackhole", {}), 60))
            await asyncio.sleep(0.5)
            started = asyncio.get_running_loop().time()
            kill_results_connection(redis_client, "g-lost")
            lost = await waiting
            waited_s = asyncio.get_running_loop().time() - started
            await asyncio.to_thread(
                wait_until,
                lambda: "results connection restored" in gateway.log_text(),
                30,
            )
            after = await echo_after_resubscribe(client, 2)
            return lost, waited_s, after
        finally:
            await client.close()

    lost, waited_s, after = run(scenario())

    assert lost["id"] == 1
    assert lost["error"]["code"] == -32603
    assert "may have run" in lost["error"]["message"]
    assert waited_s < 5
    assert after == {"jsonrpc": "2.0", "id": 2, "result": {"n": 2}}
