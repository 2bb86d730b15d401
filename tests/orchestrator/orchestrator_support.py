"""Helpers for the orchestrator tests: run it (and the fake Heroku API) as processes."""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from bellhop_orchestrator.providers import procfs
from bellhop_orchestrator.providers.local import session_from_argv
from support import ServiceProcess, free_port, service_env, wait_until

HERE = Path(__file__).resolve().parent
STANDIN_WORKER = HERE / "standin_bellhop_worker.py"
SLEEP_WORKER = HERE / "bellhop-worker-sleep.sh"
REAL_WORKER_COMMAND = f"{sys.executable} -m bellhop_worker.main"
STANDIN_WORKER_COMMAND = f"{sys.executable} {STANDIN_WORKER}"
SLEEP_WORKER_COMMAND = f"sh {SLEEP_WORKER}"

# Short intervals keep the tests quick; the heartbeat TTL stays well above
# the interval so a loaded machine does not expire a healthy worker.
FAST_ENV = {
    "REAPER_INTERVAL_S": "0.5",
    "RECONCILE_INTERVAL_S": "2",
    "WORKER_HEARTBEAT_INTERVAL_S": "0.5",
    "WORKER_HEARTBEAT_TTL_S": "3",
    "WORKER_HEARTBEAT_GRACE_S": "0",
    "WORKER_START_TIMEOUT_S": "60",
    "WORKER_IDLE_TIMEOUT_S": "600",
    "GATEWAY_GRACE_S": "600",
    "LOCAL_STOP_TIMEOUT_S": "10",
    "LOG_LEVEL": "DEBUG",
}


@dataclass
class Orchestrator:
    """An orchestrator process and an HTTP client for its API."""

    url: str
    process: ServiceProcess
    token: str | None = None

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**self.headers(), **kwargs.pop("headers", {})}
        return httpx.request(
            method, f"{self.url}{path}", headers=headers, timeout=60.0, **kwargs
        )

    def create(self, **body: Any) -> httpx.Response:
        return self.request("POST", "/v1/sessions", json=body)

    def record(self, session_id: str) -> dict[str, Any] | None:
        response = self.request("GET", f"/v1/sessions/{session_id}")
        return response.json() if response.status_code == 200 else None

    def stop(self) -> None:
        self.process.stop(timeout_s=20.0)


OrchestratorFactory = Callable[..., Orchestrator]


def is_healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def start_orchestrator(
    redis_url: str, log_dir: Path, name: str = "orchestrator", **env: str
) -> Orchestrator:
    port = free_port()
    settings = {"LOCAL_WORKER_COMMAND": REAL_WORKER_COMMAND, **FAST_ENV, **env}
    process = ServiceProcess(
        name,
        [sys.executable, "-m", "bellhop_orchestrator.main"],
        service_env(redis_url, PORT=str(port), **settings),
        log_dir,
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: is_healthy(url) or process.proc.poll() is not None, 30)
    assert process.proc.poll() is None, process.log_text()
    return Orchestrator(url, process, env.get("ORCHESTRATOR_TOKEN"))


def local_worker_pids(redis_url: str, session_id: str | None = None) -> list[int]:
    """Return the pids of running local-provider workers that use redis_url."""
    pids = []
    for pid in procfs.iter_pids():
        stat = procfs.read_stat(pid)
        if stat is None or not stat.is_running:
            continue
        environ = procfs.read_environ(pid)
        if environ.get("REDIS_URL") != redis_url or "WORKER_ID" not in environ:
            continue
        argv = procfs.read_cmdline(pid)
        found = session_from_argv(argv)
        if found is not None and session_id in (None, found):
            pids.append(pid)
    return pids


def kill_workers(redis_url: str) -> None:
    """SIGKILL every worker a test left behind on this Redis."""
    for pid in local_worker_pids(redis_url):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def heartbeat(redis_client: Any, session_id: str) -> dict[str, Any] | None:
    raw = redis_client.get(f"bellhop:session:{session_id}:worker")
    return json.loads(raw) if raw else None


def ref_pid(record: dict[str, Any]) -> int:
    """Return the pid inside a local provider_ref `pid:<pid>:<ticks>`."""
    return int(str(record["provider_ref"]).split(":")[1])
