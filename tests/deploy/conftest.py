"""Fixtures for the deployment checks: linters and replayed image environments."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from image_builds import build_image_venv
from support import VENV_BIN, skip_or_fail


def find_tool(name: str) -> str:
    """Return the path of a linter the dev dependencies install, else skip."""
    candidate = VENV_BIN / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} is not installed; run `make install` (dev dependencies)")
    return str(found)


@pytest.fixture(scope="session")
def hadolint() -> str:
    return find_tool("hadolint")


@pytest.fixture(scope="session")
def shellcheck() -> str:
    return find_tool("shellcheck")


@pytest.fixture(scope="session")
def uv() -> str:
    return find_tool("uv")


@pytest.fixture(scope="session")
def image_venv(
    uv: str, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """Return a function that replays a service image's builder stage once."""
    built: dict[str, Path] = {}

    def build(service: str) -> Path:
        if service not in built:
            scratch = tmp_path_factory.mktemp(f"{service}-image")
            built[service] = build_image_venv(service, uv, scratch)
        return built[service]

    return build
