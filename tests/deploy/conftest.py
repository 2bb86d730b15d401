"""Fixtures for the deployment checks: the linters from the dev dependencies."""

from __future__ import annotations

import shutil

import pytest
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
