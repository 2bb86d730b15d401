"""The worker's in-memory dataset engine: bitmask filtering and aggregates.

The worker runtime uses only `Engine`: `Engine.load` once, then `describe`,
`filter` and `compute` per request. Each facet value is a packed bitset (one
bit per row), so a filter is a few word-wise ORs and ANDs over rows / 64
words and a facet count is a popcount. The methods raise InvalidParams for
bad params; loading raises DatasetError for a bad source. Nothing here logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
from bellhop_shared.catalog import DatasetSpec

from bellhop_worker.engine import bitset
from bellhop_worker.engine.build import build_columns
from bellhop_worker.engine.columns import Column, to_json
from bellhop_worker.engine.compute import run_compute
from bellhop_worker.engine.filter import run_filter
from bellhop_worker.engine.index import Index
from bellhop_worker.engine.loaders import load_table
from bellhop_worker.engine.progress import Progress
from bellhop_worker.errors import DatasetError

__all__ = ["Engine"]

# Share of the load progress spent reading the source; indexing takes the rest.
READ_SHARE = 0.8


class Engine:
    """One loaded dataset and the request methods that run on it."""

    def __init__(self, index: Index, load_ms: float) -> None:
        self.index = index
        self.load_ms = load_ms

    @classmethod
    def load(
        cls, spec: DatasetSpec, user: str | None, progress: Callable[[float], None]
    ) -> Engine:
        """Read and index spec's dataset, reporting progress 0..1 as it goes.

        Raises DatasetError when the source is missing, unreadable or malformed.
        """
        started = time.perf_counter()
        tracker = Progress(progress)
        tracker.report(0.0)
        table = load_table(spec, user, tracker.phase(0.0, READ_SHARE))
        engine = cls.from_table(table, spec, tracker.phase(READ_SHARE, 1.0))
        engine.load_ms = (time.perf_counter() - started) * 1000
        tracker.report(1.0)
        return engine

    @classmethod
    def from_table(
        cls,
        table: pa.Table,
        spec: DatasetSpec,
        progress: Callable[[float], None] = lambda _: None,
    ) -> Engine:
        """Index an already loaded table (tests and benchmarks use this)."""
        started = time.perf_counter()
        built = build_columns(table, spec, progress)
        index = Index(
            name=spec.name,
            columns=built.columns,
            n_rows=built.n_rows,
            raw_bytes=built.raw_bytes,
            id_column=spec.id_column,
        )
        _check_id_column(index)
        return cls(index, (time.perf_counter() - started) * 1000)

    def describe(self) -> dict[str, Any]:
        """Return the dataset's name, size, fields, load time and memory use."""
        index = self.index
        return {
            "dataset": index.name,
            "rows": index.n_rows,
            "fields": {name: describe_column(c) for name, c in index.columns.items()},
            "load_ms": round(self.load_ms, 1),
            "memory": {
                "index_bytes": index.index_bytes(),
                "raw_bytes": index.raw_bytes,
            },
            "id_column": index.id_column,
        }

    def filter(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Run a filter request; see bellhop_worker.engine.filter for params."""
        return run_filter(self.index, params)

    def compute(self, params: dict[str, Any] | None) -> dict[str, Any]:
        """Run a compute request; see bellhop_worker.engine.compute for params."""
        return run_compute(self.index, params)


def describe_column(column: Column) -> dict[str, Any]:
    """Describe one field.

    kind is "facet" (with every value's count), "numeric" (min, max) or "text"
    (distinct count). A facet of a numeric type also has "numeric": true and
    min and max, because range filters and compute work on it.
    """
    info: dict[str, Any] = {"kind": column.kind, "type": column.type}
    if column.is_facet:
        assert column.totals is not None and column.facet_keys is not None
        counts = column.totals.tolist()
        info["values"] = dict(zip(column.facet_keys, counts, strict=True))
    elif column.kind == "text":
        info["distinct"] = len(column.dictionary or ())
    if column.is_numeric:
        info.update(numeric_summary(column))
    info["missing"] = _missing_count(column)
    return info


def numeric_summary(column: Column) -> dict[str, Any]:
    assert column.values is not None and column.valid_bits is not None
    valid = column.values[bitset.to_bool(column.valid_bits, column.n_rows)]
    if len(valid) == 0:
        return {"numeric": True, "min": None, "max": None}
    low, high = valid.min().item(), valid.max().item()
    return {
        "numeric": True,
        "min": to_json(column.type, low),
        "max": to_json(column.type, high),
    }


def _missing_count(column: Column) -> int:
    if column.valid_bits is not None:
        return column.n_rows - bitset.popcount(column.valid_bits)
    if column.codes is not None:
        return int((column.codes == column.missing_code).sum())
    return 0


def _check_id_column(index: Index) -> None:
    if index.id_column is None:
        return
    column = index.columns[index.id_column]
    distinct = len(column.dictionary) if column.dictionary is not None else None
    if distinct is None:
        distinct = len(column.distinct_values())
    if distinct != index.n_rows or _missing_count(column) > 0:
        raise DatasetError(
            f"The id column {index.id_column!r} of dataset {index.name!r} must hold "
            f"a distinct, non-missing value per row, but it has {distinct} distinct "
            f"values over {index.n_rows} rows; fix the data or the catalog's id_column."
        )
