"""Facet counts: how many selected rows hold each value of each facet field.

Two kernels give the same counts, and each field takes the cheaper one:
- popcount: AND the field's (values, words) bitset matrix with the selection
  and popcount along each row; costs values x words.
- bincount: gather the codes of the selected rows and np.bincount them;
  costs the number of selected rows, so it wins for narrow selections.
"""

from __future__ import annotations

import numpy as np

from bellhop_worker.engine import bitset
from bellhop_worker.engine.columns import Column, facet_key

# Estimated cost of bincount per selected row, in matrix words (the popcount
# kernel's unit); measured with bench/bench_kernel.py on numpy 2.
BINCOUNT_ROW_COST = 4.0


class FacetCounter:
    """Count facet values over one selection, extracting its row numbers once."""

    def __init__(self, bits: np.ndarray, count: int) -> None:
        self._bits = bits
        self._count = count
        self._rows: np.ndarray | None = None

    def counts(self, column: Column) -> np.ndarray:
        """Return the number of selected rows per dictionary code of column."""
        assert column.bitsets is not None and column.codes is not None
        n_values, n_words = column.bitsets.shape
        if self._count * BINCOUNT_ROW_COST < n_values * n_words:
            selected_codes = column.codes[self.rows()]
            return np.bincount(selected_codes, minlength=n_values + 1)[:n_values]
        hits = np.bitwise_and(column.bitsets, self._bits)
        return np.bitwise_count(hits).sum(axis=1, dtype=np.int64)

    def rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = bitset.rows(self._bits)
        return self._rows

    def as_json(self, column: Column) -> dict[str, int]:
        """Return {value: count} for every value of column, zeros included."""
        assert column.dictionary is not None
        counts = self.counts(column).tolist()
        keys = (facet_key(column.type, value) for value in column.dictionary)
        return dict(zip(keys, counts, strict=True))
