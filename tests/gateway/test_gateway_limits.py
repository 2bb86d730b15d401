"""Limits: message size, rate, queue length; and session isolation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from bellhop_gateway.calls import _rejection
from bellhop_gateway.limits import Admission, AdmissionResult, Limits
from bellhop_gateway.rpc import IdRewriter, prepare
from gateway_client import GatewayClient, request, run
from gateway_fakes import KEYS, FakeOrchestrator
from support import wait_until

MESSAGE_TOO_LARGE = -32003
RATE_LIMITED = -32001
QUEUE_FULL = -32002
# The test gateways' GATEWAY_RATE_LIMIT, in requests per second.
RATE_PER_S = 5


async def ready_client(url: str, dataset: str = "flights") -> GatewayClient:
    client = await GatewayClient(url).connect({"dataset": dataset})
    await client.wait_ready()
    return client


def test_oversize_message_rejected(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    big = request(1, "echo", {"blob": "x" * 5000})

    async def scenario() -> tuple[str, Any, Any, Any]:
        client = await ready_client(gateway.url)
        try:
            as_object = await client.rpc(big)
            as_text = await client.rpc("[" + '"y",' * 2000 + '"y"]')
            after = await client.rpc(request(2, "ping"))
            return client.session_id, as_object, as_text, after
        finally:
            await client.close()

    session_id, as_object, as_text, after = run(scenario())

    assert as_object["error"]["code"] == MESSAGE_TOO_LARGE
    assert as_object["id"] == 1
    assert "GATEWAY_MAX_MESSAGE_BYTES" in as_object["error"]["message"]
    assert as_text["error"]["code"] == MESSAGE_TOO_LARGE
    assert as_text["id"] is None
    assert after["result"]["pong"] is True
    assert [item["method"] for item in orchestrator.workers[session_id].items] == [
        "ping"
    ]


def test_flood_is_rate_limited(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, list[Any]]:
        client = await ready_client(gateway.url)
        try:
            calls = [client.rpc(request(n, "ping")) for n in range(40)]
            return client.session_id, await asyncio.gather(*calls)
        finally:
            await client.close()

    session_id, responses = run(scenario())

    answered = [r for r in responses if "result" in r]
    limited = [r for r in responses if r.get("error", {}).get("code") == RATE_LIMITED]
    # The test gateways' queue cap (5) is below the burst (10), so a fake
    # worker that drains slower than the pushes arrive can fill it first.
    full = [r for r in responses if r.get("error", {}).get("code") == QUEUE_FULL]
    others = [r for r in responses if r not in answered + limited + full]
    assert others == []
    assert limited, "40 requests at once must exceed a burst of 10"
    assert len(answered) + len(full) >= 10
    assert "retry in" in limited[0]["error"]["message"]
    for response in limited:
        retry_after_s = response["error"]["data"]["retry_after_s"]
        assert isinstance(retry_after_s, float)
        assert 0 < retry_after_s <= 1 / RATE_PER_S + 0.01
        assert f"retry in {retry_after_s:.2f} s." in response["error"]["message"]
    worker = orchestrator.workers[session_id]
    wait_until(lambda: len(worker.items) >= len(answered), 10)
    assert len(worker.items) == len(answered)


def test_batch_larger_than_burst_rejected(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    batch = [request(n, "ping") for n in range(11)]

    async def scenario() -> tuple[str, Any]:
        client = await ready_client(gateway.url)
        try:
            return client.session_id, await client.rpc(batch)
        finally:
            await client.close()

    session_id, response = run(scenario())

    assert [entry["error"]["code"] for entry in response] == [RATE_LIMITED] * 11
    assert "split the batch" in response[0]["error"]["message"]
    assert all("data" not in entry["error"] for entry in response)
    assert orchestrator.workers[session_id].items == []


def test_retry_after_wait_is_enough(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    batch = [request(n, "ping") for n in range(5)]

    async def scenario() -> tuple[list[Any], float, Any]:
        client = await ready_client(gateway.url)
        try:
            first_batches = [await client.rpc(batch) for _ in range(3)]
            retry_after_s = first_batches[-1][0]["error"]["data"]["retry_after_s"]
            await asyncio.sleep(retry_after_s)
            return first_batches, retry_after_s, await client.rpc(batch)
        finally:
            await client.close()

    first_batches, retry_after_s, retried = run(scenario())

    assert all("result" in entry for entry in first_batches[0])
    assert all("result" in entry for entry in first_batches[1])
    assert [entry["error"]["code"] for entry in first_batches[2]] == [RATE_LIMITED] * 5
    # Two batches of 5 empty the burst of 10, so the third waits for up to 5
    # tokens, which take 1 s at 5 tokens/s.
    assert 0 < retry_after_s <= 5 / RATE_PER_S + 0.01
    assert all("result" in entry for entry in retried)


@pytest.mark.parametrize(
    ("wait_s", "expected_s"), [(0.001, 0.01), (0.2, 0.2), (0.2031, 0.21)]
)
def test_rate_limit_wait_rounds_up(wait_s: float, expected_s: float) -> None:
    limits = Limits(max_message_bytes=4096, rate_per_s=50, burst=100, max_queue=5)
    link = SimpleNamespace(
        ctx=SimpleNamespace(admitter=SimpleNamespace(limits=limits)), label="unit"
    )
    prepared = prepare(
        [request(1, "ping"), {"id": 2}, {"jsonrpc": "2.0", "method": "note"}],
        IdRewriter("g-unit"),
    )

    ack = _rejection(link, prepared, AdmissionResult(Admission.RATE_LIMITED, wait_s))

    assert len(ack) == 2
    assert ack[0]["error"]["code"] == RATE_LIMITED
    assert ack[0]["error"]["data"] == {"retry_after_s": expected_s}
    assert ack[0]["error"]["message"] == (
        "Rate limited: over 50 requests/s with a burst of 100; "
        f"retry in {expected_s:.2f} s."
    )
    assert ack[1]["error"]["code"] == -32600
    assert "data" not in ack[1]["error"]


def test_queue_cap_leaves_queue_untouched(
    gateway: Any, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, list[Any], Any, int]:
        client = await GatewayClient(gateway.url).connect({"dataset": "stalled"})
        try:
            await client.wait_for(lambda c: "starting" in c.states)
            queue = KEYS.queue(client.session_id)
            waiting = [
                asyncio.create_task(client.rpc(request(n, "ping"))) for n in range(5)
            ]
            while redis_client.llen(queue) < 5:
                await asyncio.sleep(0.05)
            over = await client.rpc(request(99, "ping"))
            length = redis_client.llen(queue)
            return client.session_id, await asyncio.gather(*waiting), over, length
        finally:
            await client.close()

    session_id, waited, over, length = run(scenario())

    assert over["error"]["code"] == QUEUE_FULL
    assert over["id"] == 99
    assert "GATEWAY_MAX_QUEUE" in over["error"]["message"]
    assert length == 5
    assert all(response["error"]["code"] == -32000 for response in waited)


def test_payload_cannot_address_other_session(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, str, list[Any]]:
        alice = await ready_client(gateway.url)
        bob = await ready_client(gateway.url)
        try:
            target = bob.session_id
            attempts = [
                {**request(1, "whoami"), "session": target, "session_id": target},
                request(2, "whoami", {"session_id": target}),
                [{**request(3, "whoami"), "session": target}],
                {**request(4, "whoami"), "to": KEYS.queue(target)},
            ]
            answers = [await alice.rpc(attempt) for attempt in attempts]
            return alice.session_id, target, answers
        finally:
            await alice.close()
            await bob.close()

    alice_id, bob_id, answers = run(scenario())

    answers = [a[0] if isinstance(a, list) else a for a in answers]
    assert [a["result"]["session_id"] for a in answers] == [alice_id] * 4
    assert orchestrator.workers[bob_id].items == []
    assert len(orchestrator.workers[alice_id].items) == 4
