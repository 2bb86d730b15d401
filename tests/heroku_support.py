"""Run the fake Heroku Platform API as a process and talk to it in tests."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from support import REPO, ServiceProcess, free_port, service_env, wait_until

FAKE_TOKEN = "fake-token-for-tests"
FAKE_APP = "bellhop-test"
ACCEPT = "application/vnd.heroku+json; version=3"
# A stand-in for bellhop-worker that only sleeps, for tests of dyno bookkeeping.
SLEEP_WORKER = REPO / "tests" / "orchestrator" / "bellhop-worker-sleep.sh"


@dataclass
class FakeHeroku:
    url: str
    process: ServiceProcess

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Accept": ACCEPT, "Authorization": f"Bearer {FAKE_TOKEN}"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.request(
            method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs
        )

    def admin(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method, f"{self.url}/_fake/{path}", timeout=30, **kwargs
        )
        response.raise_for_status()
        return response.json()

    def dynos(self) -> list[dict[str, Any]]:
        return list(self.admin("GET", "dynos"))

    def add_fault(self, **fault: Any) -> None:
        self.admin("POST", "faults", json=fault)

    def configure(self, **values: Any) -> None:
        self.admin("POST", "config", json=values)

    def stats(self) -> dict[str, Any]:
        return dict(self.admin("GET", "stats"))

    def wait_empty(self, timeout_s: float = 20) -> None:
        wait_until(lambda: self.dynos() == [], timeout_s)


def _is_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/_fake/stats", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def start_fake_heroku(
    redis_url: str, log_dir: Path, sleep_workers: bool, **settings: str
) -> FakeHeroku:
    """Start the fake; with sleep_workers, `bellhop-worker` is a sleeping stub."""
    port = free_port()
    config_vars = {
        "REDIS_URL": redis_url,
        "WORKER_HEARTBEAT_INTERVAL_S": "0.5",
        "WORKER_HEARTBEAT_TTL_S": "3",
    }
    env = service_env(
        redis_url,
        FAKE_HEROKU_TOKEN=FAKE_TOKEN,
        FAKE_HEROKU_APPS=FAKE_APP,
        FAKE_HEROKU_CONFIG_VARS=json.dumps(config_vars),
        FAKE_HEROKU_STOP_GRACE_S="2",
        FAKE_HEROKU_BOOT_S="0.2",
        FAKE_HEROKU_LOG_DIR=str(log_dir),
        **settings,
    )
    if sleep_workers:
        stub_dir = log_dir / "stub-bin"
        stub_dir.mkdir(exist_ok=True)
        (stub_dir / "bellhop-worker").symlink_to(SLEEP_WORKER)
        env["PATH"] = f"{stub_dir}:{env['PATH']}"
    argv = [sys.executable, "-m", "tests.fakes.heroku_api", "--port", str(port)]
    process = ServiceProcess("fake-heroku", argv, env, log_dir)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _is_up(url), 30)
    return FakeHeroku(url, process)


def heroku_env(fake: FakeHeroku, **extra: str) -> dict[str, str]:
    """Return orchestrator settings that point the Heroku provider at the fake."""
    return {
        "PROVIDER": "heroku",
        "HEROKU_API_URL": fake.url,
        "HEROKU_API_TOKEN": FAKE_TOKEN,
        "HEROKU_APP": FAKE_APP,
        "HEROKU_FIRST_BACKOFF_S": "0.05",
        "HEROKU_MAX_BACKOFF_S": "5",
        **extra,
    }
