"""Start the real services as separate processes for the system tests.

This lives outside conftest.py: several test folders have a conftest
module, so `from conftest import ...` could load another folder's one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
from heroku_support import FakeHeroku, heroku_env, start_fake_heroku
from support import ServiceProcess, free_port, service_env, wait_until


@dataclass
class System:
    """A running orchestrator and gateway sharing one Redis."""

    redis_url: str
    orchestrator_url: str
    gateway_url: str
    orchestrator: ServiceProcess
    gateway: ServiceProcess
    provider: str = "local"
    fake_heroku: FakeHeroku | None = None
    orchestrator_token: str | None = None

    def stop(self) -> None:
        """End the sessions still open, then stop the services.

        A stopped orchestrator leaves its workers running for the next one
        to adopt, so a session left open would outlive the test.
        """
        self.end_open_sessions()
        self.gateway.stop()
        self.orchestrator.stop()
        if self.fake_heroku is not None:
            self.fake_heroku.process.stop()

    def end_open_sessions(self) -> None:
        token = self.orchestrator_token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        sessions_url = f"{self.orchestrator_url}/v1/sessions"
        try:
            listing = httpx.get(sessions_url, headers=headers, timeout=10)
            listing.raise_for_status()
            for record in listing.json():
                if record["state"] in ("starting", "running"):
                    url = f"{sessions_url}/{record['session_id']}"
                    httpx.delete(url, headers=headers, timeout=30)
        except httpx.HTTPError:
            pass  # An orchestrator that died is the failing test's to report.


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_system(
    redis_url: str, log_dir: Path, provider: str = "local", **env: str
) -> System:
    """Start the orchestrator and the gateway; with provider "heroku", workers
    run as dynos of the fake Platform API."""
    fake_heroku = None
    if provider == "heroku":
        fake_heroku = start_fake_heroku(redis_url, log_dir, sleep_workers=False)
        env = {**heroku_env(fake_heroku), **env}
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
    return System(
        redis_url,
        orchestrator_url,
        gateway_url,
        orchestrator,
        gateway,
        provider,
        fake_heroku,
        common.get("ORCHESTRATOR_TOKEN"),
    )
