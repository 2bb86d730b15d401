"""Fixtures that run orchestrators as real processes against the test Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from orchestrator_support import (
    Orchestrator,
    OrchestratorFactory,
    kill_workers,
    start_orchestrator,
)


@pytest.fixture
def orchestrator_factory(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[OrchestratorFactory]:
    """Start orchestrators on demand; stop them and their workers afterwards."""
    started: list[Orchestrator] = []

    def start(name: str = "orchestrator", **env: str) -> Orchestrator:
        orchestrator = start_orchestrator(redis_url, tmp_path, name, **env)
        started.append(orchestrator)
        return orchestrator

    yield start
    for orchestrator in started:
        orchestrator.stop()
        # Shown by pytest only when the test failed.
        print(f"--- {orchestrator.process.log_path}")
        print(orchestrator.process.log_text()[-6000:])
    kill_workers(redis_url)


@pytest.fixture(scope="module")
def shared_orchestrator(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orchestrator]:
    orchestrator = start_orchestrator(redis_url, tmp_path_factory.mktemp("shared"))
    yield orchestrator
    orchestrator.stop()
    kill_workers(redis_url)


@pytest.fixture
def orchestrator(
    shared_orchestrator: Orchestrator, redis_client: redis.Redis
) -> Orchestrator:
    """The module's default orchestrator, on a Redis emptied for this test.

    Workers of earlier tests lose their records with the flush, so the
    orchestrator's reconciliation stops them as orphans.
    """
    return shared_orchestrator
