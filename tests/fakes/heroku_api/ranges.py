"""Parse and apply the Platform API's Range header: `id ]<start>..<end>; max=N`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DEFAULT_MAX = 200
MAX_MAX = 1000
_RANGE = re.compile(
    r"^\s*(?P<field>id|name)\s*(?P<exclusive>\]?)(?P<start>[^.;\s]*)\.\."
    r"(?P<end>[^;\s]*)\s*(?:;\s*(?P<options>[^;]*);?)?\s*$"
)


class RangeError(ValueError):
    """The Range header cannot be satisfied (HTTP 416)."""


@dataclass(frozen=True)
class Range:
    field: str = "id"
    start: str = ""
    exclusive: bool = False
    end: str = ""
    max: int = DEFAULT_MAX
    descending: bool = False

    def next_range(self, last: str) -> str:
        order = ", order=desc" if self.descending else ""
        return f"{self.field} ]{last}..; max={self.max}{order};"


def parse_range(header: str | None) -> Range:
    if not header:
        return Range()
    match = _RANGE.match(header)
    if match is None:
        raise RangeError(f"Invalid Range header {header!r}; expected `id ..; max=N;`.")
    options = _parse_options(match.group("options") or "")
    size = int(options.get("max", DEFAULT_MAX))
    if not 1 <= size <= MAX_MAX:
        raise RangeError(f"Range max must be 1 to {MAX_MAX}, got {size}.")
    return Range(
        field=match.group("field"),
        start=match.group("start"),
        exclusive=bool(match.group("exclusive")),
        end=match.group("end"),
        max=size,
        descending=options.get("order") == "desc",
    )


def _parse_options(text: str) -> dict[str, str]:
    options: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in {"max", "order"}:
            raise RangeError(f"Unknown Range option {part!r}.")
        if key == "max" and not value.isdigit():
            raise RangeError(f"Range max must be a number, got {value!r}.")
        options[key] = value
    return options


def apply_range(
    items: list[dict[str, Any]], requested: Range
) -> tuple[list[dict[str, Any]], bool]:
    """Return the page of items and whether more items follow it."""
    ordered = sorted(items, key=lambda item: str(item[requested.field]))
    if requested.descending:
        ordered.reverse()
    selected = [
        item for item in ordered if _in_range(str(item[requested.field]), requested)
    ]
    return selected[: requested.max], len(selected) > requested.max


def _in_range(value: str, requested: Range) -> bool:
    before, after = (
        (lambda a, b: a > b, lambda a, b: a < b)
        if requested.descending
        else (lambda a, b: a < b, lambda a, b: a > b)
    )
    if requested.start:
        if before(value, requested.start):
            return False
        if requested.exclusive and value == requested.start:
            return False
    return not (requested.end and after(value, requested.end))
