"""deploy/heroku: the image list, the config var files and deploy.sh.

deploy.sh runs for real here, against stand-in `docker` and `heroku`
programs that record their arguments, so its checks and the commands it
would send are tested without a network or an account.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from deploy_settings import env_fields, settings_class_of
from dockerfile_checks import env_values
from heroku_checks import ROLES, heroku_problems, read_config_vars, read_images
from support import REPO

DEPLOY_DIR = REPO / "deploy" / "heroku"
SCRIPT = DEPLOY_DIR / "deploy.sh"
SHELL_SCRIPTS = [
    SCRIPT,
    REPO / "deploy" / "docker" / "worker-entrypoint.sh",
    REPO / "deploy" / "postgres" / "initdb" / "10-create-reader-role.sh",
]
# Programs deploy.sh may call besides docker and heroku.
SYSTEM_TOOLS = ("bash", "sed", "dirname", "tr", "cat")
GATEWAY_APP = "bh-gateway"
ORCHESTRATOR_APP = "bh-orchestrator"

STAND_IN = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "$STAND_IN_LOG"
[ "$(basename "$0")" = heroku ] || exit 0
[ "$1" = config:get ] || exit 0
case " ${MISSING_VARS:-} " in *" $2 "*) exit 0 ;; esac
if [ "$2" = "${DIFFERING_VAR:-}" ] && [ "$4" = bh-gateway ]; then
  echo "gateway-only value"; exit 0
fi
case "$2" in
  PROVIDER) echo "${PROVIDER_VALUE:-heroku}" ;;
  HEROKU_APP) echo "${HEROKU_APP_VALUE:-bh-orchestrator}" ;;
  HEROKU_DYNO_TYPE) echo "${DYNO_TYPE_VALUE:-}" ;;
  *) echo "set" ;;
esac
"""


def orchestrator_worker_type() -> str:
    field = settings_class_of("orchestrator").model_fields["heroku_dyno_type"]
    return str(field.default)


def test_heroku_files_are_complete() -> None:
    assert heroku_problems(DEPLOY_DIR, REPO, orchestrator_worker_type()) == []


def test_heroku_check_reports_missing_files(tmp_path: Path) -> None:
    broken = tmp_path / "heroku"
    shutil.copytree(DEPLOY_DIR, broken)
    images = (broken / "images.conf").read_text()
    (broken / "images.conf").write_text(
        images.replace("services/worker/Dockerfile", "services/wrkr/Dockerfile")
    )
    (broken / "gateway.env.example").unlink()

    problems = heroku_problems(broken, REPO, "worker")

    assert (
        "images.conf: services/wrkr/Dockerfile (orchestrator worker) does not exist"
        in problems
    )
    assert any("gateway.env.example does not exist" in p for p in problems)


def test_heroku_check_reports_missing_process_type(tmp_path: Path) -> None:
    broken = tmp_path / "heroku"
    shutil.copytree(DEPLOY_DIR, broken)

    problems = heroku_problems(broken, REPO, "session")

    assert problems == ["images.conf: no session image for the orchestrator app"]


def test_images_cover_both_apps() -> None:
    images = read_images(DEPLOY_DIR / "images.conf")

    assert {(i.role, i.process_type) for i in images} == {
        ("gateway", "web"),
        ("orchestrator", "web"),
        ("orchestrator", orchestrator_worker_type()),
    }


@pytest.mark.parametrize("role", ROLES)
def test_config_vars_are_settings(role: str) -> None:
    known = set(env_fields(settings_class_of(role)))
    if role == "orchestrator":
        known |= set(env_fields(settings_class_of("worker"))) | {"DATABASE_URL"}

    names = {var.name for var in read_config_vars(DEPLOY_DIR / f"{role}.env.example")}

    assert names - known == set()


@pytest.mark.parametrize("role", ROLES)
def test_config_examples_hold_no_secrets(role: str) -> None:
    secret_words = ("TOKEN", "SECRET", "PASSWORD", "_URL")
    for var in read_config_vars(DEPLOY_DIR / f"{role}.env.example"):
        if any(word in var.name for word in secret_words) and var.value:
            assert var.value.startswith("<"), var
            assert var.value.endswith(">"), var


def effective_defaults(role: str) -> dict[str, str]:
    """Return what each variable is when unset: the image ENV, else the field default.

    The orchestrator app's variables also reach its worker dynos, so the
    worker's settings count for it too, and the worker's default wins where
    the orchestrator only passes a value through.
    """
    services = [role, "worker"] if role == "orchestrator" else [role]
    defaults: dict[str, str] = {}
    for service in services:
        cls = settings_class_of(service)
        for name, field_name in env_fields(cls).items():
            value = cls.model_fields[field_name].default
            defaults[name] = f"{value:g}" if isinstance(value, float) else str(value)
        defaults.update(env_values(REPO / "services" / service / "Dockerfile"))
    return defaults


@pytest.mark.parametrize("role", ROLES)
def test_optional_defaults_match_settings(role: str) -> None:
    defaults = effective_defaults(role)
    for var in read_config_vars(DEPLOY_DIR / f"{role}.env.example"):
        if not var.required and not var.value.startswith("<"):
            assert var.value == defaults[var.name], var


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_pass_shellcheck(shellcheck: str, script: Path) -> None:
    result = subprocess.run(
        [shellcheck, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout


def test_shellcheck_flags_unquoted_variable(shellcheck: str, tmp_path: Path) -> None:
    broken = tmp_path / "deploy.sh"
    text = SCRIPT.read_text()
    broken.write_text(text.replace('run docker push "$tag"', "run docker push $tag"))

    result = subprocess.run(
        [shellcheck, str(broken)], capture_output=True, text=True, timeout=60
    )

    assert result.returncode != 0
    assert "SC2086" in result.stdout


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script: Path) -> None:
    shell = "sh" if script.read_text().startswith("#!/bin/sh") else "bash"
    result = subprocess.run([shell, "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_syntax_check_reports_broken_script(tmp_path: Path) -> None:
    broken = tmp_path / "deploy.sh"
    broken.write_text(SCRIPT.read_text().replace("esac\n", "", 1))

    result = subprocess.run(["bash", "-n", str(broken)], capture_output=True, text=True)

    assert result.returncode != 0
    assert "syntax error" in result.stderr


def test_scripts_are_executable() -> None:
    for script in SHELL_SCRIPTS:
        assert os.access(script, os.X_OK), script


def make_path(tmp_path: Path, programs: tuple[str, ...]) -> str:
    """Build a PATH with the system tools and stand-ins for the given programs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in SYSTEM_TOOLS + ("basename",):
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    for program in programs:
        stand_in = bin_dir / program
        stand_in.write_text(STAND_IN)
        stand_in.chmod(0o755)
    return str(bin_dir)


def run_deploy(
    tmp_path: Path,
    *args: str,
    programs: tuple[str, ...] = ("docker", "heroku"),
    **env: str,
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run deploy.sh; return its result and the stand-ins' recorded calls."""
    log = tmp_path / "calls.log"
    log.write_text("")
    full_env = {
        "PATH": make_path(tmp_path, programs),
        "STAND_IN_LOG": str(log),
        "HOME": str(tmp_path),
        **env,
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, log.read_text().splitlines()


def test_deploy_builds_pushes_releases(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, GATEWAY_APP, ORCHESTRATOR_APP)

    assert result.returncode == 0, result.stderr
    mutating = [
        c for c in calls if not c.startswith(("heroku config:get", "heroku apps:info"))
    ]
    orchestrator_tag = f"registry.heroku.com/{ORCHESTRATOR_APP}"
    gateway_tag = f"registry.heroku.com/{GATEWAY_APP}"
    assert mutating == [
        "docker info",
        "heroku auth:whoami",
        "heroku container:login",
        "docker build --platform linux/amd64 --provenance=false --file "
        f"{REPO}/services/orchestrator/Dockerfile --tag {orchestrator_tag}/web {REPO}",
        f"docker push {orchestrator_tag}/web",
        "docker build --platform linux/amd64 --provenance=false --file "
        f"{REPO}/services/worker/Dockerfile --tag {orchestrator_tag}/worker {REPO}",
        f"docker push {orchestrator_tag}/worker",
        f"heroku stack:set container -a {ORCHESTRATOR_APP}",
        f"heroku container:release web worker -a {ORCHESTRATOR_APP}",
        f"heroku ps:scale worker=0 -a {ORCHESTRATOR_APP}",
        "docker build --platform linux/amd64 --provenance=false --file "
        f"{REPO}/services/gateway/Dockerfile --tag {gateway_tag}/web {REPO}",
        f"docker push {gateway_tag}/web",
        f"heroku stack:set container -a {GATEWAY_APP}",
        f"heroku container:release web -a {GATEWAY_APP}",
    ]


def test_deploy_checks_required_config(tmp_path: Path) -> None:
    _, calls = run_deploy(tmp_path, GATEWAY_APP, ORCHESTRATOR_APP)

    for role, app in (("gateway", GATEWAY_APP), ("orchestrator", ORCHESTRATOR_APP)):
        example = DEPLOY_DIR / f"{role}.env.example"
        for var in read_config_vars(example):
            if var.required:
                assert f"heroku config:get {var.name} -a {app}" in calls


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    result, calls = run_deploy(tmp_path, "--dry-run", GATEWAY_APP, ORCHESTRATOR_APP)

    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith(("docker build", "docker push"))]
    assert not [c for c in calls if "container:" in c or "ps:scale" in c]
    assert (
        f"+ heroku container:release web worker -a {ORCHESTRATOR_APP}" in result.stdout
    )
    assert "dry run: nothing was built, pushed or released" in result.stderr


def test_deploy_takes_apps_from_env(tmp_path: Path) -> None:
    result, calls = run_deploy(
        tmp_path,
        "--only",
        "gateway",
        BELLHOP_GATEWAY_APP=GATEWAY_APP,
    )

    assert result.returncode == 0, result.stderr
    assert f"heroku container:release web -a {GATEWAY_APP}" in calls
    assert not [c for c in calls if ORCHESTRATOR_APP in c]


def test_deploy_rejects_missing_config(tmp_path: Path) -> None:
    result, calls = run_deploy(
        tmp_path,
        GATEWAY_APP,
        ORCHESTRATOR_APP,
        MISSING_VARS="GATEWAY_SECRET ORCHESTRATOR_URL",
    )

    assert result.returncode == 1
    assert (
        f"app {GATEWAY_APP} is missing config vars: ORCHESTRATOR_URL GATEWAY_SECRET"
        in result.stderr
    )
    assert not [c for c in calls if c.startswith("docker build")]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HEROKU_APP_VALUE": "other-app"}, "has HEROKU_APP=other-app; set it to"),
        ({"PROVIDER_VALUE": "local"}, "has PROVIDER=local; set PROVIDER=heroku"),
        ({"DYNO_TYPE_VALUE": "web"}, "HEROKU_DYNO_TYPE=web, which is not a worker"),
        ({"DYNO_TYPE_VALUE": "run"}, "HEROKU_DYNO_TYPE=run, which is not a worker"),
    ],
)
def test_deploy_rejects_wrong_orchestrator_config(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    result, calls = run_deploy(tmp_path, GATEWAY_APP, ORCHESTRATOR_APP, **env)

    assert result.returncode == 1
    assert message in result.stderr
    assert not [c for c in calls if c.startswith("docker build")]


@pytest.mark.parametrize("name", ["REDIS_URL", "ORCHESTRATOR_TOKEN"])
def test_deploy_rejects_unshared_config(tmp_path: Path, name: str) -> None:
    result, calls = run_deploy(
        tmp_path, GATEWAY_APP, ORCHESTRATOR_APP, DIFFERING_VAR=name
    )

    assert result.returncode == 1
    assert (
        f"{name} differs between {GATEWAY_APP} and {ORCHESTRATOR_APP}" in result.stderr
    )
    assert "gateway-only value" not in result.stderr
    assert not [c for c in calls if c.startswith("docker build")]


def test_skip_config_check(tmp_path: Path) -> None:
    result, calls = run_deploy(
        tmp_path,
        "--skip-config-check",
        GATEWAY_APP,
        ORCHESTRATOR_APP,
        MISSING_VARS="GATEWAY_SECRET",
    )

    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith("heroku config:get")]


@pytest.mark.parametrize(
    ("programs", "message"),
    [
        (("heroku",), "docker not found on PATH"),
        (("docker",), "heroku not found on PATH"),
    ],
)
def test_deploy_requires_tools(
    tmp_path: Path, programs: tuple[str, ...], message: str
) -> None:
    result, _ = run_deploy(tmp_path, GATEWAY_APP, ORCHESTRATOR_APP, programs=programs)

    assert result.returncode == 1
    assert message in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((GATEWAY_APP,), "no orchestrator app"),
        (("Bad_Name", ORCHESTRATOR_APP), "'Bad_Name' is not a valid Heroku app name"),
        (("a", "b", "c"), "expected 2 app names, got 3"),
        (("--only", "worker", GATEWAY_APP, ORCHESTRATOR_APP), "--only takes gateway"),
        (("--bogus",), "unknown option --bogus"),
    ],
)
def test_deploy_rejects_bad_arguments(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result, calls = run_deploy(tmp_path, *args)

    assert result.returncode == 1
    assert message in result.stderr
    assert calls == []
