"""The whole Bellhop system for a benchmark: orchestrator and gateway processes.

Both listen on free loopback ports and share the benchmark's private Redis.
Workers are started by the orchestrator's local provider. On exit every
session is deleted through the orchestrator, which stops its worker, and any
worker still running after that is stopped by its pid.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from bellhop_shared.keys import Keys
from harness import (
    Processes,
    RedisServer,
    bench_env,
    free_port,
    log,
    terminate_pids,
    wait_until,
)

# Settings every benchmark system runs with; a benchmark may override them.
BASE_SETTINGS = {
    "GATEWAY_HOST": "127.0.0.1",
    "HOST": "127.0.0.1",
    "GATEWAY_RESUME_GRACE_S": "0",
    "WORKER_IDLE_TIMEOUT_S": "300",
    # A hundred workers importing numpy at once on two cores take minutes.
    "WORKER_START_TIMEOUT_S": "900",
    "LOG_LEVEL": "INFO",
}


@dataclass
class BellhopSystem:
    """A running orchestrator and gateway and the Redis they share."""

    redis: RedisServer
    orchestrator_url: str
    gateway_url: str
    orchestrator_pid: int
    gateway_pid: int
    keys: Keys

    def worker_pids(self) -> dict[str, int]:
        """Return session id -> worker pid, read from the worker heartbeat keys."""
        client = self.redis.client()
        try:
            found: dict[str, int] = {}
            for key in client.scan_iter(match=self.keys.worker("*"), count=500):
                text = client.get(key)
                if text:
                    heartbeat = json.loads(text)
                    found[heartbeat["session_id"]] = int(heartbeat["pid"])
            return found
        finally:
            client.close()

    def delete_sessions(self) -> None:
        """DELETE every session the orchestrator knows, stopping their workers."""
        with httpx.Client(base_url=self.orchestrator_url, timeout=60.0) as client:
            response = client.get("/v1/sessions")
            response.raise_for_status()
            body = response.json()
            records = body if isinstance(body, list) else body.get("sessions", [])
            for record in records:
                if record.get("state") in {"starting", "running"}:
                    client.delete(f"/v1/sessions/{record['session_id']}")


def _is_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def bellhop_system(
    processes: Processes, redis: RedisServer, **settings: str
) -> Iterator[BellhopSystem]:
    """Start the orchestrator and the gateway; stop them and their workers after."""
    env = {**BASE_SETTINGS, **settings}
    orchestrator_port, gateway_port = free_port(), free_port()
    orchestrator_url = f"http://127.0.0.1:{orchestrator_port}"
    orchestrator = processes.start(
        "orchestrator",
        [sys.executable, "-m", "bellhop_orchestrator.main"],
        bench_env(REDIS_URL=redis.url, PORT=str(orchestrator_port), **env),
    )
    wait_until(lambda: _is_healthy(orchestrator_url), 60, "the orchestrator")
    gateway = processes.start(
        "gateway",
        [sys.executable, "-m", "bellhop_gateway.main"],
        bench_env(
            REDIS_URL=redis.url,
            PORT=str(gateway_port),
            ORCHESTRATOR_URL=orchestrator_url,
            **env,
        ),
    )
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    wait_until(lambda: _is_healthy(gateway_url), 60, "the gateway")
    system = BellhopSystem(
        redis, orchestrator_url, gateway_url, orchestrator.pid, gateway.pid, Keys()
    )
    seen_pids: set[int] = set()
    try:
        yield system
    finally:
        seen_pids.update(system.worker_pids().values())
        _stop_system(processes, system, seen_pids, [gateway, orchestrator])


def _stop_system(
    processes: Processes,
    system: BellhopSystem,
    worker_pids: set[int],
    servers: list,
) -> None:
    try:
        system.delete_sessions()
    except httpx.HTTPError as exc:
        log(f"could not delete the sessions through the orchestrator: {exc!r}")
    for server in servers:
        processes.stop(server)
    terminate_pids(sorted(worker_pids))
