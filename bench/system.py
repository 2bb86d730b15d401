"""The whole Bellhop system for a benchmark: orchestrator and gateway processes.

Both listen on free loopback ports and share the benchmark's private Redis.
Workers are started by the orchestrator's local provider. On exit every
session is deleted through the orchestrator, which stops its worker, and any
worker still running after that is stopped by its pid.
"""

from __future__ import annotations

import json
import subprocess
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
    """A running orchestrator, one or more gateway replicas and their Redis."""

    redis: RedisServer
    orchestrator_url: str
    gateway_urls: list[str]
    orchestrator_pid: int
    gateway_pids: list[int]
    keys: Keys

    @property
    def gateway_url(self) -> str:
        return self.gateway_urls[0]

    @property
    def gateway_pid(self) -> int:
        return self.gateway_pids[0]

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
        """DELETE every live session in the orchestrator, which stops its worker."""
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
    processes: Processes, redis: RedisServer, gateways: int = 1, **settings: str
) -> Iterator[BellhopSystem]:
    """Start the orchestrator and the gateways; stop them and their workers after."""
    env = {**BASE_SETTINGS, **settings}
    orchestrator_port = free_port()
    orchestrator_url = f"http://127.0.0.1:{orchestrator_port}"
    orchestrator = processes.start(
        "orchestrator",
        [sys.executable, "-m", "bellhop_orchestrator.main"],
        bench_env(REDIS_URL=redis.url, PORT=str(orchestrator_port), **env),
    )
    wait_until(lambda: _is_healthy(orchestrator_url), 60, "the orchestrator")
    replicas = [
        _start_gateway(processes, redis, orchestrator_url, number, env)
        for number in range(gateways)
    ]
    urls = [url for url, _ in replicas]
    for url in urls:
        wait_until(lambda url=url: _is_healthy(url), 60, f"the gateway at {url}")
    pids = [proc.pid for _, proc in replicas]
    system = BellhopSystem(
        redis, orchestrator_url, urls, orchestrator.pid, pids, Keys()
    )
    try:
        yield system
    finally:
        worker_pids = set(system.worker_pids().values())
        servers = [proc for _, proc in replicas] + [orchestrator]
        _stop_system(processes, system, worker_pids, servers)


def _start_gateway(
    processes: Processes,
    redis: RedisServer,
    orchestrator_url: str,
    number: int,
    env: dict[str, str],
) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    proc = processes.start(
        f"gateway-{number}",
        [sys.executable, "-m", "bellhop_gateway.main"],
        bench_env(
            REDIS_URL=redis.url,
            PORT=str(port),
            ORCHESTRATOR_URL=orchestrator_url,
            **env,
        ),
    )
    return f"http://127.0.0.1:{port}", proc


def _stop_system(
    processes: Processes,
    system: BellhopSystem,
    worker_pids: set[int],
    servers: list[subprocess.Popen[bytes]],
) -> None:
    try:
        system.delete_sessions()
    except httpx.HTTPError as exc:
        log(f"could not delete the sessions through the orchestrator: {exc!r}")
    for server in servers:
        processes.stop(server)
    terminate_pids(sorted(worker_pids))
