"""Fixtures that run the real services as separate processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from system_support import System, start_system


@pytest.fixture(scope="module", params=["local", "heroku"])
def system(
    request: pytest.FixtureRequest,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    """The whole system, once with local workers and once with fake Heroku dynos."""
    log_dir = tmp_path_factory.mktemp(f"system-{request.param}")
    running = start_system(redis_url, log_dir, provider=request.param)
    yield running
    running.stop()
