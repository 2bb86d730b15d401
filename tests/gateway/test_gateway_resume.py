"""Resume within the grace period, on the same gateway or another replica."""

from __future__ import annotations

import asyncio
from typing import Any

import redis
from gateway_client import GatewayClient, Rejected, request, run
from gateway_env import TEST_SETTINGS
from gateway_fakes import KEYS, FakeOrchestrator
from support import wait_until

GRACE_S = float(TEST_SETTINGS["GATEWAY_RESUME_GRACE_S"])


async def started_session(url: str) -> GatewayClient:
    client = await GatewayClient(url).connect()
    await client.wait_ready()
    return client


async def resume(url: str, session_id: str, resume_token: str) -> GatewayClient:
    client = GatewayClient(url)
    await client.connect({"session": session_id, "resume": resume_token})
    return client


async def resume_and_ping(
    first_url: str, second_url: str
) -> tuple[str, dict[str, Any], Any]:
    first = await started_session(first_url)
    session_id, resume_token = first.session_id, first.resume_token
    await first.close()
    second = await resume(second_url, session_id, resume_token)
    try:
        ready = await second.wait_ready()
        answer = await second.rpc(request(1, "whoami"))
        return session_id, ready, answer
    finally:
        await second.close()


def test_resume_on_same_gateway(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    session_id, ready, answer = run(resume_and_ping(gateway.url, gateway.url))

    assert ready["session_id"] == session_id
    assert answer["result"]["session_id"] == session_id
    assert len(orchestrator.calls_for(session_id, "POST")) == 1
    assert orchestrator.calls_for(session_id, "DELETE") == []


def test_resume_on_second_gateway(
    gateway: Any,
    second_gateway: Any,
    orchestrator: FakeOrchestrator,
    redis_client: redis.Redis,
) -> None:
    session_id, ready, answer = run(resume_and_ping(gateway.url, second_gateway.url))

    assert ready["session_id"] == session_id
    assert ready["worker_id"] == orchestrator.workers[session_id].worker_id
    assert answer["result"]["session_id"] == session_id
    assert len(orchestrator.calls_for(session_id, "POST")) == 1
    assert "resumed=True" in second_gateway.log_text()


def test_resumed_session_outlives_old_grace(
    gateway: Any,
    second_gateway: Any,
    orchestrator: FakeOrchestrator,
    redis_client: redis.Redis,
) -> None:
    async def scenario() -> tuple[str, Any]:
        first = await started_session(gateway.url)
        await first.close()
        second = await resume(second_gateway.url, first.session_id, first.resume_token)
        try:
            await second.wait_ready()
            # Outlive the grace the first gateway started at the disconnect.
            await asyncio.sleep(GRACE_S + 2)
            return first.session_id, await second.rpc(request(2, "ping"))
        finally:
            await second.close()

    session_id, answer = run(scenario())

    assert answer["result"]["pong"] is True
    assert orchestrator.calls_for(session_id, "DELETE") == []


def test_resume_takes_over_live_socket(
    gateway: Any,
    second_gateway: Any,
    orchestrator: FakeOrchestrator,
    redis_client: redis.Redis,
) -> None:
    async def scenario() -> tuple[GatewayClient, Any]:
        first = await started_session(gateway.url)
        second = await resume(second_gateway.url, first.session_id, first.resume_token)
        try:
            await first.wait_for(lambda c: c.disconnected.is_set())
            await second.wait_ready()
            return first, await second.rpc(request(3, "whoami"))
        finally:
            await second.close()
            await first.close()

    first, answer = run(scenario())

    assert answer["result"]["session_id"] == first.session_id
    assert orchestrator.calls_for(first.session_id, "DELETE") == []
    assert first.states[-1] == "ended"
    assert first.events[-1]["message"] == (
        "This session was resumed by another connection."
    )


def test_resume_on_same_gateway_ends_old_tab(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[GatewayClient, Any]:
        first = await started_session(gateway.url)
        second = await resume(gateway.url, first.session_id, first.resume_token)
        try:
            await first.wait_for(lambda c: c.disconnected.is_set())
            await second.wait_ready()
            return first, await second.rpc(request(3, "whoami"))
        finally:
            await second.close()
            await first.close()

    first, answer = run(scenario())

    assert answer["result"]["session_id"] == first.session_id
    assert first.states[-1] == "ended"
    assert "resumed by another connection" in first.events[-1]["message"]


def test_wrong_resume_token_rejected(gateway: Any, redis_client: redis.Redis) -> None:
    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        owner = await started_session(gateway.url)
        try:
            reasons = []
            for session_id in (owner.session_id, "x" * 43):
                try:
                    await resume(gateway.url, session_id, "wrong-token")
                except Rejected as exc:
                    reasons.append(exc.data)
            answer = await owner.rpc(request(4, "ping"))
            assert answer["result"]["pong"] is True
            return reasons[0], reasons[1]
        finally:
            await owner.close()

    wrong_token, unknown_session = run(scenario())

    assert wrong_token["code"] == "invalid_resume_token"
    assert unknown_session["code"] == "session_not_found"


def test_session_deleted_after_grace(
    gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> tuple[str, str]:
        client = await started_session(gateway.url)
        await client.close()
        return client.session_id, client.resume_token

    session_id, resume_token = run(scenario())

    wait_until(lambda: orchestrator.calls_for(session_id, "DELETE"), GRACE_S + 15)
    wait_until(lambda: not redis_client.keys(f"{KEYS.session(session_id)}:*"), 10)

    async def late_resume() -> dict[str, Any]:
        try:
            await resume(gateway.url, session_id, resume_token)
        except Rejected as exc:
            return exc.data
        raise AssertionError("a resume after the grace period was accepted")

    assert run(late_resume())["code"] == "session_not_found"


def test_zero_grace_deletes_at_once(
    start_gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    impatient = start_gateway("g-no-grace", GATEWAY_RESUME_GRACE_S="0")

    async def scenario() -> str:
        client = await started_session(impatient.url)
        await client.close()
        return client.session_id

    session_id = run(scenario())

    wait_until(lambda: orchestrator.calls_for(session_id, "DELETE"), 10)


def test_resume_after_gateway_stops(
    start_gateway: Any,
    second_gateway: Any,
    orchestrator: FakeOrchestrator,
    redis_client: redis.Redis,
) -> None:
    doomed = start_gateway("g-doomed", GATEWAY_RESUME_GRACE_S="30")

    async def connect_first() -> GatewayClient:
        return await started_session(doomed.url)

    first = run(connect_first())
    doomed.process.stop()
    assert "gateway g-doomed stopped" in doomed.log_text()

    async def resume_elsewhere() -> Any:
        second = await resume(second_gateway.url, first.session_id, first.resume_token)
        try:
            await second.wait_ready()
            return await second.rpc(request(5, "whoami"))
        finally:
            await second.close()

    answer = run(resume_elsewhere())

    assert answer["result"]["session_id"] == first.session_id
    assert len(orchestrator.calls_for(first.session_id, "POST")) == 1
    assert orchestrator.calls_for(first.session_id, "DELETE") == []
