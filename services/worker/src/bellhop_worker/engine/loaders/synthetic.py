"""Synthetic source: spec.rows generated rows, the same for every load.

Facet fields (distinct values): segment (2), region (5), weekday (7, int),
channel (12), category (20), store (100, int). Numeric fields: amount
(log-normal, about 2% missing), quantity (int 1..50), score (normal).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from bellhop_shared.catalog import DatasetSpec

from bellhop_worker.engine.arrays import from_numpy, string_array
from bellhop_worker.engine.progress import ProgressCallback
from bellhop_worker.errors import DatasetError

SEED = 20130101
MAX_ROWS = 100_000_000
MISSING_AMOUNT_SHARE = 0.02

_STRING_FACETS = {
    "segment": ["consumer", "business"],
    "region": ["north", "south", "east", "west", "central"],
    "channel": [f"channel-{n:02d}" for n in range(12)],
    "category": [f"category-{n:02d}" for n in range(20)],
}


def load_synthetic(
    spec: DatasetSpec, user: str | None, report: ProgressCallback
) -> pa.Table:
    n_rows = spec.rows if spec.rows is not None else 1_000_000
    if not 0 <= n_rows <= MAX_ROWS:
        raise DatasetError(
            f"Synthetic dataset {spec.name!r} asks for {n_rows} rows; use 0 to "
            f"{MAX_ROWS} in its catalog entry."
        )
    return synthetic_table(n_rows, report)


def synthetic_table(n_rows: int, report: ProgressCallback = lambda _: None) -> pa.Table:
    """Generate the table; equal n_rows always give equal tables."""
    rng = np.random.default_rng(SEED)
    columns: dict[str, pa.Array] = {}
    for name, labels in _STRING_FACETS.items():
        codes = _skewed_codes(rng, len(labels), n_rows)
        indices = from_numpy(codes)
        columns[name] = pa.DictionaryArray.from_arrays(indices, string_array(labels))
    report(0.4)
    columns["weekday"] = from_numpy(rng.integers(1, 8, n_rows, dtype=np.int8))
    columns["store"] = from_numpy(rng.integers(0, 100, n_rows, dtype=np.int16))
    columns["quantity"] = from_numpy(rng.integers(1, 51, n_rows, dtype=np.int16))
    report(0.6)
    amount = np.round(rng.lognormal(3.0, 1.0, n_rows), 2)
    missing = rng.random(n_rows) < MISSING_AMOUNT_SHARE
    columns["amount"] = from_numpy(amount, missing)
    columns["score"] = from_numpy(rng.normal(50.0, 15.0, n_rows))
    report(1.0)
    return pa.table(columns)


def _skewed_codes(rng: np.random.Generator, n_values: int, n_rows: int) -> np.ndarray:
    """Draw codes with weights 1, 1/2, 1/3, ... so facet counts differ."""
    weights = 1.0 / np.arange(1, n_values + 1)
    cumulative = np.cumsum(weights / weights.sum())
    codes = np.searchsorted(cumulative, rng.random(n_rows), side="right")
    return np.minimum(codes, n_values - 1).astype(np.int8)
