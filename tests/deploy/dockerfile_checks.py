"""Static checks of the Dockerfiles: instructions, COPY sources, .dockerignore.

Each check returns a list of problems (empty when all is well), so a test can
run it on the real files and on a broken copy alike.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

# Directories that never belong in a build context; the checks skip them.
_SKIPPED_DIRS = {"__pycache__", "node_modules"}


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str
    arguments: str
    line: int


def parse_dockerfile(path: Path) -> list[Instruction]:
    """Return the instructions of a Dockerfile, comments dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        stripped = raw.strip()
        # Docker drops comment and blank lines, even inside a continuation.
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, arguments = " ".join(pending).partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
            pending = []
    return instructions


def split_flags(arguments: str) -> tuple[dict[str, str], list[str]]:
    """Split COPY/ADD arguments into their --flags and their paths.

    The paths may be in shell form (`a b dest/`) or JSON form (`["a", "dest/"]`).
    """
    flags: dict[str, str] = {}
    rest = arguments.strip()
    while rest.startswith("--"):
        flag, _, rest = rest.partition(" ")
        name, _, value = flag[2:].partition("=")
        flags[name] = value
        rest = rest.strip()
    paths = json.loads(rest) if rest.startswith("[") else shlex.split(rest)
    return flags, paths


def copy_sources(dockerfile: Path) -> list[tuple[int, str]]:
    """Return (line, source) for every COPY/ADD source taken from the context."""
    sources: list[tuple[int, str]] = []
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword not in {"COPY", "ADD"}:
            continue
        flags, paths = split_flags(instruction.arguments)
        if "from" in flags:
            continue
        sources += [(instruction.line, path) for path in paths[:-1]]
    return sources


def env_values(dockerfile: Path, stage: int = -1) -> dict[str, str]:
    """Return the ENV assignments of one build stage (default: the last)."""
    stages: list[dict[str, str]] = []
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword == "FROM":
            stages.append({})
        elif instruction.keyword == "ENV":
            for word in shlex.split(instruction.arguments):
                name, _, value = word.partition("=")
                stages[-1][name] = value
    return stages[stage]


def run_commands(dockerfile: Path, stage: int) -> list[str]:
    """Return the RUN commands of one build stage, in order."""
    stage_runs: list[list[str]] = []
    for instruction in parse_dockerfile(dockerfile):
        if instruction.keyword == "FROM":
            stage_runs.append([])
        elif instruction.keyword == "RUN":
            stage_runs[-1].append(instruction.arguments)
    return stage_runs[stage]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """Translate one .dockerignore pattern (Go filepath.Match plus `**`)."""
    parts: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            parts.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            parts.append(".*")
            i += 2
        elif pattern[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            parts.append("[^/]")
            i += 1
        elif pattern[i] == "[" and "]" in pattern[i + 1 :]:
            # A character class, e.g. [co]; Go and Python share the syntax.
            end = pattern.index("]", i + 1)
            parts.append(pattern[i : end + 1])
            i = end + 1
        else:
            parts.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(parts))


class DockerIgnore:
    """The rules of a .dockerignore file, applied the way Docker applies them.

    A path is excluded when it or one of its parent directories matches a
    pattern; a later `!pattern` that matches re-includes it. The last
    matching pattern decides.
    """

    def __init__(self, lines: list[str]) -> None:
        self._rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line[1:].strip() if negated else line
            self._rules.append((negated, _pattern_regex(pattern.strip("/"))))

    @classmethod
    def from_file(cls, path: Path) -> DockerIgnore:
        return cls(path.read_text().splitlines() if path.exists() else [])

    def is_excluded(self, relative_path: str) -> bool:
        parts = relative_path.strip("/").split("/")
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for negated, regex in self._rules:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not negated
        return excluded


def _files_under(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return [
        file
        for file in sorted(path.rglob("*"))
        if file.is_file() and not _SKIPPED_DIRS & set(file.relative_to(path).parts)
    ]


def check_copy_sources(dockerfile: Path, context: Path) -> list[str]:
    """Report COPY/ADD sources that are missing or that .dockerignore drops."""
    ignore = DockerIgnore.from_file(context / ".dockerignore")
    problems: list[str] = []
    for line, source in copy_sources(dockerfile):
        where = f"{dockerfile.name}:{line} COPY {source}"
        target = context / source
        if not target.exists():
            problems.append(f"{where}: no such path in the build context")
            continue
        files = _files_under(target)
        if not files:
            problems.append(f"{where}: the directory holds no files")
        for file in files:
            relative = file.relative_to(context).as_posix()
            if ignore.is_excluded(relative):
                problems.append(f"{where}: .dockerignore excludes {relative}")
    return problems
