"""Static checks of docker-compose.yml: schema, references, interpolation.

The schema is the Compose Specification's own JSON schema
(compose-spec/compose-spec, schema/compose-spec.json, Apache License 2.0),
as the check-jsonschema package ships it, so no copy lives in this project.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, $NAME and $$.
_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)"
    r"(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def load_compose(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a YAML mapping")
    return document


def compose_schema() -> dict[str, Any]:
    vendor = resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def schema_errors(document: dict[str, Any]) -> list[str]:
    """Return one line per place where the document breaks the Compose schema."""
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=str)
    ]


def interpolate(text: str, env: dict[str, str]) -> str:
    """Expand variables the way Compose does, with env as the environment."""

    def expand(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op") or "", match.group("arg") or ""
        value = env.get(name)
        is_unset = value is None or (op.startswith(":") and value == "")
        if op.endswith("-") and is_unset:
            return arg
        if op.endswith("?") and is_unset:
            raise ValueError(f"required variable {name} is unset: {arg}")
        return value or ""

    return _VARIABLE.sub(expand, text)


def service_environment(
    document: dict[str, Any], service: str, env: dict[str, str] | None = None
) -> dict[str, str]:
    """Return a service's environment after interpolation (list or mapping form)."""
    raw = document["services"][service].get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {
        name: interpolate("" if value is None else str(value), env or {})
        for name, value in raw.items()
    }


def _check_depends_on(services: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    for name, service in services.items():
        depends_on = service.get("depends_on") or {}
        if isinstance(depends_on, list):
            depends_on = {target: {} for target in depends_on}
        for target, options in depends_on.items():
            if target not in services:
                problems.append(f"{name}: depends_on names no service {target!r}")
                continue
            condition = (options or {}).get("condition")
            if condition == "service_healthy" and "healthcheck" not in services[target]:
                problems.append(
                    f"{name}: waits for {target} to be healthy, "
                    f"but {target} has no healthcheck"
                )
    return problems


def _check_build(name: str, service: dict[str, Any], root: Path) -> list[str]:
    build = service.get("build")
    if build is None:
        return []
    if isinstance(build, str):
        build = {"context": build}
    context = root / build.get("context", ".")
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    if not context.is_dir():
        return [f"{name}: build context {context} is not a directory"]
    if not dockerfile.is_file():
        return [f"{name}: Dockerfile {dockerfile} does not exist"]
    return []


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """Return (host path, container path) for each bind mount in short syntax."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str) and volume.startswith((".", "/")):
            host, container = volume.split(":")[:2]
            mounts.append((host, container))
    return mounts


def _check_volumes(
    name: str, service: dict[str, Any], declared: set[str], root: Path
) -> list[str]:
    problems: list[str] = []
    for volume in service.get("volumes") or []:
        source = volume.split(":")[0] if isinstance(volume, str) else ""
        if source and not source.startswith((".", "/")) and source not in declared:
            problems.append(f"{name}: named volume {source!r} is not declared")
    for host, _ in _bind_mounts(service):
        if not (root / host).exists():
            problems.append(f"{name}: bind mount source {host} does not exist")
    return problems


def _check_command_paths(name: str, service: dict[str, Any], root: Path) -> list[str]:
    """Report command arguments that name a missing file inside a bind mount."""
    command = service.get("command") or []
    words = command.split() if isinstance(command, str) else command
    problems: list[str] = []
    for host, container in _bind_mounts(service):
        prefix = container.rstrip("/") + "/"
        for word in words:
            if word.startswith(prefix):
                host_path = root / host / word[len(prefix) :]
                if not host_path.exists():
                    problems.append(
                        f"{name}: command names {word}, but {host_path} does not exist"
                    )
    return problems


def reference_problems(document: dict[str, Any], root: Path) -> list[str]:
    """Report names and paths in the file that point at nothing."""
    services: dict[str, Any] = document.get("services") or {}
    declared = set((document.get("volumes") or {}).keys())
    problems = _check_depends_on(services)
    for name, service in services.items():
        problems += _check_build(name, service, root)
        problems += _check_volumes(name, service, declared, root)
        problems += _check_command_paths(name, service, root)
    return problems
