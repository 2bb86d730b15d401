"""Replay a Dockerfile's builder stage on this machine, without Docker.

The builder's COPY sources are copied (minus what .dockerignore drops) into a
scratch directory, and its `uv` RUN commands run there offline against the uv
cache that `make install` filled, into a scratch virtual environment that
replaces the image's /app/.venv.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from dockerfile_checks import (
    DockerIgnore,
    env_values,
    parse_dockerfile,
    run_commands,
    split_flags,
)
from support import REPO


def dockerfile_of(service: str) -> Path:
    return REPO / "services" / service / "Dockerfile"


def builder_stage(service: str) -> int:
    """Return the index of the stage named `builder`."""
    stages = [
        i.arguments
        for i in parse_dockerfile(dockerfile_of(service))
        if i.keyword == "FROM"
    ]
    return next(i for i, args in enumerate(stages) if args.endswith(" AS builder"))


def stage_copy_sources(service: str) -> list[str]:
    """Return the context sources copied while the builder stage runs."""
    dockerfile = dockerfile_of(service)
    stage = -1
    sources = []
    for instruction in parse_dockerfile(dockerfile):
        stage += instruction.keyword == "FROM"
        if instruction.keyword == "COPY" and stage == builder_stage(service):
            flags, paths = split_flags(instruction.arguments)
            sources += [] if "from" in flags else paths[:-1]
    return sources


def build_context_copy(service: str, destination: Path) -> None:
    """Copy what the builder stage copies, minus what .dockerignore drops."""
    ignore = DockerIgnore.from_file(REPO / ".dockerignore")
    for source in stage_copy_sources(service):
        origin = REPO / source
        files = [origin] if origin.is_file() else sorted(origin.rglob("*"))
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            if file.is_file() and not ignore.is_excluded(relative):
                target = destination / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


def replay_uv_commands(service: str, workdir: Path, venv: Path, uv: str) -> None:
    """Run the builder's `uv` RUN commands offline, from the local uv cache."""
    env = dict(os.environ)
    env.update(env_values(dockerfile_of(service), builder_stage(service)))
    env.pop("UV_NO_CACHE", None)
    env.pop("VIRTUAL_ENV", None)
    # Offline from the cache `make install` filled. Hard links and no bytecode
    # keep the test fast; neither changes which packages get installed.
    env.update(
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_OFFLINE="1",
        UV_PYTHON=sys.executable,
        UV_LINK_MODE="hardlink",
        UV_COMPILE_BYTECODE="0",
    )
    commands = [
        c
        for c in run_commands(dockerfile_of(service), builder_stage(service))
        if c.startswith("uv ")
    ]
    assert commands, f"the {service} builder stage runs no uv command"
    for command in commands:
        argv = [uv, *shlex.split(command)[1:]]
        result = subprocess.run(
            argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, f"{command}\n{result.stderr}"


def build_image_venv(service: str, uv: str, scratch: Path) -> Path:
    """Replay the builder stage of a service's image; return its venv path."""
    workdir = scratch / "src"
    venv = scratch / "venv"
    build_context_copy(service, workdir)
    replay_uv_commands(service, workdir, venv, uv)
    return venv
