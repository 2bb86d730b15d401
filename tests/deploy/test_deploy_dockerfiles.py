"""The service Dockerfiles: lint, build context, install step, image settings.

No Docker engine runs here, so each property of an image is checked from its
Dockerfile: hadolint, the COPY sources against the repository and
.dockerignore, the builder's `uv sync` commands replayed into a scratch
environment, and the ENV names against the services' settings classes.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from bellhop_shared.catalog import load_catalog, resolve
from deploy_settings import env_fields, settings_class_of
from dockerfile_checks import (
    DockerIgnore,
    check_copy_sources,
    copy_sources,
    env_values,
    parse_dockerfile,
    split_flags,
)
from image_builds import dockerfile_of
from support import REPO

SERVICES = ("worker", "orchestrator", "gateway")
# The console scripts each image must contain, and one package it must not.
IMAGE_CONTENTS = {
    "worker": (["bellhop-worker"], "fastapi"),
    "orchestrator": (["bellhop-orchestrator", "bellhop-worker"], "socketio"),
    "gateway": (["bellhop-gateway"], "numpy"),
}
GENERIC_ENV = {"PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"}
HADOLINT_CONFIG = REPO / "deploy" / "hadolint.yaml"
ENTRYPOINT = REPO / "deploy" / "docker" / "worker-entrypoint.sh"


def lint(hadolint: str, dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [hadolint, "--config", str(HADOLINT_CONFIG), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(hadolint: str, service: str) -> None:
    result = lint(hadolint, dockerfile_of(service))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_flags_unpinned_install(hadolint: str, tmp_path: Path) -> None:
    text = dockerfile_of("worker").read_text()
    assert "uv==" in text
    broken = tmp_path / "Dockerfile"
    broken.write_text(re.sub(r"uv==[0-9.]+", "uv", text))

    result = lint(hadolint, broken)

    assert result.returncode != 0
    assert "DL3013" in result.stdout


@pytest.mark.parametrize("service", SERVICES)
def test_copy_sources_exist_and_are_sent(service: str) -> None:
    assert check_copy_sources(dockerfile_of(service), REPO) == []


def test_copy_check_reports_missing_path(tmp_path: Path) -> None:
    broken = tmp_path / "Dockerfile"
    broken.write_text(
        dockerfile_of("worker").read_text()
        + "COPY --chown=1:1 services/worker/no-such-file /app/\n"
    )

    problems = check_copy_sources(broken, REPO)

    assert len(problems) == 1
    assert "services/worker/no-such-file" in problems[0]
    assert "no such path" in problems[0]


def test_copy_check_reports_ignored_path(tmp_path: Path) -> None:
    context = tmp_path / "context"
    shutil.copytree(REPO / "deploy" / "docker", context / "deploy" / "docker")
    (context / ".dockerignore").write_text("*\n!deploy/catalog\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM scratch\nCOPY deploy/docker/worker-entrypoint.sh /bin/\n"
    )

    problems = check_copy_sources(dockerfile, context)

    assert problems == [
        "Dockerfile:2 COPY deploy/docker/worker-entrypoint.sh: "
        ".dockerignore excludes deploy/docker/worker-entrypoint.sh"
    ]


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*"], "README.md", True),
        (["*"], "shared/src/a.py", True),
        (["*", "!shared/src"], "shared/src/a.py", False),
        (["*", "!shared/src"], "shared/pyproject.toml", True),
        (["*", "!services/*/src"], "services/worker/src/x/y.py", False),
        (
            ["*", "!services/*/src", "**/__pycache__"],
            "services/a/src/__pycache__/b",
            True,
        ),
        (["**/*.py[co]"], "shared/src/a.pyc", True),
        (["**/*.py[co]"], "shared/src/a.py", False),
        (["node_modules"], "services/gateway/node_modules/x.js", False),
        (["**/node_modules"], "services/gateway/node_modules/x.js", True),
        (["/docs"], "docs/deploy.md", True),
        ([], "anything", False),
    ],
)
def test_dockerignore_rules(patterns: list[str], path: str, excluded: bool) -> None:
    assert DockerIgnore(patterns).is_excluded(path) is excluded


def test_dockerignore_keeps_venv_and_git_out() -> None:
    ignore = DockerIgnore.from_file(REPO / ".dockerignore")

    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", ".run/x.log"):
        assert ignore.is_excluded(path), path
    assert ignore.is_excluded("services/gateway/node_modules/socket.io-client/x.js")


def test_uv_version_matches_makefile() -> None:
    makefile = (REPO / "Makefile").read_text()
    wanted = re.search(r"^UV_VERSION\s*:?=\s*(\S+)", makefile, re.MULTILINE)
    assert wanted is not None

    for service in SERVICES:
        pins = re.findall(r"uv==(\S+)", dockerfile_of(service).read_text())
        assert pins == [wanted.group(1)], service


@pytest.mark.parametrize("service", SERVICES)
def test_builder_installs_the_package(
    service: str, image_venv: Callable[[str], Path]
) -> None:
    venv = image_venv(service)

    scripts, absent_module = IMAGE_CONTENTS[service]
    for script in scripts:
        assert (venv / "bin" / script).is_file(), script
    probe = (
        "import importlib.util, bellhop_shared, sys; "
        f"print(bellhop_shared.__file__); "
        f"sys.exit(importlib.util.find_spec({absent_module!r}) is not None)"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{absent_module} is installed: {result.stderr}"
    # Non-editable: the runtime stage copies only the venv, not the sources.
    assert result.stdout.startswith(str(venv))


def stage_copy_destinations(service: str) -> list[str]:
    destinations = []
    for instruction in parse_dockerfile(dockerfile_of(service)):
        if instruction.keyword == "COPY":
            destinations.append(split_flags(instruction.arguments)[1][-1])
    return destinations


@pytest.mark.parametrize("service", SERVICES)
def test_env_paths_are_copied(service: str) -> None:
    env = env_values(dockerfile_of(service))
    destinations = stage_copy_destinations(service)

    for name, value in env.items():
        if value.startswith("/app/") and name != "PATH":
            assert value in destinations, f"{name}={value} is never copied"


@pytest.mark.parametrize("service", SERVICES)
def test_image_env_names_are_settings(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings_class = settings_class_of(service)
    env = {k: v for k, v in env_values(dockerfile_of(service)).items()}
    for name in GENERIC_ENV:
        env.pop(name, None)
    fields = env_fields(settings_class)
    assert set(env) - set(fields) == set()

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = settings_class()
    for name, value in env.items():
        assert str(getattr(settings, fields[name])) == value, name


def test_catalog_file_defines_flights_pg() -> None:
    env = env_values(dockerfile_of("worker"))
    copied_from = {}
    for instruction in parse_dockerfile(dockerfile_of("worker")):
        if instruction.keyword == "COPY":
            paths = split_flags(instruction.arguments)[1]
            copied_from[paths[-1]] = paths[0]
    catalog_file = REPO / copied_from[env["BELLHOP_CATALOG"]]

    spec = resolve("flights-pg", load_catalog(str(catalog_file)))

    assert spec is not None
    assert spec.kind == "postgres"
    assert spec.table == "flights"
    assert spec.id_column == "id"


def run_entrypoint(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the worker image's entrypoint with a stand-in bellhop-worker on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "bellhop-worker"
    stand_in.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        "print(json.dumps(['bellhop-worker', *sys.argv[1:]]))\n"
    )
    stand_in.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}/usr/bin:/bin"}
    return subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "args",
    [
        ("--session", "s1", "--dataset", "flights"),
        ("bellhop-worker", "--session", "s1", "--dataset", "flights"),
        ("bellhop-worker --session s1 --dataset flights",),
    ],
    ids=["arguments", "command-words", "command-string"],
)
def test_entrypoint_runs_worker(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run_entrypoint(tmp_path, *args)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        "bellhop-worker",
        "--session",
        "s1",
        "--dataset",
        "flights",
    ]


@pytest.mark.parametrize("split", [True, False], ids=["words", "string"])
def test_entrypoint_runs_heroku_dyno_command(tmp_path: Path, split: bool) -> None:
    from bellhop_orchestrator.providers.base import WorkerSpec
    from bellhop_orchestrator.providers.heroku import dyno_command

    spec = WorkerSpec(
        session_id="Ab_cd-" + "x" * 40, dataset="flights-pg", worker_id="w-1", user="u7"
    )
    command = dyno_command(spec)

    args = shlex.split(command) if split else [command]
    result = run_entrypoint(tmp_path, *args)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["bellhop-worker", *spec.worker_args()]


def test_entrypoint_rejects_quoted_string(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path, "bellhop-worker --user 'a b'")

    assert result.returncode == 2
    assert "cannot split the quoted command" in result.stderr
    assert result.stdout == ""


def test_entrypoint_does_not_expand_globs(tmp_path: Path) -> None:
    (tmp_path / "match-me").write_text("")
    pattern = str(tmp_path / "match-*")

    result = run_entrypoint(tmp_path, f"--session {pattern} --dataset flights")

    assert json.loads(result.stdout)[2] == pattern


def test_entrypoint_runs_other_programs(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path, "sh", "-c", "echo loader ran")

    assert result.returncode == 0
    assert result.stdout == "loader ran\n"


def test_entrypoint_rejects_no_arguments(tmp_path: Path) -> None:
    result = run_entrypoint(tmp_path)

    assert result.returncode == 2
    assert "usage: IMAGE --session ID --dataset NAME" in result.stderr


def test_entrypoint_is_what_heroku_runs() -> None:
    instructions = parse_dockerfile(dockerfile_of("worker"))
    entrypoints = [i.arguments for i in instructions if i.keyword == "ENTRYPOINT"]
    copies = [i.arguments for i in instructions if i.keyword == "COPY"]

    assert entrypoints == ['["worker-entrypoint"]']
    assert any(
        "deploy/docker/worker-entrypoint.sh /usr/local/bin/worker-entrypoint" in c
        for c in copies
    )
    assert [s for _, s in copy_sources(dockerfile_of("worker")) if "entrypoint" in s]
