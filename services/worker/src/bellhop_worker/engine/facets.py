"""Facet counts: how many selected rows contain each value of each facet field.

A selection of more than half of the rows is counted through its complement.
Each value's count is then its total over all rows, kept from load time,
minus its count over the unselected rows. A selection of every row returns
those totals without touching a bitset.

Facet fields are counted in groups (see FacetGroup): each group's rows carry
one joint code, so one pass over the counted rows counts every field of the
group. The rows actually counted (the selection or its complement) go
through the cheaper of two kernels per group:
- bincount: gather the joint codes of the counted rows, count each code
  (count_codes) and sum the result over the other fields of the group;
  costs the number of counted rows, plus extracting their row numbers once
  for all groups.
- popcount: AND each field's (values, words) bitset matrix with the counted
  rows and popcount each row of the result; costs values x words.
When every group of the index takes bincount, one gather and one count over
a matrix of all the groups' codes (FacetGroups) count every group together.
"""

from __future__ import annotations

import functools
import itertools
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
    """Facet fields counted together through one cell number per row.

    A row's joint code is the C-order index of its fields' codes in an array
    of `shape`, where a field's missing code is its last slot. `codes` contains
    each row's cell number, cells.start plus its joint code. The groups of an
    index number their cells in disjoint ranges, so one count_codes call can
    count all of them. A group built alone starts at cell 0, and if it has one
    field its codes are that field's codes.
    """

    columns: tuple[Column, ...]
    shape: tuple[int, ...]
    codes: np.ndarray
    cells: slice

    @property
    def n_cells(self) -> int:
        return self.cells.stop - self.cells.start

    @functools.cached_property
    def n_values(self) -> int:
        return sum(size - 1 for size in self.shape)

    def count_cells(self, rows: np.ndarray) -> np.ndarray:
        """Return the number of rows per joint code, for the given row numbers."""
        return count_codes(self.codes[rows], self.cells.stop)[self.cells]

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


@dataclass(frozen=True)
class FacetGroups:
    """The facet groups of an index and one matrix of all their cell numbers.

    `codes` is a read-only C-order (rows, groups) matrix whose column i is
    groups[i].codes (a view), so one gather takes the cell numbers of every
    group for a set of rows. Its dtype fits n_cells, the cells of all groups
    together, so it is uint32 past 65,536 cells.
    """

    groups: tuple[FacetGroup, ...]
    codes: np.ndarray
    n_cells: int

    def index_bytes(self) -> int:
        """Return the bytes of the cell numbers, which no column contains."""
        return self.codes.nbytes

    def count_cells(self, rows: np.ndarray) -> np.ndarray:
        """Return the number of rows per cell number, for the given row numbers."""
        # np.take along axis 0 measured about 14 times faster than codes[rows]
        # for 7,948 rows of 4 uint16 columns (numpy 2.4, 2 cores).
        cells = np.take(self.codes, rows, axis=0)
        return count_codes(cells.ravel(), self.n_cells)


def count_codes(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Return the number of occurrences of each code 0 .. n_codes-1.

    Every code must be below n_codes.
    """
    # np.add.at on intp codes measured 18 to 26% faster than np.bincount from
    # 8,000 to 670,000 codes, cast included, and 0.5 us slower for 300 codes
    # (numpy 2.4, 2 cores). bincount also makes a pass for the min and max.
    counts = np.zeros(n_codes, dtype=np.intp)
    np.add.at(counts, codes.astype(np.intp), 1)
    return counts


def group_facets(columns: list[Column], n_rows: int) -> FacetGroups:
    """Pack facet columns into groups of at most MAX_GROUP_CELLS cells.

    First fit by decreasing size: each column joins the first group that
    stays within the limit, else starts a group. A column larger than the
    limit is a group of its own.
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
    shapes = [tuple(map(_cell_count, members)) for members in packed]
    stops = list(itertools.accumulate(map(math.prod, shapes)))
    ranges = [
        slice(stop - math.prod(shape), stop)
        for shape, stop in zip(shapes, stops, strict=True)
    ]
    n_cells = stops[-1] if stops else 0
    codes = np.zeros((n_rows, len(packed)), dtype=code_dtype(max(n_cells - 1, 0)))
    for position, members in enumerate(packed):
        _add_joint_codes(
            codes[:, position], members, shapes[position], ranges[position]
        )
    # Views taken after this point are read-only too.
    codes.flags.writeable = False
    groups = tuple(
        FacetGroup(
            tuple(members), shapes[position], codes[:, position], ranges[position]
        )
        for position, members in enumerate(packed)
    )
    return FacetGroups(groups, codes, n_cells)


def _cell_count(column: Column) -> int:
    return len(column.dictionary or ()) + 1


def _add_joint_codes(
    target: np.ndarray, columns: list[Column], shape: tuple[int, ...], cells: slice
) -> None:
    """Add each row's cell number, cells.start plus its joint code, to target."""
    dtype = target.dtype
    for column, stride in zip(columns, _strides(shape), strict=True):
        assert column.codes is not None
        target += column.codes.astype(dtype) * dtype.type(stride)
    target += dtype.type(cells.start)


def _lone_group(column: Column) -> FacetGroup:
    assert column.codes is not None
    size = _cell_count(column)
    return FacetGroup((column,), (size,), column.codes, slice(0, size))


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
        self, columns: list[Column], facets: FacetGroups
    ) -> dict[str, dict[str, int]]:
        """Return {field: {value: count}} for every value of columns, zeros included.

        facets are the index's facet groups, which contain every facet column.
        """
        groups = _groups_for(columns, facets.groups)
        counted: dict[str, np.ndarray] = {}
        counts_per_group = self._counts(groups, facets)
        for group, group_counts in zip(groups, counts_per_group, strict=True):
            for column, counts in zip(group.columns, group_counts, strict=True):
                counted[column.name] = counts
        return {
            column.name: _as_json(column, counted[column.name]) for column in columns
        }

    def _counts(
        self, groups: tuple[FacetGroup, ...], facets: FacetGroups
    ) -> list[list[np.ndarray]]:
        """Return the number of selected rows per code of each field of groups."""
        if self._complemented and self._count == 0:
            return [[_totals(column) for column in group.columns] for group in groups]
        counted = self._count_rows(groups, facets)
        if not self._complemented:
            return counted
        return [
            [
                _totals(column) - counts
                for column, counts in zip(group.columns, group_counts, strict=True)
            ]
            for group, group_counts in zip(groups, counted, strict=True)
        ]

    def _count_rows(
        self, groups: tuple[FacetGroup, ...], facets: FacetGroups
    ) -> list[list[np.ndarray]]:
        """Return the counted rows (selection or complement) per code per field."""
        if self._count == 0 or not groups:
            return [
                [np.zeros(size - 1, dtype=np.int64) for size in group.shape]
                for group in groups
            ]
        uses_bincount = self._bincount_choices(groups)
        # _groups_for returns facets.groups itself when it counts every group.
        if groups is facets.groups and all(uses_bincount):
            cell_counts = facets.count_cells(self._counted_rows())
            return [group.split(cell_counts[group.cells]) for group in groups]
        counted = []
        for group, bincount in zip(groups, uses_bincount, strict=True):
            if bincount:
                cell_counts = group.count_cells(self._counted_rows())
                counted.append(group.split(cell_counts))
            else:
                counted.append([self._popcount(column) for column in group.columns])
        return counted

    def _bincount_choices(self, groups: tuple[FacetGroup, ...]) -> list[bool]:
        """Return, per group, whether it is counted with bincount (else popcount).

        A group takes bincount when its rows cost less than its popcount. The
        row extraction is paid once for all such groups, so bincount is used
        only if their savings together exceed the extraction cost.
        """
        n_words = len(self._bits)
        row_cost = self._count * BINCOUNT_ROW_COST
        choices = [row_cost < group.n_values * n_words for group in groups]
        if self._rows is None:
            saving = sum(
                group.n_values * n_words - row_cost
                for group, chosen in zip(groups, choices, strict=True)
                if chosen
            )
            extract_cost = self._count * EXTRACT_ROW_COST + n_words * EXTRACT_WORD_COST
            if saving <= extract_cost:
                return [False] * len(groups)
        return choices

    def _popcount(self, column: Column) -> np.ndarray:
        assert column.bitsets is not None
        hits = np.bitwise_and(column.bitsets, self._bits)
        return np.bitwise_count(hits).sum(axis=1, dtype=np.int64)

    def _counted_rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = bitset.rows(self._bits)
        return self._rows


def _groups_for(
    columns: list[Column], groups: tuple[FacetGroup, ...]
) -> tuple[FacetGroup, ...]:
    """Return the groups that count columns; a lone column is counted alone.

    Returns groups itself when columns include every column of every group.
    """
    names = {column.name for column in columns}
    if all(column.name in names for group in groups for column in group.columns):
        return groups
    chosen = []
    for group in groups:
        members = [column for column in group.columns if column.name in names]
        if len(members) == 1 and len(group.columns) > 1:
            chosen.append(_lone_group(members[0]))
        elif members:
            chosen.append(group)
    return tuple(chosen)


def _as_json(column: Column, counts: np.ndarray) -> dict[str, int]:
    assert column.facet_keys is not None and column.facet_zeros is not None
    # Updating a copy of a dict that already contains the keys measured 15% faster
    # than dict(zip(...)) for the 462 flights facet values (2 cores), because
    # the copy is made at its final size. Key order and values are the same.
    json_counts = column.facet_zeros.copy()
    json_counts.update(zip(column.facet_keys, counts.tolist(), strict=True))
    return json_counts


def _totals(column: Column) -> np.ndarray:
    assert column.totals is not None
    return column.totals
