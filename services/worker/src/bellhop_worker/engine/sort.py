"""Top-k ordering of the selected rows by a numeric field.

np.partition finds the k-th smallest (or largest) value, k = offset + limit,
in linear time. Only the k rows up to it are then sorted, never all selected
rows. Ties are broken by row number ascending and missing values come last
in both orders, so pages are stable across requests.
"""

from __future__ import annotations

import numpy as np

from bellhop_worker.engine import bitset
from bellhop_worker.engine.columns import Column


def sorted_page(
    bits: np.ndarray, column: Column, descending: bool, offset: int, limit: int
) -> np.ndarray:
    """Return the row numbers at positions offset..offset+limit-1 of the order."""
    assert column.values is not None and column.valid_bits is not None
    k = offset + limit
    valid_rows = bitset.rows(bits & column.valid_bits)
    ordered = _top_k(valid_rows, column.values[valid_rows], k, descending)
    if len(ordered) < k:
        missing_rows = bitset.rows(bits & ~column.valid_bits)
        ordered = np.concatenate([ordered, missing_rows[: k - len(ordered)]])
    return ordered[offset:k]


def _top_k(
    rows: np.ndarray, values: np.ndarray, k: int, descending: bool
) -> np.ndarray:
    """Return the rows of the k first values in order, ties by row ascending."""
    if k < len(values):
        threshold = _kth_value(values, k, descending)
        better = values > threshold if descending else values < threshold
        better_positions = np.flatnonzero(better)
        # Rows are ascending, so the first ties by position are the first by row.
        ties = np.flatnonzero(values == threshold)[: k - len(better_positions)]
        keep = np.concatenate([better_positions, ties])
        rows, values = rows[keep], values[keep]
    ranks = np.unique(values, return_inverse=True)[1]
    primary = -ranks if descending else ranks
    order = np.lexsort((rows, primary))
    return rows[order][:k]


def _kth_value(values: np.ndarray, k: int, descending: bool) -> float:
    position = len(values) - k if descending else k - 1
    return np.partition(values, position)[position]
