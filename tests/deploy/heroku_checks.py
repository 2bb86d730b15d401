"""Static checks of deploy/heroku: the image list and the config var files."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ROLES = ("gateway", "orchestrator")
_REQUIRED_LINE = re.compile(r"^(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")
_OPTIONAL_LINE = re.compile(r"^#\s?(?P<name>[A-Z][A-Z0-9_]*)=(?P<value>.*)$")


@dataclass(frozen=True)
class Image:
    """One line of images.conf."""

    role: str
    process_type: str
    dockerfile: str


@dataclass(frozen=True)
class ConfigVar:
    """One NAME=VALUE line of a *.env.example file."""

    name: str
    value: str
    required: bool


def read_images(path: Path) -> list[Image]:
    images = []
    for line in path.read_text().splitlines():
        words = line.split()
        if words and not words[0].startswith("#"):
            images.append(Image(*words))
    return images


def read_config_vars(path: Path) -> list[ConfigVar]:
    """Return the variables of an env example: uncommented lines are required."""
    found = []
    for line in path.read_text().splitlines():
        required = _REQUIRED_LINE.match(line)
        match = required or _OPTIONAL_LINE.match(line)
        if match:
            found.append(ConfigVar(match["name"], match["value"], bool(required)))
    return found


def _check_images(images: list[Image], root: Path, worker_type: str) -> list[str]:
    problems = [
        f"images.conf: {image.dockerfile} ({image.role} {image.process_type}) "
        "does not exist"
        for image in images
        if not (root / image.dockerfile).is_file()
    ]
    problems += [
        f"images.conf: unknown role {image.role!r}; expected one of {ROLES}"
        for image in images
        if image.role not in ROLES
    ]
    types = {(image.role, image.process_type) for image in images}
    wanted = [
        ("gateway", "web"),
        ("orchestrator", "web"),
        ("orchestrator", worker_type),
    ]
    problems += [
        f"images.conf: no {process_type} image for the {role} app"
        for role, process_type in wanted
        if (role, process_type) not in types
    ]
    return problems


def heroku_problems(deploy_dir: Path, root: Path, worker_type: str) -> list[str]:
    """Report files deploy/heroku names that are missing, and missing images.

    worker_type is the process type the orchestrator starts one-off dynos
    with (its HEROKU_DYNO_TYPE default); images.conf must define it.
    """
    script = deploy_dir / "deploy.sh"
    if not script.is_file():
        return [f"{script} does not exist"]
    problems = [] if os.access(script, os.X_OK) else [f"{script} is not executable"]
    images_file = deploy_dir / "images.conf"
    if not images_file.is_file():
        return [*problems, f"{images_file} does not exist"]
    problems += _check_images(read_images(images_file), root, worker_type)
    for role in ROLES:
        example = deploy_dir / f"{role}.env.example"
        if not example.is_file():
            problems.append(f"{example} does not exist; deploy.sh reads it")
    return problems
