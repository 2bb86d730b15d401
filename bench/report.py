"""Results of the benchmark suite and the page they are written to.

docs/benchmarks.md is shared: other scripts own some of its `## ` sections
(for example "Filter kernel" and "Dataset load"), and a person may add
sections by hand. `write_sections` replaces only the sections whose titles
this suite produces and keeps every other one as it is, in place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import Stats

PAGE_TITLE = "# Benchmarks"


@dataclass
class Context:
    """Settings and results that the benchmarks of one run share."""

    quick: bool
    work_dir: Path
    profile: bool = True
    # Sections already produced in this run, by benchmark name, so a later
    # benchmark can report an earlier one's number beside its own.
    results: dict[str, Section] = field(default_factory=dict)

    def log_dir(self, name: str) -> Path:
        directory = self.work_dir / name
        directory.mkdir(parents=True, exist_ok=True)
        return directory


@dataclass
class Target:
    """One target of the issues, with what this run measured."""

    name: str
    goal: str
    measured: str
    met: bool | None  # None: not measured in this run


@dataclass
class Section:
    """One `## ` section of the page, plus its numbers for the JSON output."""

    title: str
    lines: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    error: str | None = None

    def markdown(self) -> str:
        body = list(self.lines)
        if self.error is not None:
            body += ["", f"This benchmark failed in this run: {self.error}"]
        return "\n".join([f"## {self.title}", "", *body]).rstrip() + "\n"


def ms(value: float) -> str:
    """Format milliseconds with precision that suits their size."""
    if value != value:  # NaN
        return "n/a"
    if value < 10:
        return f"{value:.2f}"
    if value < 100:
        return f"{value:.1f}"
    return f"{value:.0f}"


def stats_header() -> list[str]:
    return [
        "| path | n | p50 ms | p90 ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]


def stats_row(name: str, stats: Stats) -> str:
    cells = [ms(stats.p50), ms(stats.p90), ms(stats.p99), ms(stats.max)]
    return f"| {name} | {stats.n} | " + " | ".join(cells) + " |"


def verdict(met: bool | None) -> str:
    if met is None:
        return "not measured"
    return "met" if met else "missed"


def _split_sections(text: str) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Split a page into the lines before the first `## ` and (title, lines) pairs."""
    preamble: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if line.startswith("## "):
            sections.append((line[3:].strip(), [line]))
        elif sections:
            sections[-1][1].append(line)
        else:
            preamble.append(line)
    return preamble, sections


def write_sections(path: Path, sections: list[Section]) -> None:
    """Replace this suite's sections in the page at path, keeping all others."""
    text = path.read_text() if path.exists() else f"{PAGE_TITLE}\n"
    preamble, existing = _split_sections(text)
    produced = {section.title: section.markdown() for section in sections}
    blocks = ["\n".join(preamble).rstrip() + "\n"]
    for title, lines in existing:
        if title in produced:
            blocks.append(produced.pop(title))
        else:
            blocks.append("\n".join(lines).rstrip() + "\n")
    blocks.extend(produced.values())
    path.write_text("\n".join(blocks))
