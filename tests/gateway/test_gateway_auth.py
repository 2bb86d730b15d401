"""Signed tokens: a gateway with GATEWAY_SECRET rejects bad ones with a reason."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import jwt
import pytest
import redis
import socketio
from gateway_client import GatewayClient, Rejected, run
from gateway_env import GATEWAY_SECRET
from gateway_fakes import FakeOrchestrator


def token(
    subject: str | None = "alice", secret: str = GATEWAY_SECRET, **claims: Any
) -> str:
    if subject is not None:
        claims["sub"] = subject
    return jwt.encode(claims, secret, algorithm="HS256")


async def rejection(url: str, auth: dict[str, Any]) -> dict[str, Any]:
    """Connect with auth and return the gateway's reason for refusing it."""
    client = GatewayClient(url)
    try:
        await client.connect(auth)
    except Rejected as exc:
        data: dict[str, Any] = exc.data
        return data
    await client.close()
    raise AssertionError(f"the connection with auth keys {sorted(auth)} was accepted")


@pytest.mark.parametrize(
    ("auth", "code"),
    [
        ({"dataset": "flights"}, "token_required"),
        (
            {"token": token(secret="another-secret-that-is-32-bytes-long")},
            "invalid_token",
        ),
        ({"token": token(exp=int(time.time()) - 60)}, "token_expired"),
        ({"token": token(subject=None)}, "invalid_token"),
        ({"token": "not.a.jwt"}, "invalid_token"),
        ({"token": 42}, "invalid_auth"),
    ],
)
def test_bad_token_rejected_with_reason(
    secured_gateway: Any, redis_client: redis.Redis, auth: dict[str, Any], code: str
) -> None:
    reason = run(rejection(secured_gateway.url, auth))

    assert reason["code"] == code
    assert reason["message"]
    assert str(auth.get("token", "-")) not in reason["message"]


def test_token_user_reaches_orchestrator(
    secured_gateway: Any, orchestrator: FakeOrchestrator, redis_client: redis.Redis
) -> None:
    async def scenario() -> str:
        client = await GatewayClient(secured_gateway.url).connect(
            {"dataset": "flights", "token": token("alice")}
        )
        try:
            await client.wait_ready()
            return client.session_id
        finally:
            await client.close()

    session_id = run(scenario())

    [post] = orchestrator.calls_for(session_id, "POST")
    assert post.body["user"] == "alice"
    log = secured_gateway.log_text()
    assert f"client connected session={session_id} user=alice" in log
    assert token("alice") not in log


def test_resume_by_other_user_rejected(
    secured_gateway: Any, redis_client: redis.Redis
) -> None:
    async def scenario() -> dict[str, Any]:
        alice = await GatewayClient(secured_gateway.url).connect(
            {"dataset": "flights", "token": token("alice")}
        )
        try:
            await alice.wait_ready()
            auth = {
                "session": alice.session_id,
                "resume": alice.resume_token,
                "token": token("mallory"),
            }
            return await rejection(secured_gateway.url, auth)
        finally:
            await alice.close()

    reason = run(scenario())

    assert reason["code"] == "session_forbidden"


def test_anonymous_gateway_warns_at_start(gateway: Any) -> None:
    assert (
        "accepts anonymous sessions because GATEWAY_SECRET is unset"
        in gateway.log_text()
    )


async def connects_with_origin(url: str, origin: str) -> bool:
    async with aiohttp.ClientSession() as http:
        client = socketio.AsyncClient(reconnection=False, http_session=http)
        try:
            await client.connect(
                url,
                headers={"Origin": origin},
                transports=["websocket"],
                wait_timeout=10,
            )
        except socketio.exceptions.ConnectionError:
            return False
        await client.disconnect()
        return True


def test_foreign_origin_rejected(gateway: Any, redis_client: redis.Redis) -> None:
    assert run(connects_with_origin(gateway.url, gateway.url)) is True
    assert run(connects_with_origin(gateway.url, "http://elsewhere.example")) is False
