"""Gateway processes wired to a fake orchestrator and stand-in workers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from gateway_env import GATEWAY_SECRET, ORCHESTRATOR_TOKEN, TEST_SETTINGS
from gateway_fakes import FakeOrchestrator
from support import ServiceProcess, free_port, service_env, wait_until


@dataclass
class RunningGateway:
    url: str
    process: ServiceProcess

    def log_text(self) -> str:
        return self.process.log_text()


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="session")
def orchestrator(redis_url: str) -> Iterator[FakeOrchestrator]:
    fake = FakeOrchestrator(redis_url, ORCHESTRATOR_TOKEN)
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def stop_stand_in_workers(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop each test's stand-in workers, whose sessions the next flush forgets."""
    yield
    if "orchestrator" in request.fixturenames:
        request.getfixturevalue("orchestrator").stop_workers()


@pytest.fixture(scope="session")
def start_gateway(
    redis_url: str,
    orchestrator: FakeOrchestrator,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningGateway]]:
    """Return a function that starts a gateway process; all stop at the end."""
    started: list[RunningGateway] = []
    log_dir: Path = tmp_path_factory.mktemp("gateway-logs")

    def start(name: str, **overrides: str) -> RunningGateway:
        port = free_port()
        settings = {
            "PORT": str(port),
            "GATEWAY_ID": name,
            "ORCHESTRATOR_URL": orchestrator.url,
            "ORCHESTRATOR_TOKEN": ORCHESTRATOR_TOKEN,
            **TEST_SETTINGS,
            **overrides,
        }
        env = service_env(redis_url, **settings)
        if "GATEWAY_SECRET" not in overrides:
            # An inherited secret would make every test gateway a secured one.
            env.pop("GATEWAY_SECRET", None)
        argv = [sys.executable, "-m", "bellhop_gateway.main"]
        process = ServiceProcess(name, argv, env, log_dir)
        running = RunningGateway(f"http://127.0.0.1:{port}", process)
        started.append(running)
        wait_until(lambda: _healthy(running.url) or process.proc.poll() is not None, 30)
        assert process.proc.poll() is None, process.log_text()
        return running

    yield start
    for running in started:
        running.process.stop()


@pytest.fixture(scope="session")
def gateway(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return start_gateway("g-one")


@pytest.fixture(scope="session")
def second_gateway(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return start_gateway("g-two")


@pytest.fixture(scope="session")
def secured_gateway(start_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return start_gateway("g-secured", GATEWAY_SECRET=GATEWAY_SECRET)
