"""Facet counts: how many selected rows contain each value of each facet field.

A selection of more than half of the rows is counted through its complement.
Each value's count is then its total over all rows, kept from load time,
minus its count over the unselected rows. A selection of every row returns
those totals without touching a bitset.

Facet fields are counted in groups (see FacetGroup): each group's rows carry
one joint code, so one pass over the counted rows counts every field of the
group. The rows actually counted (the selection or its complement) go
through the cheaper of two kernels per group:
- bincount: gather the joint codes of the counted rows, np.bincount them
  and sum the result over the other fields of the group; costs the number
  of counted rows, plus extracting their row numbers once for all groups.
- popcount: AND each field's (values, words) bitset matrix with the counted
  rows and popcount each row of the result; costs values x words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bellhop_worker.engine import bitset
from bellhop_worker.engine.columns import Column
from bellhop_worker.engine.encode import code_dtype

# The maximum number of cells of a group: the product of its fields' value
# counts, the missing value included. Every field's count is a sum over all
# cells, so small groups keep those sums cheap next to the pass over the rows.
MAX_GROUP_CELLS = 4096

# Costs in units of one matrix word of the popcount kernel (about 1.4 ns).
# Estimates from timing the kernels at 1,000,000 rows on a busy 2-core
# machine (numpy 2.4). The word cost of extracting row numbers is the worst
# case, a selection spread over every word, and a clustered one costs less.
BINCOUNT_ROW_COST = 1.7
EXTRACT_ROW_COST = 2.0
EXTRACT_WORD_COST = 24.0


@dataclass(frozen=True)
class FacetGroup:
    """Facet fields counted together through one joint code per row.

    A row's joint code is the C-order index of its fields' codes in an array
    of `shape`, where a field's missing code is its last slot. A group of
    one field uses that field's codes.
    """

    columns: tuple[Column, ...]
    shape: tuple[int, ...]
    codes: np.ndarray

    @property
    def n_cells(self) -> int:
        return math.prod(self.shape)

    @property
    def n_values(self) -> int:
        return sum(size - 1 for size in self.shape)

    def index_bytes(self) -> int:
        """Return the bytes of the joint codes that no column already holds."""
        return self.codes.nbytes if len(self.columns) > 1 else 0

    def split(self, cell_counts: np.ndarray) -> list[np.ndarray]:
        """Return each field's count per code from the count per joint code.

        Each step views the counts of the remaining fields as a (first
        field, others) matrix and sums its rows and its columns. Summing
        over several axes of the whole array at once measured 3 to 6 times
        slower for three fields.
        """
        counts = []
        rest = cell_counts
        for size in self.shape[:-1]:
            matrix = rest.reshape(size, -1)
            counts.append(np.add.reduce(matrix, axis=1)[: size - 1])
            rest = np.add.reduce(matrix, axis=0)
        counts.append(rest[: self.shape[-1] - 1])
        return counts


def group_facets(columns: list[Column]) -> list[FacetGroup]:
    """Pack facet columns into groups of at most MAX_GROUP_CELLS cells.

    First fit by decreasing size: each column joins the first group that
    stays within the limit, else starts a group. A column larger than the
    limit is a group of its own. The group of the largest column comes
    first, so the group most likely to use bincount pays for the row
    extraction that later groups reuse.
    """
    packed: list[list[Column]] = []
    for column in sorted(columns, key=_cell_count, reverse=True):
        for members in packed:
            if math.prod(map(_cell_count, members)) * _cell_count(column) <= (
                MAX_GROUP_CELLS
            ):
                members.append(column)
                break
        else:
            packed.append([column])
    return [_build_group(members) for members in packed]


def _cell_count(column: Column) -> int:
    return len(column.dictionary or ()) + 1


def _build_group(columns: list[Column]) -> FacetGroup:
    shape = tuple(_cell_count(column) for column in columns)
    if len(columns) == 1:
        assert columns[0].codes is not None
        return FacetGroup((columns[0],), shape, columns[0].codes)
    dtype = code_dtype(math.prod(shape) - 1)
    codes = np.zeros(columns[0].n_rows, dtype=dtype)
    for column, stride in zip(columns, _strides(shape), strict=True):
        assert column.codes is not None
        codes += column.codes.astype(dtype) * dtype.type(stride)
    codes.flags.writeable = False
    return FacetGroup(tuple(columns), shape, codes)


def _strides(shape: tuple[int, ...]) -> list[int]:
    """Return the C-order stride of each axis of shape, in cells."""
    return [math.prod(shape[axis + 1 :]) for axis in range(len(shape))]


class FacetCounter:
    """Count facet values over one selection, extracting its row numbers once."""

    def __init__(
        self, bits: np.ndarray, count: int, all_rows: np.ndarray, n_rows: int
    ) -> None:
        self._complemented = count * 2 > n_rows
        self._count = n_rows - count if self._complemented else count
        self._bits = bits
        if self._complemented and self._count > 0:
            # bits is a subset of all_rows, so XOR leaves exactly the other rows.
            self._bits = np.bitwise_xor(bits, all_rows)
        self._rows: np.ndarray | None = None

    def selected_rows(self) -> np.ndarray | None:
        """Return the selection's row numbers if counting extracted them."""
        return None if self._complemented else self._rows

    def all_json(
        self, columns: list[Column], groups: list[FacetGroup]
    ) -> dict[str, dict[str, int]]:
        """Return {field: {value: count}} for every value of columns, zeros included.

        groups are the index's facet groups, which hold every facet column.
        """
        counted: dict[str, np.ndarray] = {}
        for group in _groups_for(columns, groups):
            for column, counts in zip(group.columns, self.counts(group), strict=True):
                counted[column.name] = counts
        return {
            column.name: _as_json(column, counted[column.name]) for column in columns
        }

    def counts(self, group: FacetGroup) -> list[np.ndarray]:
        """Return the number of selected rows per code of each field of group."""
        if self._complemented and self._count == 0:
            return [_totals(column) for column in group.columns]
        counted = self._count_rows(group)
        if not self._complemented:
            return counted
        return [
            _totals(column) - counts
            for column, counts in zip(group.columns, counted, strict=True)
        ]

    def _count_rows(self, group: FacetGroup) -> list[np.ndarray]:
        """Return the counted rows (selection or complement) per code per field."""
        if self._count == 0:
            return [np.zeros(size - 1, dtype=np.int64) for size in group.shape]
        if self._bincount_cost() < group.n_values * len(self._bits):
            cell_codes = group.codes[self._counted_rows()]
            return group.split(np.bincount(cell_codes, minlength=group.n_cells))
        return [self._popcount(column) for column in group.columns]

    def _popcount(self, column: Column) -> np.ndarray:
        assert column.bitsets is not None
        hits = np.bitwise_and(column.bitsets, self._bits)
        return np.bitwise_count(hits).sum(axis=1, dtype=np.int64)

    def _bincount_cost(self) -> float:
        cost = self._count * BINCOUNT_ROW_COST
        if self._rows is None:
            cost += self._count * EXTRACT_ROW_COST
            cost += len(self._bits) * EXTRACT_WORD_COST
        return cost

    def _counted_rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = bitset.rows(self._bits)
        return self._rows


def _groups_for(columns: list[Column], groups: list[FacetGroup]) -> list[FacetGroup]:
    """Return the groups that count columns; a lone column is counted alone."""
    names = {column.name for column in columns}
    chosen = []
    for group in groups:
        members = [column for column in group.columns if column.name in names]
        if len(members) == 1 and len(group.columns) > 1:
            chosen.append(_build_group(members))
        elif members:
            chosen.append(group)
    return chosen


def _as_json(column: Column, counts: np.ndarray) -> dict[str, int]:
    assert column.facet_keys is not None
    return dict(zip(column.facet_keys, counts.tolist(), strict=True))


def _totals(column: Column) -> np.ndarray:
    assert column.totals is not None
    return column.totals
