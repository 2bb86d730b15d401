"""A gateway killed with SIGKILL leaves no worker running past the grace."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import redis
from client import SessionClient
from support import pid_alive, wait_until
from system_support import start_system

GATEWAY_GRACE_S = 4.0
CLIENT_TTL_S = 3.0
REAPER_INTERVAL_S = 1.0


def test_killed_gateway_sessions_end(redis_url: str, tmp_path: Path) -> None:
    system = start_system(
        redis_url,
        tmp_path,
        GATEWAY_GRACE_S=str(GATEWAY_GRACE_S),
        GATEWAY_CLIENT_TTL_S=str(CLIENT_TTL_S),
        GATEWAY_CLIENT_HEARTBEAT_S="1",
        REAPER_INTERVAL_S=str(REAPER_INTERVAL_S),
    )
    store = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        clients = [SessionClient(system.gateway_url) for _ in range(2)]
        for client in clients:
            client.wait_ready()
        session_ids = [client.session_id for client in clients]
        pids = [worker_pid(store, session_id) for session_id in session_ids]

        system.gateway.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        for pid in pids:
            wait_until(lambda pid=pid: not pid_alive(pid), 60)
        took_s = time.monotonic() - killed_at
        records = [ended_record(store, session_id) for session_id in session_ids]
    finally:
        system.stop()

    # The client key outlives the gateway by its TTL, and then the reaper
    # waits out the grace. The extra 30 s covers reaper rounds on a loaded
    # machine.
    assert took_s < CLIENT_TTL_S + GATEWAY_GRACE_S + 30
    for record in records:
        assert record["state"] == "ended"
        assert "gateway is gone" in record["ended_reason"]
    log = system.orchestrator.log_text()
    for session_id in session_ids:
        assert f"session {session_id} ending reason=client_gone" in log


def worker_pid(store: redis.Redis, session_id: str) -> int:
    heartbeat = wait_until(
        lambda: store.get(f"bellhop:session:{session_id}:worker"), 30
    )
    return int(json.loads(str(heartbeat))["pid"])


def ended_record(store: redis.Redis, session_id: str) -> dict[str, str]:
    def read() -> dict[str, str] | None:
        record = json.loads(store.hget("bellhop:sessions", session_id) or "{}")
        return record if record.get("state") == "ended" else None

    return dict(wait_until(read, 30))  # type: ignore[call-overload]
