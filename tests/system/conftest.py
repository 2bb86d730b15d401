"""Fixtures that run the real services as separate processes."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support import ServiceProcess, free_port, service_env, wait_until


@dataclass
class System:
    """A running orchestrator and gateway sharing one Redis."""

    redis_url: str
    orchestrator_url: str
    gateway_url: str
    orchestrator: ServiceProcess
    gateway: ServiceProcess


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_system(redis_url: str, log_dir: Path, **env: str) -> System:
    orchestrator_port = free_port()
    gateway_port = free_port()
    orchestrator_url = f"http://127.0.0.1:{orchestrator_port}"
    gateway_url = f"http://127.0.0.1:{gateway_port}"
    common = {
        "WORKER_IDLE_TIMEOUT_S": "120",
        "WORKER_HEARTBEAT_INTERVAL_S": "1",
        "WORKER_HEARTBEAT_TTL_S": "5",
        "GATEWAY_RESUME_GRACE_S": "0",
        **env,
    }
    orchestrator = ServiceProcess(
        "orchestrator",
        [sys.executable, "-m", "bellhop_orchestrator.main"],
        service_env(redis_url, PORT=str(orchestrator_port), **common),
        log_dir,
    )
    wait_until(lambda: _healthy(orchestrator_url), 30)
    gateway = ServiceProcess(
        "gateway",
        [sys.executable, "-m", "bellhop_gateway.main"],
        service_env(
            redis_url,
            PORT=str(gateway_port),
            ORCHESTRATOR_URL=orchestrator_url,
            **common,
        ),
        log_dir,
    )
    wait_until(lambda: _healthy(gateway_url), 30)
    return System(redis_url, orchestrator_url, gateway_url, orchestrator, gateway)


@pytest.fixture(scope="module")
def system(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[System]:
    log_dir = tmp_path_factory.mktemp("system-logs")
    running = start_system(redis_url, log_dir)
    yield running
    running.gateway.stop()
    running.orchestrator.stop()
