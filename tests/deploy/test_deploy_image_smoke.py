"""The images' Python environments, run as the images would run them.

Each environment is the builder stage replayed (image_builds), so it contains
the non-editable packages and nothing from the checkout. The orchestrator
runs from it with its image ENV and the catalog file the image copies, on a
free loopback port, and starts a real worker for flights-pg. The gateway
runs from its own environment and serves the page files named by its ENV.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import redis
from dockerfile_checks import env_values
from image_builds import dockerfile_of
from postgres_admin import ADMIN_URL, connect_admin
from psycopg import sql
from support import (
    REPO,
    ServiceProcess,
    free_port,
    pid_alive,
    wait_until,
)

TOKEN = secrets.token_urlsafe(24)
CATALOG = REPO / "deploy" / "catalog" / "datasets.json"
LOADER = REPO / "deploy" / "postgres" / "load_flights.py"


def image_env(service: str, venv: Path, **overrides: str) -> dict[str, str]:
    """Return the image's ENV with its paths mapped onto this machine."""
    env = env_values(dockerfile_of(service))
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    if "BELLHOP_CATALOG" in env:
        env["BELLHOP_CATALOG"] = str(CATALOG)
    env.update(overrides)
    return env


@pytest.fixture(scope="module")
def flights_schema() -> Iterator[str]:
    """Load flights into a schema of the test database for flights-pg."""
    admin = connect_admin()
    name = f"deploy_smoke_{secrets.token_hex(4)}"
    loaded = subprocess.run(
        [sys.executable, str(LOADER), "--database-url", ADMIN_URL, "--schema", name],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert loaded.returncode == 0, loaded.stderr
    yield name
    admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))
    admin.close()


@pytest.fixture(scope="module")
def orchestrator(
    redis_url: str,
    image_venv: Callable[[str], Path],
    flights_schema: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, ServiceProcess]]:
    scratch = tmp_path_factory.mktemp("orchestrator-run")
    venv = image_venv("orchestrator")
    port = free_port()
    # The catalog names the table `flights`; search_path points it at the
    # test's schema, as a libpq option inside the URL.
    database_url = f"{ADMIN_URL}?options={quote(f'-c search_path={flights_schema}')}"
    env = image_env(
        "orchestrator",
        venv,
        HOST="127.0.0.1",
        PORT=str(port),
        REDIS_URL=redis_url,
        ORCHESTRATOR_TOKEN=TOKEN,
        DATABASE_URL=database_url,
        PYTHONUNBUFFERED="1",
    )
    process = ServiceProcess(
        "orchestrator", [str(venv / "bin" / "bellhop-orchestrator")], env, scratch
    )
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: is_ready(f"{url}/readyz"), 60)
    yield url, process
    process.stop()


def is_ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def worker_heartbeat(client: redis.Redis, session_id: str) -> dict[str, Any]:
    raw = client.get(f"bellhop:session:{session_id}:worker")
    return json.loads(raw) if raw else {}


def call_worker(client: redis.Redis, session_id: str, method: str) -> dict[str, Any]:
    """Send one JSON-RPC request through the session queue; return the response."""
    pubsub = client.pubsub()
    pubsub.subscribe(f"bellhop:session:{session_id}:results")
    wait_until(lambda: pubsub.get_message(timeout=0.1), 10)
    request = {"jsonrpc": "2.0", "id": "smoke-1", "method": method}
    client.lpush(f"bellhop:session:{session_id}:queue", json.dumps(request))

    def response() -> dict[str, Any] | None:
        message = pubsub.get_message(timeout=0.2)
        if message and message["type"] == "message":
            data = json.loads(message["data"])
            if isinstance(data, dict) and data.get("id") == "smoke-1":
                return data
        return None

    found = wait_until(response, 60)
    pubsub.close()
    assert isinstance(found, dict)
    return found


def test_orchestrator_image_runs_flights_pg(
    orchestrator: tuple[str, ServiceProcess], redis_url: str
) -> None:
    url, process = orchestrator
    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    created = httpx.post(
        f"{url}/v1/sessions", json={"dataset": "flights-pg"}, headers=headers
    )
    assert created.status_code == 201, created.text
    session_id = created.json()["session_id"]
    ready = wait_until(
        lambda: (
            worker_heartbeat(redis_client, session_id).get("state")
            in {"ready", "failed"}
        ),
        90,
    )
    heartbeat = worker_heartbeat(redis_client, session_id)
    assert ready, process.log_text()
    assert heartbeat["state"] == "ready", heartbeat

    described = call_worker(redis_client, session_id, "describe")

    assert described["result"]["rows"] == 336_776
    assert described["result"]["id_column"] == "id"
    deleted = httpx.delete(f"{url}/v1/sessions/{session_id}", headers=headers)
    assert deleted.status_code == 200
    wait_until(lambda: not pid_alive(heartbeat["pid"]), 30)
    redis_client.close()


def test_gateway_image_serves_page_files(
    redis_url: str, image_venv: Callable[[str], Path], tmp_path: Path
) -> None:
    venv = image_venv("gateway")
    web_dir = tmp_path / "web"
    shutil.copytree(REPO / "services" / "gateway" / "web", web_dir)
    port = free_port()
    env = image_env(
        "gateway",
        venv,
        GATEWAY_HOST="127.0.0.1",
        GATEWAY_WEB_DIR=str(web_dir),
        GATEWAY_NODE_MODULES=str(tmp_path / "node_modules"),
        PORT=str(port),
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
    )
    process = ServiceProcess(
        "gateway", [str(venv / "bin" / "bellhop-gateway")], env, tmp_path
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: is_ready(f"{url}/healthz"), 60)

        files = sorted(p.name for p in web_dir.iterdir() if p.suffix != ".html")
        for name in files:
            served = httpx.get(f"{url}/static/{name}")
            assert served.status_code == 200, name
            assert served.content == (web_dir / name).read_bytes()
        # Without socket.io-client in GATEWAY_NODE_MODULES, the page returns 503.
        page = httpx.get(url)
        assert page.status_code == 503
        assert "npm ci" in page.text
    finally:
        process.stop()


@pytest.fixture(scope="module")
def worker_venv(image_venv: Callable[[str], Path]) -> Path:
    return image_venv("worker")


def test_worker_image_runs_alone(
    worker_venv: Path, redis_url: str, tmp_path: Path
) -> None:
    session_id = secrets.token_urlsafe(32)
    env = image_env("worker", worker_venv, REDIS_URL=redis_url)
    entrypoint = REPO / "deploy" / "docker" / "worker-entrypoint.sh"
    argv = ["/bin/sh", str(entrypoint), "--session", session_id, "--dataset", "flights"]
    process = ServiceProcess("worker", argv, env, tmp_path)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        wait_until(
            lambda: worker_heartbeat(client, session_id).get("state") == "ready", 90
        )

        answer = call_worker(client, session_id, "terminate")

        assert answer["result"] == {"terminating": True}
        assert process.proc.wait(30) == 0
        assert worker_heartbeat(client, session_id) == {}
    finally:
        process.stop()
        client.close()


def test_loader_runs_in_worker_image(worker_venv: Path) -> None:
    schema = f"deploy_smoke_{secrets.token_hex(4)}"
    with connect_admin() as admin:
        result = subprocess.run(
            [str(worker_venv / "bin" / "python"), str(LOADER), "--schema", schema],
            env={"DATABASE_URL": ADMIN_URL, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=180,
        )
        admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )

    assert result.returncode == 0, result.stderr
    assert "flights loaded rows=336776" in result.stderr
