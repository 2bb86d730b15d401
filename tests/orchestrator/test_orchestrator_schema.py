"""Property-based calls generated from the orchestrator's own OpenAPI schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from orchestrator_support import (
    SLEEP_WORKER_COMMAND,
    Orchestrator,
    kill_workers,
    start_orchestrator,
)
from schemathesis import GenerationMode

TOKEN = "schema-test-token"


@pytest.fixture(scope="module")
def fuzzed_orchestrator(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Orchestrator]:
    # Sleeping stub workers keep the many generated sessions cheap, and high
    # limits keep a valid create from getting a (correct) 503.
    orchestrator = start_orchestrator(
        redis_url,
        tmp_path_factory.mktemp("schema"),
        LOCAL_WORKER_COMMAND=SLEEP_WORKER_COMMAND,
        MAX_WORKERS="1000",
        MAX_WORKERS_PER_USER="1000",
        ORCHESTRATOR_TOKEN=TOKEN,
        LOG_LEVEL="INFO",
    )
    yield orchestrator
    orchestrator.stop()
    kill_workers(redis_url)


# NOTE: schemathesis 4.32's pytest integration (from_fixture, parametrize)
# fails under pytest 9.2 (it reads the removed Function._nodeid), so the
# cases come from each operation's Hypothesis strategy instead.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_schema_calls_get_no_server_error(
    fuzzed_orchestrator: Orchestrator, mode: GenerationMode
) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_orchestrator.url}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    operations = [result.ok() for result in schema.get_all_operations()]
    exercised = []

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=25,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: Any) -> None:
            case.call_and_validate(headers=headers)

        try:
            call()
        except Unsatisfiable:
            # Nothing to make invalid: the operation takes no input.
            assert mode is GenerationMode.NEGATIVE
            continue
        exercised.append(operation.label)

    assert len(operations) == 7
    assert "POST /v1/sessions" in exercised
    assert "DELETE /v1/sessions/{session_id}" in exercised
