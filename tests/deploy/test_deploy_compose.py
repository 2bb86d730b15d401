"""docker-compose.yml: the Compose schema, references, and the values services read."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from compose_checks import (
    interpolate,
    load_compose,
    reference_problems,
    schema_errors,
    service_environment,
)
from deploy_settings import env_fields, settings_class_of
from support import REPO

COMPOSE_FILE = REPO / "docker-compose.yml"
# Variables a service reads besides its settings class: the worker's catalog
# reads DATABASE_URL, and the orchestrator hands WORKER_* to its workers.
EXTRA_NAMES = {"orchestrator": {"DATABASE_URL"}, "flights-loader": {"DATABASE_URL"}}


@pytest.fixture
def compose() -> dict[str, Any]:
    return load_compose(COMPOSE_FILE)


def write_broken(tmp_path: Path, document: dict[str, Any]) -> dict[str, Any]:
    """Round-trip a changed document through YAML, as a file on disk would."""
    path = tmp_path / "docker-compose.yml"
    path.write_text(yaml.safe_dump(document))
    return load_compose(path)


def test_compose_matches_schema(compose: dict[str, Any]) -> None:
    assert schema_errors(compose) == []


def test_schema_check_reports_bad_condition(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    gateway = compose["services"]["gateway"]
    gateway["depends_on"]["redis"]["condition"] = "service_happy"
    gateway["restart_policy"] = "always"

    errors = schema_errors(write_broken(tmp_path, compose))

    assert any("services/gateway/depends_on" in e for e in errors), errors
    assert any("restart_policy" in e for e in errors), errors


def test_compose_references_resolve(compose: dict[str, Any]) -> None:
    assert reference_problems(compose, REPO) == []


def test_reference_check_reports_each_fault(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    services = compose["services"]
    services["gateway"]["build"]["dockerfile"] = "services/gateway/Dockerfile.missing"
    services["gateway"]["depends_on"]["cache"] = {"condition": "service_started"}
    services["redis"].pop("healthcheck")
    services["postgres"]["volumes"].append("scratch:/scratch")
    services["flights-loader"]["command"][1] = "/seed/missing.py"
    services["flights-loader"]["volumes"].append("./deploy/no-such-dir:/x:ro")

    problems = reference_problems(write_broken(tmp_path, compose), REPO)

    expected = [
        "gateway: depends_on names no service 'cache'",
        "gateway: waits for redis to be healthy, but redis has no healthcheck",
        "orchestrator: waits for redis to be healthy, but redis has no healthcheck",
        "postgres: named volume 'scratch' is not declared",
        "flights-loader: bind mount source ./deploy/no-such-dir does not exist",
    ]
    for line in expected:
        assert line in problems
    assert any("Dockerfile.missing does not exist" in p for p in problems)
    assert any("/seed/missing.py" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A:-x}", {"A": "set"}, "set"),
        ("u:${A}@h", {"A": "p"}, "u:p@h"),
        ("$A/b", {"A": "a"}, "a/b"),
        ("$$A", {"A": "a"}, "$A"),
    ],
)
def test_interpolation_rules(text: str, env: dict[str, str], expected: str) -> None:
    assert interpolate(text, env) == expected


def test_interpolation_rejects_required_unset() -> None:
    with pytest.raises(ValueError, match="NAME"):
        interpolate("${NAME:?set NAME}", {})


@pytest.mark.parametrize("service", ["orchestrator", "gateway"])
def test_service_env_names_are_settings(compose: dict[str, Any], service: str) -> None:
    known = set(env_fields(settings_class_of(service)))
    if service == "orchestrator":
        known |= set(env_fields(settings_class_of("worker")))

    names = set(service_environment(compose, service))

    assert names - known - EXTRA_NAMES.get(service, set()) == set()


@pytest.mark.parametrize("service", ["orchestrator", "gateway"])
def test_service_settings_accept_defaults(
    compose: dict[str, Any], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in env_fields(settings_class_of(service)):
        monkeypatch.delenv(name, raising=False)
    for name, value in service_environment(compose, service).items():
        monkeypatch.setenv(name, value)

    settings = settings_class_of(service)()

    assert settings.redis_url == "redis://redis:6379/0"


def test_urls_name_compose_services(compose: dict[str, Any]) -> None:
    services = compose["services"]
    gateway = service_environment(compose, "gateway")
    orchestrator = service_environment(compose, "orchestrator")
    loader = service_environment(compose, "flights-loader")

    for url in (gateway["REDIS_URL"], orchestrator["REDIS_URL"]):
        assert urlsplit(url).hostname in services
    assert urlsplit(orchestrator["DATABASE_URL"]).hostname == "postgres"
    assert urlsplit(loader["DATABASE_URL"]).hostname == "postgres"
    target = urlsplit(gateway["ORCHESTRATOR_URL"])
    assert target.hostname == "orchestrator"
    assert target.port == 8100
    assert gateway["ORCHESTRATOR_TOKEN"] == orchestrator["ORCHESTRATOR_TOKEN"]


def test_database_roles_match_postgres(compose: dict[str, Any]) -> None:
    postgres = service_environment(compose, "postgres")
    owner = urlsplit(service_environment(compose, "flights-loader")["DATABASE_URL"])
    reader = urlsplit(service_environment(compose, "orchestrator")["DATABASE_URL"])
    loader_command = compose["services"]["flights-loader"]["command"]

    assert (owner.username, owner.password) == (
        postgres["POSTGRES_USER"],
        postgres["POSTGRES_PASSWORD"],
    )
    assert (reader.username, reader.password) == (
        postgres["BELLHOP_READER_USER"],
        postgres["BELLHOP_READER_PASSWORD"],
    )
    assert owner.path == reader.path == "/" + postgres["POSTGRES_DB"]
    assert loader_command[-2:] == ["--reader-role", postgres["BELLHOP_READER_USER"]]


def test_overrides_reach_every_user(compose: dict[str, Any]) -> None:
    env = {"ORCHESTRATOR_TOKEN": "t-123", "BELLHOP_READER_PASSWORD": "r-456"}

    gateway = service_environment(compose, "gateway", env)
    orchestrator = service_environment(compose, "orchestrator", env)
    postgres = service_environment(compose, "postgres", env)

    assert (
        gateway["ORCHESTRATOR_TOKEN"] == orchestrator["ORCHESTRATOR_TOKEN"] == "t-123"
    )
    assert postgres["BELLHOP_READER_PASSWORD"] == "r-456"
    assert urlsplit(orchestrator["DATABASE_URL"]).password == "r-456"


def test_gateway_published_on_localhost_8000(compose: dict[str, Any]) -> None:
    assert compose["services"]["gateway"]["ports"] == ["127.0.0.1:8000:8000"]


@pytest.mark.parametrize(
    ("service", "port"), [("gateway", 8000), ("orchestrator", 8100)]
)
def test_healthchecks_probe_real_routes(
    compose: dict[str, Any], service: str, port: int
) -> None:
    probe = " ".join(compose["services"][service]["healthcheck"]["test"])
    match = re.search(r"http://127\.0\.0\.1:(\d+)(/\w+)", probe)
    assert match is not None, probe
    assert int(match.group(1)) == port

    sources = REPO / "services" / service / "src"
    routes = "".join(path.read_text() for path in sources.rglob("*.py"))
    assert f'.get("{match.group(2)}"' in routes


def test_start_order_conditions(compose: dict[str, Any]) -> None:
    services = compose["services"]

    def condition(service: str, target: str) -> str:
        return services[service]["depends_on"][target]["condition"]

    assert condition("flights-loader", "postgres") == "service_healthy"
    assert (
        condition("orchestrator", "flights-loader") == "service_completed_successfully"
    )
    assert condition("orchestrator", "redis") == "service_healthy"
    assert condition("gateway", "orchestrator") == "service_healthy"
    assert services["flights-loader"]["restart"] == "no"
