"""Facet counts of filter against a plain numpy count of the selected rows.

The reference selects rows with np.isin on each column's dictionary codes and
counts each facet field with np.bincount, so it shares no code with the joint
matrix, np.add.at, FacetGroup.split or the complement path under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from bellhop_shared.catalog import DatasetSpec, load_catalog, resolve
from bellhop_worker.engine import Engine, facets
from bellhop_worker.engine.index import Index

BENCH_WHERE = {"carrier": ["UA", "AA"], "month": [7]}


def where_mask(index: Index, where: dict[str, list[Any]]) -> np.ndarray:
    """Return the boolean row mask of where (values OR-ed, fields AND-ed)."""
    mask = np.ones(index.n_rows, dtype=np.bool_)
    for name, values in where.items():
        column = index.columns[name]
        assert column.codes is not None
        lookup = column.code_lookup()
        codes = [lookup[value] for value in values if value in lookup]
        mask &= np.isin(column.codes, np.array(codes, dtype=np.int64))
    return mask


def reference_facets(
    index: Index, mask: np.ndarray, names: list[str] | None = None
) -> dict[str, dict[str, int]]:
    """Return {field: {key: count}} of the rows in mask, missing values left out."""
    expected = {}
    for name in names or index.facet_names:
        column = index.columns[name]
        assert column.codes is not None and column.facet_keys is not None
        n_values = len(column.facet_keys)
        counts = np.bincount(column.codes[mask], minlength=n_values + 1)[:n_values]
        expected[name] = dict(zip(column.facet_keys, counts.tolist(), strict=True))
    return expected


def assert_facets_match(
    engine: Engine, params: dict[str, Any], mask: np.ndarray
) -> dict[str, Any]:
    """Check filter's count and facets against the reference and return the result."""
    index = engine.index
    result = engine.filter(params)
    names = params.get("facets")
    expected = reference_facets(index, mask, names)
    assert result["count"] == int(mask.sum())
    assert result["facets"] == expected
    for name, counts in result["facets"].items():
        # Keys keep dictionary order, and every count is a plain int.
        assert list(counts) == index.columns[name].facet_keys, name
        assert all(type(count) is int for count in counts.values()), name
    return result


class KernelCalls:
    """Count the calls of each facet counting kernel during one test."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.joint = 0
        self.per_group = 0
        self.popcount = 0
        joint = facets.FacetGroups.count_cells
        per_group = facets.FacetGroup.count_cells
        popcount = facets.FacetCounter._popcount

        def count_joint(facet_groups: Any, rows: np.ndarray) -> np.ndarray:
            self.joint += 1
            return joint(facet_groups, rows)

        def count_group(group: Any, rows: np.ndarray) -> np.ndarray:
            self.per_group += 1
            return per_group(group, rows)

        def count_popcount(counter: Any, column: Any) -> np.ndarray:
            self.popcount += 1
            return popcount(counter, column)

        monkeypatch.setattr(facets.FacetGroups, "count_cells", count_joint)
        monkeypatch.setattr(facets.FacetGroup, "count_cells", count_group)
        monkeypatch.setattr(facets.FacetCounter, "_popcount", count_popcount)


@pytest.fixture(scope="module")
def flights() -> Iterator[Engine]:
    spec = resolve("flights", load_catalog())
    assert spec is not None
    yield Engine.load(spec, None, lambda fraction: None)


def test_bench_filter_uses_joint_pass(
    flights: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = KernelCalls(monkeypatch)
    mask = where_mask(flights.index, BENCH_WHERE)

    result = assert_facets_match(flights, {"where": BENCH_WHERE, "limit": 50}, mask)

    assert result["count"] == 7948
    assert result["ids"] == np.flatnonzero(mask)[:50].tolist()
    assert calls.joint == 1
    assert calls.per_group == 0
    assert calls.popcount == 0


@pytest.mark.parametrize(
    ("where", "complemented"),
    [
        ({}, True),
        ({"carrier": ["ZZ"]}, False),
        ({"origin": ["EWR", "JFK"]}, True),
        ({"origin": ["LGA"], "hour": [6, 7, 8]}, False),
        ({"dest": ["HNL"], "day": [31]}, False),
    ],
    ids=["all-rows", "no-rows", "above-half", "below-half", "few-rows"],
)
def test_flights_facets_match_numpy(
    flights: Engine, where: dict[str, list[Any]], complemented: bool
) -> None:
    mask = where_mask(flights.index, where)
    assert (int(mask.sum()) * 2 > flights.index.n_rows) is complemented

    assert_facets_match(flights, {"where": where}, mask)


@pytest.mark.parametrize(
    "names",
    [["carrier"], ["year"], ["month", "dest"], ["minute", "hour"], ["origin"]],
)
@pytest.mark.parametrize("where", [BENCH_WHERE, {"origin": ["EWR", "JFK"]}])
def test_flights_facet_subset_counts_per_group(
    flights: Engine,
    monkeypatch: pytest.MonkeyPatch,
    names: list[str],
    where: dict[str, list[Any]],
) -> None:
    calls = KernelCalls(monkeypatch)
    mask = where_mask(flights.index, where)

    assert_facets_match(flights, {"where": where, "facets": names}, mask)

    # The joint pass counts every group, so a subset of the fields skips it.
    assert calls.joint == 0
    assert calls.per_group + calls.popcount > 0


def test_mixed_kernels_fall_back_per_group(
    flights: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    index = flights.index
    groups = {tuple(c.name for c in g.columns): g for g in index.facet_groups}
    small = groups[("month", "origin")]
    # A row cost between the popcount cost of (month, origin) and that of
    # every other group sends that group alone to the popcount kernel.
    mask = where_mask(index, BENCH_WHERE)
    row_cost = 2 * small.n_values * index.n_words / int(mask.sum())
    assert all(
        row_cost * int(mask.sum()) < group.n_values * index.n_words
        for group in index.facet_groups
        if group is not small
    )
    monkeypatch.setattr(facets, "BINCOUNT_ROW_COST", row_cost)
    calls = KernelCalls(monkeypatch)

    assert_facets_match(flights, {"where": BENCH_WHERE}, mask)

    assert calls.joint == 0
    assert calls.per_group == len(index.facet_groups) - 1
    assert calls.popcount == len(small.columns)


@pytest.mark.parametrize("row_cost", [0.0, float("inf")])
@pytest.mark.parametrize("where", [BENCH_WHERE, {"origin": ["EWR", "JFK"]}])
def test_forced_kernels_match_numpy(
    flights: Engine,
    monkeypatch: pytest.MonkeyPatch,
    row_cost: float,
    where: dict[str, list[Any]],
) -> None:
    for name in ("BINCOUNT_ROW_COST", "EXTRACT_ROW_COST", "EXTRACT_WORD_COST"):
        monkeypatch.setattr(facets, name, row_cost)
    calls = KernelCalls(monkeypatch)

    assert_facets_match(flights, {"where": where}, where_mask(flights.index, where))

    if row_cost == 0.0:
        assert (calls.joint, calls.popcount) == (1, 0)
    else:
        assert (calls.joint, calls.per_group) == (0, 0)


def labelled_table(n_rows: int, cardinalities: list[int], seed: int) -> pa.Table:
    """Build a table of int columns f0, f1, ... with about 5% missing values."""
    rng = np.random.default_rng(seed)
    columns = {}
    for position, size in enumerate(cardinalities):
        values = rng.integers(0, size, n_rows)
        missing = rng.random(n_rows) < 0.05
        columns[f"f{position}"] = pa.array(values, pa.int64(), mask=missing)
    columns["amount"] = pa.array(rng.random(n_rows), pa.float64())
    return pa.table(columns)


def random_wheres(index: Index, seed: int) -> list[dict[str, list[Any]]]:
    """Return where params from empty to every row, both sides of half."""
    rng = np.random.default_rng(seed)
    first = index.facet_names[0]
    dictionary = index.columns[first].dictionary
    assert dictionary is not None
    wheres: list[dict[str, list[Any]]] = [{}, {first: [-1]}]
    for share in (0.1, 0.4, 0.7, 0.95):
        picked = [value for value in dictionary if rng.random() < share]
        wheres.append({first: picked})
    if len(index.facet_names) > 1:
        second = index.facet_names[1]
        second_values = index.columns[second].dictionary
        assert second_values is not None
        wheres.append({first: dictionary[::2], second: second_values[:1]})
    return wheres


@pytest.mark.parametrize("forced_joint", [False, True], ids=["costed", "joint"])
@pytest.mark.parametrize("n_rows", [1, 63, 64, 1000, 20_000])
@pytest.mark.parametrize(
    "cardinalities",
    [[5], [3, 40, 7, 250, 2, 90, 11, 16, 60, 4, 33, 120]],
    ids=["one-facet", "many-facets"],
)
def test_synthetic_facets_match_numpy(
    monkeypatch: pytest.MonkeyPatch,
    n_rows: int,
    cardinalities: list[int],
    forced_joint: bool,
) -> None:
    table = labelled_table(n_rows, cardinalities, seed=n_rows)
    engine = Engine.from_table(table, DatasetSpec(name="labels", kind="synthetic"))
    index = engine.index
    first = index.facet_names[0]
    assert len(index.facet_names) == len(cardinalities)
    assert index.facets.codes.shape == (n_rows, len(index.facet_groups))
    if forced_joint:
        # Free row costs make bincount, and so the joint pass, win everywhere.
        for name in ("BINCOUNT_ROW_COST", "EXTRACT_ROW_COST", "EXTRACT_WORD_COST"):
            monkeypatch.setattr(facets, name, 0.0)
    calls = KernelCalls(monkeypatch)

    counting = 0
    for where in random_wheres(index, seed=n_rows):
        mask = where_mask(index, where)
        assert_facets_match(engine, {"where": where}, mask)
        # Counting works on the selection or its complement, the smaller one.
        counting += min(int(mask.sum()), n_rows - int(mask.sum())) > 0
    if forced_joint:
        assert calls.joint == counting
    if n_rows >= 1000 and len(cardinalities) > 1:
        assert calls.joint > 0

    for name in index.facet_names[-2:]:
        where = {first: index.columns[first].dictionary[1:]}
        params = {"where": where, "facets": [name]}
        assert_facets_match(engine, params, where_mask(index, where))


def test_matrix_widens_past_65536_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    # Declared facets of 3,000 to 5,000 values each are groups of their own,
    # so the cells of all groups pass 65,536 and the matrix needs uint32.
    n_rows = 30_000
    cardinalities = [5000, 4500, 4000, 3500, 3000] * 4
    table = labelled_table(n_rows, cardinalities, seed=11)
    spec = DatasetSpec(
        name="wide", kind="synthetic", facets=[f"f{i}" for i in range(20)]
    )
    engine = Engine.from_table(table, spec)
    index = engine.index
    assert index.facets.n_cells > 65_536
    assert index.facets.codes.dtype == np.uint32
    calls = KernelCalls(monkeypatch)

    for where in ({"f0": list(range(0, 5000, 40))}, {"f1": list(range(300))}):
        assert_facets_match(engine, {"where": where}, where_mask(index, where))

    assert calls.joint == 2


def test_empty_table_counts_zero() -> None:
    table = labelled_table(0, [4, 9], seed=0)
    engine = Engine.from_table(table, DatasetSpec(name="empty", kind="synthetic"))

    result = engine.filter({})

    assert result["count"] == 0
    assert result["facets"] == {"f0": {}, "f1": {}}
    assert engine.index.facets.codes.shape == (0, len(engine.index.facet_groups))


@pytest.mark.parametrize("n_codes", [1, 52, 9661, 70_000])
def test_count_codes_matches_bincount(n_codes: int) -> None:
    rng = np.random.default_rng(n_codes)
    dtype = np.uint32 if n_codes > 65_536 else np.uint16
    for size in (0, 1, 7, 31_792):
        codes = rng.integers(0, n_codes, size).astype(dtype)
        counts = facets.count_codes(codes, n_codes)
        assert counts.dtype == np.intp
        assert np.array_equal(counts, np.bincount(codes, minlength=n_codes))
    top = np.full(5, n_codes - 1, dtype=dtype)
    assert np.array_equal(
        facets.count_codes(top, n_codes), np.bincount(top, minlength=n_codes)
    )


def test_group_cells_count_its_own_range(flights: Engine) -> None:
    index = flights.index
    rows = np.flatnonzero(where_mask(index, BENCH_WHERE))
    all_cells = index.facets.count_cells(rows)
    assert int(all_cells.sum()) == len(rows) * len(index.facet_groups)
    for group in index.facet_groups:
        joint = group.codes[rows].astype(np.int64) - group.cells.start
        expected = np.bincount(joint, minlength=group.n_cells)
        assert np.array_equal(group.count_cells(rows), expected)
        assert np.array_equal(all_cells[group.cells], expected)
