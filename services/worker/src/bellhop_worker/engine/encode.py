"""Dictionary-encode column values: codes into the sorted distinct values.

Every encoder returns (codes, dictionary): dictionary is the sorted list of
distinct non-missing values as Python objects, and codes[i] is the position
of row i's value in it, or len(dictionary) when row i is missing. Codes use
the narrowest unsigned dtype that fits len(dictionary).
"""

from __future__ import annotations

from typing import Any

import numpy as np

Encoded = tuple[np.ndarray, list[Any]]

# Integer columns whose max - min is below this are encoded with bincount
# (linear time); wider ones are sorted.
_BINCOUNT_SPAN = 1 << 22
# Rows sampled to reject a column with too many distinct values early.
_SAMPLE_ROWS = 20_000


def code_dtype(n_values: int) -> np.dtype:
    """Return the narrowest dtype for codes 0..n_values (n_values = missing)."""
    if n_values <= 255:
        return np.dtype(np.uint8)
    if n_values <= 65_535:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def encode_dictionary(
    indices: np.ndarray, valid: np.ndarray, values: list[Any]
) -> Encoded:
    """Re-encode an arrow dictionary array so codes follow sorted value order.

    Duplicate or null dictionary entries are merged or made missing.
    """
    ordered = sorted({value for value in values if value is not None})
    rank = {value: code for code, value in enumerate(ordered)}
    missing = len(ordered)
    remap = np.array(
        [rank.get(v, missing) if v is not None else missing for v in values]
    )
    remap = np.append(remap, missing).astype(code_dtype(missing))
    safe = np.where(valid, indices, len(values))
    return remap[safe], ordered


def encode_python(values: list[Any]) -> Encoded:
    """Encode a list of hashable Python values (None is missing)."""
    ordered = sorted({value for value in values if value is not None})
    rank = {value: code for code, value in enumerate(ordered)}
    missing = len(ordered)
    codes = np.fromiter(
        (rank.get(value, missing) for value in values),
        dtype=code_dtype(missing),
        count=len(values),
    )
    return codes, ordered


def encode_numbers(
    values: np.ndarray, valid: np.ndarray, max_distinct: int | None = None
) -> Encoded | None:
    """Encode numeric values; return None when more than max_distinct differ."""
    present = values[valid]
    if max_distinct is not None and _sample_exceeds(present, max_distinct):
        return None
    if present.dtype.kind in "iu" and len(present):
        low = int(present.min())
        if int(present.max()) - low < _BINCOUNT_SPAN:
            return _encode_small_ints(values, valid, present, low, max_distinct)
    distinct, inverse = np.unique(present, return_inverse=True)
    if max_distinct is not None and len(distinct) > max_distinct:
        return None
    codes = np.full(len(values), len(distinct), dtype=code_dtype(len(distinct)))
    codes[valid] = inverse
    return codes, distinct.tolist()


def _encode_small_ints(
    values: np.ndarray,
    valid: np.ndarray,
    present: np.ndarray,
    low: int,
    max_distinct: int | None,
) -> Encoded | None:
    counts = np.bincount((present - low).astype(np.int64))
    offsets = np.flatnonzero(counts)
    if max_distinct is not None and len(offsets) > max_distinct:
        return None
    dtype = code_dtype(len(offsets))
    lookup = np.full(len(counts), len(offsets), dtype=dtype)
    lookup[offsets] = np.arange(len(offsets))
    shifted = np.where(valid, values.astype(np.int64) - low, 0)
    codes = np.where(valid, lookup[shifted], len(offsets)).astype(dtype)
    return codes, (offsets + low).tolist()


def _sample_exceeds(present: np.ndarray, max_distinct: int) -> bool:
    # A set, not np.unique, which imports numpy.ma on its first call.
    return len(set(present[:_SAMPLE_ROWS].tolist())) > max_distinct
