"""The Heroku provider against the fake Platform API (a real local process)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from bellhop_orchestrator.errors import ProviderCapacityError, ProviderError
from bellhop_orchestrator.metrics import Metrics
from bellhop_orchestrator.providers.base import WorkerSpec, WorkerStatus
from bellhop_orchestrator.providers.heroku import HerokuProvider
from bellhop_orchestrator.settings import OrchestratorSettings
from bellhop_shared.keys import new_session_id
from heroku_support import (
    FAKE_APP,
    FakeHeroku,
    heroku_env,
    start_fake_heroku,
)
from orchestrator_support import OrchestratorFactory
from support import pid_alive, service_env, wait_until

DATASET = "synthetic-1k"


@pytest.fixture(scope="module")
def stub_fake(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeHeroku]:
    """A fake whose dynos run a sleeping stub instead of the real worker."""
    fake = start_fake_heroku(redis_url, tmp_path_factory.mktemp("fake"), True)
    yield fake
    fake.process.stop()


@pytest.fixture
def fake(stub_fake: FakeHeroku) -> FakeHeroku:
    stub_fake.admin("POST", "reset")
    return stub_fake


def make_provider(fake: FakeHeroku, **overrides: str) -> HerokuProvider:
    settings = OrchestratorSettings(**heroku_env(fake, **overrides))
    return HerokuProvider(settings, Metrics())


def spec(session_id: str | None = None) -> WorkerSpec:
    return WorkerSpec(session_id or new_session_id(), DATASET, "w-0000test", "u1")


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def start_and_close(provider: HerokuProvider, worker: WorkerSpec) -> str:
    try:
        return await provider.start(worker)
    finally:
        await provider.aclose()


def test_heroku_session_runs_real_worker(
    orchestrator_factory: OrchestratorFactory,
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
) -> None:
    real_fake = start_fake_heroku(redis_url, tmp_path, sleep_workers=False)
    try:
        orchestrator = orchestrator_factory(**heroku_env(real_fake))
        session_id = new_session_id()
        response = orchestrator.create(dataset=DATASET, session_id=session_id)

        assert response.status_code == 201, response.text
        record = response.json()
        assert record["provider"] == "heroku"
        (dyno,) = real_fake.dynos()
        assert record["provider_ref"] == dyno["id"]
        assert dyno["type"] == "worker"
        assert dyno["size"] == "standard-1X"
        assert dyno["time_to_live"] == 3600
        assert dyno["command"] == (
            f"bellhop-worker --session={session_id} --dataset={DATASET}"
        )
        assert dyno["env"]["WORKER_ID"] == record["worker_id"]
        assert "REDIS_URL" not in dyno["env"]

        def running() -> bool:
            return (orchestrator.record(session_id) or {}).get("state") == "running"

        wait_until(running, 30)
        deleted = orchestrator.request("DELETE", f"/v1/sessions/{session_id}")
        assert deleted.status_code == 200
        real_fake.wait_empty()
        assert not pid_alive(dyno["pid"])
    finally:
        real_fake.process.stop()


def test_heroku_list_follows_pagination(fake: FakeHeroku) -> None:
    provider = make_provider(fake, HEROKU_PAGE_SIZE="3")
    session_ids = [new_session_id() for _ in range(10)]

    async def scenario() -> list[Any]:
        try:
            refs = [await provider.start(spec(sid)) for sid in session_ids]
            workers = await provider.list()
            await asyncio.gather(*(provider.stop(ref, "test over") for ref in refs))
            return workers
        finally:
            await provider.aclose()

    workers = run(scenario())

    assert sorted(worker.session_id for worker in workers) == sorted(session_ids)
    list_calls = fake.stats()["calls"][f"GET /apps/{FAKE_APP}/dynos"]
    assert list_calls == 4
    fake.wait_empty()


def test_heroku_rate_limit_burst_is_retried(fake: FakeHeroku) -> None:
    provider = make_provider(fake)
    fake.add_fault(status=429, count=3, method="POST")

    ref = run(start_and_close(provider, spec()))

    assert [dyno["id"] for dyno in fake.dynos()] == [ref]
    assert fake.stats()["statuses"]["429"] == 3
    errors = provider._metrics.provider_errors.labels("heroku", "create", "429")
    assert errors._value.get() == 3


def test_heroku_empty_token_bucket_waits(fake: FakeHeroku) -> None:
    provider = make_provider(fake)
    # Slow enough that the first call always finds the bucket empty, even
    # on a loaded machine.
    fake.configure(tokens=0, rate_refill_per_s=0.5)

    ref = run(start_and_close(provider, spec()))

    assert [dyno["id"] for dyno in fake.dynos()] == [ref]
    assert fake.stats()["statuses"].get("429", 0) >= 1


def test_heroku_rate_limit_gives_up(fake: FakeHeroku) -> None:
    provider = make_provider(fake, HEROKU_MAX_BACKOFF_S="1")
    fake.add_fault(status=429, count=1000, method="POST")

    with pytest.raises(ProviderCapacityError) as caught:
        run(start_and_close(provider, spec()))

    assert "rate limit" in caught.value.detail
    assert caught.value.retry_after_s is not None
    assert fake.dynos() == []


def test_heroku_lost_create_response_adopts_dyno(fake: FakeHeroku) -> None:
    provider = make_provider(fake)
    worker = spec()
    fake.add_fault(status=500, count=1, method="POST", after=True)

    ref = run(start_and_close(provider, worker))

    dynos = fake.dynos()
    assert len(dynos) == 1
    assert dynos[0]["id"] == ref
    assert worker.session_id in dynos[0]["command"]


def test_heroku_server_error_before_create_retries(fake: FakeHeroku) -> None:
    provider = make_provider(fake)
    fake.add_fault(status=503, count=2, method="POST")

    ref = run(start_and_close(provider, spec()))

    assert [dyno["id"] for dyno in fake.dynos()] == [ref]


def test_heroku_conflict_on_create_retries(fake: FakeHeroku) -> None:
    provider = make_provider(fake)
    fake.add_fault(status=409, count=2, method="POST")

    ref = run(start_and_close(provider, spec()))

    assert [dyno["id"] for dyno in fake.dynos()] == [ref]


def test_heroku_persistent_server_errors_fail(fake: FakeHeroku) -> None:
    provider = make_provider(fake)
    fake.add_fault(status=500, count=1000)

    with pytest.raises(ProviderError) as caught:
        run(start_and_close(provider, spec()))

    assert "500" in caught.value.detail
    assert fake.dynos() == []


def test_heroku_wrong_token_is_explained(fake: FakeHeroku) -> None:
    provider = make_provider(fake, HEROKU_API_TOKEN="not-the-right-token")

    with pytest.raises(ProviderError) as caught:
        run(start_and_close(provider, spec()))

    assert "HEROKU_API_TOKEN" in caught.value.detail
    assert "401" in caught.value.detail
    assert "not-the-right-token" not in caught.value.detail
    assert fake.dynos() == []


def test_heroku_fresh_dyno_404_is_running(fake: FakeHeroku) -> None:
    provider = make_provider(fake)
    fake.configure(info_404_count=2)

    async def scenario() -> tuple[WorkerStatus, WorkerStatus]:
        try:
            ref = await provider.start(spec())
            first = await provider.poll(ref)
            await provider.poll(ref)
            third = await provider.poll(ref)
            await provider.stop(ref, "test over")
            return first, third
        finally:
            await provider.aclose()

    first, third = run(scenario())

    assert first is WorkerStatus.RUNNING
    assert third is WorkerStatus.RUNNING
    fake.wait_empty()


def test_heroku_stop_unknown_dyno_is_quiet(fake: FakeHeroku) -> None:
    provider = make_provider(fake)

    async def scenario() -> WorkerStatus:
        try:
            await provider.stop("00000000-0000-0000-0000-000000000000", "test")
            return await provider.poll("00000000-0000-0000-0000-000000000000")
        finally:
            await provider.aclose()

    assert run(scenario()) is WorkerStatus.EXITED


def test_heroku_limit_gives_503(
    fake: FakeHeroku, orchestrator_factory: OrchestratorFactory
) -> None:
    fake.configure(one_off_limit=1)
    orchestrator = orchestrator_factory(**heroku_env(fake), LIMIT_RETRY_AFTER_S="9")

    over_limit_id = new_session_id()
    first = orchestrator.create(dataset=DATASET)
    second = orchestrator.create(dataset=DATASET, session_id=over_limit_id)

    assert first.status_code == 201
    assert second.status_code == 503
    assert second.headers["Retry-After"] == "9"
    assert "limit=1" in second.json()["detail"]
    failed = orchestrator.record(over_limit_id)
    assert failed is not None
    assert failed["state"] == "failed"
    assert "limit=1" in failed["ended_reason"]
    assert len(fake.dynos()) == 1


def test_heroku_bad_token_gives_502(
    fake: FakeHeroku, orchestrator_factory: OrchestratorFactory
) -> None:
    env = heroku_env(fake, HEROKU_API_TOKEN="wrong-token-value")
    orchestrator = orchestrator_factory(**env)

    response = orchestrator.create(dataset=DATASET)

    assert response.status_code == 502
    assert "HEROKU_API_TOKEN" in response.json()["detail"]
    assert "wrong-token-value" not in orchestrator.process.log_text()


def test_heroku_reconcile_stops_orphan_dyno(
    fake: FakeHeroku, orchestrator_factory: OrchestratorFactory
) -> None:
    command = f"bellhop-worker --session {new_session_id()} --dataset {DATASET}"
    created = fake.api("POST", f"/apps/{FAKE_APP}/dynos", json={"command": command})
    assert created.status_code == 201
    unrelated = fake.api(
        "POST", f"/apps/{FAKE_APP}/dynos", json={"command": "sleep 60"}
    )
    assert unrelated.status_code == 201

    orchestrator_factory(**heroku_env(fake))

    wait_until(lambda: [d["command"] for d in fake.dynos()] == ["sleep 60"], 20)


def test_heroku_placeholder_token_is_rejected(redis_url: str) -> None:
    env = service_env(
        redis_url,
        PROVIDER="heroku",
        HEROKU_API_TOKEN="changeme",
        HEROKU_APP=FAKE_APP,
        HEROKU_API_URL="http://127.0.0.1:9",
    )
    result = subprocess.run(
        [sys.executable, "-m", "bellhop_orchestrator.main"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert "HEROKU_API_TOKEN" in result.stderr
    assert "placeholder" in result.stderr


def test_fake_enforces_platform_rules(fake: FakeHeroku) -> None:
    path = f"/apps/{FAKE_APP}/dynos"
    no_accept = fake.api("GET", path, headers={"Accept": "application/json"})
    wrong_token = fake.api("GET", path, headers={"Authorization": "Bearer nope"})
    unknown_app = fake.api("GET", "/apps/no-such-app/dynos")
    bad_bodies: list[dict[str, Any]] = [
        {},
        {"command": "x", "env": {"BAD-KEY": "v"}},
        {"command": "x", "env": {"KEY": 1}},
        {"command": "x", "time_to_live": 86401},
        {"command": "x", "unknown": True},
    ]
    rejected = [fake.api("POST", path, json=body) for body in bad_bodies]
    bad_range = fake.api("GET", path, headers={"Range": "id ..; max=5000;"})

    assert no_accept.status_code == 406
    assert no_accept.json()["id"] == "not_acceptable"
    assert wrong_token.status_code == 401
    assert unknown_app.status_code == 404
    for response in rejected:
        assert response.status_code == 422, response.text
        assert response.json()["id"] == "invalid_params"
    assert bad_range.status_code == 416
    for response in (no_accept, wrong_token, *rejected):
        assert response.headers["Request-Id"]
        assert response.headers["RateLimit-Remaining"].isdigit()


def test_fake_rate_limit_has_no_retry_after(fake: FakeHeroku) -> None:
    fake.configure(tokens=0, rate_refill_per_s=0)

    response = fake.api("GET", f"/apps/{FAKE_APP}/dynos")

    assert response.status_code == 429
    assert response.json()["id"] == "rate_limit"
    assert "Retry-After" not in response.headers


def test_fake_delete_spares_custom_type(fake: FakeHeroku) -> None:
    body = {"command": "sleep 60", "type": "worker"}
    dyno = fake.api("POST", f"/apps/{FAKE_APP}/dynos", json=body).json()

    response = fake.api("DELETE", f"/apps/{FAKE_APP}/dynos/{dyno['id']}")

    assert response.status_code == 202
    assert [d["id"] for d in fake.dynos()] == [dyno["id"]]
    stop = fake.api("POST", f"/apps/{FAKE_APP}/dynos/{dyno['id']}/actions/stop")
    assert stop.status_code == 202
    assert stop.json() == {}
    fake.wait_empty()


def test_fake_time_to_live_removes_dyno(fake: FakeHeroku) -> None:
    body = {"command": "sleep 60", "time_to_live": 1}
    dyno = fake.api("POST", f"/apps/{FAKE_APP}/dynos", json=body).json()

    assert dyno["state"] == "starting"
    assert dyno["name"].startswith("run.")
    fake.wait_empty()
