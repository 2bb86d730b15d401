"""The rpc event: errors the gateway returns itself, id rewriting, batches, timeouts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import redis
from gateway_client import GatewayClient, request, run
from gateway_fakes import KEYS, FakeOrchestrator
from support import wait_until
from websockets.sync.client import connect as ws_connect


async def ready_client(url: str, dataset: str = "flights") -> GatewayClient:
    client = await GatewayClient(url).connect({"dataset": dataset})
    await client.wait_ready()
    return client


def test_not_json_answered_by_gateway(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, Any]:
        client = await ready_client(gateway.url)
        try:
            return client.session_id, await client.rpc('{"jsonrpc": "2.0", "id": 1,')
        finally:
            await client.close()

    session_id, response = run(scenario())

    assert response["error"]["code"] == -32700
    assert response["id"] is None
    assert "not valid JSON" in response["error"]["message"]
    assert orchestrator.workers[session_id].items == []


def test_invalid_envelopes_answered_by_gateway(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    payloads: list[Any] = [
        {"hello": "world"},
        {"jsonrpc": "1.0", "id": 3, "method": "ping"},
        {"jsonrpc": "2.0", "id": 4, "method": ""},
        {"jsonrpc": "2.0", "id": [1], "method": "ping"},
        {"jsonrpc": "2.0", "id": 5, "method": "ping", "params": "x"},
        42,
        "[]",
        [],
    ]

    async def scenario() -> tuple[str, list[Any]]:
        client = await ready_client(gateway.url)
        try:
            return client.session_id, [await client.rpc(p) for p in payloads]
        finally:
            await client.close()

    session_id, responses = run(scenario())

    codes = [response["error"]["code"] for response in responses]
    assert codes == [-32600] * len(payloads)
    assert [response["id"] for response in responses[:5]] == [None, 3, 4, None, 5]
    assert orchestrator.workers[session_id].items == []


def test_batch_of_invalid_requests_gets_array(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, Any]:
        client = await ready_client(gateway.url)
        try:
            return client.session_id, await client.rpc([1, {"id": 2}])
        finally:
            await client.close()

    session_id, response = run(scenario())

    assert isinstance(response, list)
    assert [entry["error"]["code"] for entry in response] == [-32600, -32600]
    assert orchestrator.workers[session_id].items == []


def test_ids_rewritten_and_restored(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    client_ids: list[Any] = [7, "seven", 7.5, None]

    async def scenario() -> tuple[str, list[Any]]:
        client = await ready_client(gateway.url)
        try:
            calls = [
                client.rpc(request(i, "echo", {"n": n}))
                for n, i in enumerate(client_ids)
            ]
            duplicate = client.rpc(request(7, "echo", {"n": "again"}))
            return client.session_id, await asyncio.gather(*calls, duplicate)
        finally:
            await client.close()

    session_id, responses = run(scenario())

    assert [response["id"] for response in responses] == [*client_ids, 7]
    assert [response["result"]["n"] for response in responses] == [0, 1, 2, 3, "again"]
    seen_ids = [item["id"] for item in orchestrator.workers[session_id].items]
    assert len(set(seen_ids)) == len(responses)
    assert all(isinstance(i, str) and i.startswith("g-one:") for i in seen_ids)


def test_batch_keeps_order_and_skips_notifications(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    batch = [
        request("a", "echo", {"n": 1}),
        {"jsonrpc": "2.0", "method": "echo", "params": {"n": "note"}},
        {"jsonrpc": "2.0", "id": "bad"},
        request("b", "nosuchmethod"),
        request("c", "echo", {"n": 3}),
    ]

    async def scenario() -> tuple[str, Any]:
        client = await ready_client(gateway.url)
        try:
            return client.session_id, await client.rpc(batch)
        finally:
            await client.close()

    session_id, response = run(scenario())

    assert [entry["id"] for entry in response] == ["a", "bad", "b", "c"]
    assert response[0]["result"] == {"n": 1}
    assert response[1]["error"]["code"] == -32600
    assert response[2]["error"]["code"] == -32601
    assert response[3]["result"] == {"n": 3}
    queued = orchestrator.workers[session_id].items
    assert len(queued) == 1
    assert [entry.get("method") for entry in queued[0]] == [
        "echo",
        "echo",
        "nosuchmethod",
        "echo",
    ]


def test_notification_only_acked_with_none(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    note = {"jsonrpc": "2.0", "method": "echo", "params": {"n": 1}}

    async def scenario() -> tuple[str, Any, Any]:
        client = await ready_client(gateway.url)
        try:
            single = await client.rpc(note)
            batch = await client.rpc([note, note])
            return client.session_id, single, batch
        finally:
            await client.close()

    session_id, single, batch = run(scenario())

    assert single is None
    assert batch is None
    worker = orchestrator.workers[session_id]
    wait_until(lambda: len(worker.items) == 2, 10)
    assert worker.items[1] == [note, note]


def test_unanswered_request_times_out(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[Any, Any]:
        client = await ready_client(gateway.url)
        try:
            lost = await client.rpc(request(11, "blackhole"), timeout_s=30)
            after = await client.rpc(request(12, "ping"))
            return lost, after
        finally:
            await client.close()

    lost, after = run(scenario())

    assert lost["id"] == 11
    assert lost["error"]["code"] == -32000
    assert "GATEWAY_RPC_TIMEOUT_S" in lost["error"]["message"]
    assert after["result"]["pong"] is True


def test_requests_before_ready_wait_for_load(
    gateway: Any, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[list[str], Any]:
        client = await GatewayClient(gateway.url).connect({"dataset": "slow"})
        try:
            response = await client.rpc(request(1, "ping"))
            return client.states, response
        finally:
            await client.close()

    states_at_answer, response = run(scenario())

    assert response["result"]["pong"] is True
    assert "loading" in states_at_answer
    assert "ready" in states_at_answer


def test_worker_notification_relayed(gateway: Any, redis_client: redis.Redis) -> None:
    async def scenario() -> tuple[Any, list[dict[str, Any]]]:
        client = await ready_client(gateway.url)
        try:
            response = await client.rpc(request(1, "emit_notification"))
            await client.wait_for(lambda c: c.notifications)
            return response, client.notifications
        finally:
            await client.close()

    response, notifications = run(scenario())

    assert response["result"] == {"sent": True}
    assert notifications == [
        {"jsonrpc": "2.0", "method": "custom.note", "params": {"n": 1}}
    ]


def test_nothing_queued_for_rejected_messages(
    gateway: Any, redis_client: redis.Redis
) -> None:
    async def scenario() -> str:
        client = await GatewayClient(gateway.url).connect({"dataset": "stalled"})
        try:
            await client.wait_for(lambda c: "starting" in c.states)
            await client.rpc("not json")
            await client.rpc({"jsonrpc": "2.0"})
            return client.session_id
        finally:
            await client.close()

    session_id = run(scenario())

    assert redis_client.llen(KEYS.queue(session_id)) == 0


def test_requests_queued_in_sent_order(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, list[Any]]:
        client = await GatewayClient(gateway.url).connect({"dataset": "slow"})
        try:
            await client.wait_for(lambda c: c.events)
            # Five requests: the queue cap (GATEWAY_MAX_QUEUE) of the test gateway.
            calls = [client.rpc(request(n, "echo", {"n": n})) for n in range(5)]
            return client.session_id, await asyncio.gather(*calls)
        finally:
            await client.close()

    session_id, responses = run(scenario())

    assert [response["result"]["n"] for response in responses] == list(range(5))
    queued = orchestrator.workers[session_id].items
    assert [item["params"]["n"] for item in queued] == list(range(5))


def test_deep_nesting_as_text_is_parse_error(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    deep = '{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": ' + (
        "[" * 1500 + "]" * 1500 + "}"
    )

    async def scenario() -> tuple[str, Any, Any]:
        client = await ready_client(gateway.url)
        try:
            response = await client.rpc(deep)
            after = await client.rpc(request(2, "ping"))
            return client.session_id, response, after
        finally:
            await client.close()

    session_id, response, after = run(scenario())

    assert response["error"]["code"] == -32700
    assert "1,000 levels deep" in response["error"]["message"]
    assert after["result"]["pong"] is True
    assert [item["method"] for item in orchestrator.workers[session_id].items] == [
        "ping"
    ]


# orjson decodes up to 1,024 levels, so at 1,010 the handler gets the request
# object and returns its id. At 5,000 it gets only the marker.
@pytest.mark.parametrize(("depth", "expected_id"), [(1010, 7), (5000, None)])
def test_deep_nesting_as_object_is_acknowledged(
    gateway: Any,
    orchestrator: FakeOrchestrator,
    redis_client: redis.Redis,
    depth: int,
    expected_id: int | None,
) -> None:
    # No Socket.IO client encodes a payload this deep, so the frames go out
    # by hand: engine.io open, Socket.IO connect, then events with ack ids.
    url = gateway.url.replace("http://", "ws://") + (
        "/socket.io/?EIO=4&transport=websocket"
    )
    deep = (
        '{"jsonrpc":"2.0","id":7,"method":"filter","params":{"where":'
        + "[" * depth
        + "]" * depth
        + "}}"
    )

    def acknowledgement(socket: Any, ack_id: int) -> Any:
        while True:
            frame = socket.recv(timeout=10)
            if frame == "2":
                socket.send("3")
            elif frame.startswith(f"43{ack_id}["):
                return json.loads(frame[len(f"43{ack_id}") :])[0]

    with ws_connect(url) as socket:
        socket.recv(timeout=10)
        socket.send('40{"dataset":"flights"}')
        socket.send(f'421["rpc",{deep}]')
        response = acknowledgement(socket, 1)
        socket.send('422["rpc",{"jsonrpc":"2.0","id":8,"method":"ping"}]')
        connected = acknowledgement(socket, 2)

    assert response["error"]["code"] == -32700
    assert response["id"] == expected_id
    assert "1,000 levels deep" in response["error"]["message"]
    assert connected["id"] == 8
