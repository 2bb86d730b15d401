"""docs/deploy.md: every repository path it names exists."""

from __future__ import annotations

import re

from support import REPO

DOC = REPO / "docs" / "deploy.md"
# A repository path inside backticks, e.g. `deploy/heroku/deploy.sh`.
_PATH = re.compile(r"(?<![\w./-])((?:deploy|services|shared|tests|docs)/[\w./-]*\w)")


def test_deploy_doc_paths_exist() -> None:
    named = set()
    for code in re.findall(r"`([^`]+)`", DOC.read_text()):
        named |= set(_PATH.findall(code))

    assert "deploy/heroku/deploy.sh" in named
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert missing == []
