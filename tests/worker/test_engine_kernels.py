"""The bitset kernels against plain numpy booleans, on generated data."""

from __future__ import annotations

import numpy as np
import pytest
from bellhop_shared.catalog import DatasetSpec
from bellhop_worker.engine import Engine, bitset, facets
from bellhop_worker.engine.loaders.synthetic import synthetic_table


@pytest.mark.parametrize("n_rows", [0, 1, 63, 64, 65, 1000, 4097])
def test_bool_round_trip(n_rows: int) -> None:
    mask = np.random.default_rng(n_rows).random(n_rows) < 0.3
    bits = bitset.from_bool(mask)
    assert len(bits) == bitset.word_count(n_rows)
    assert np.array_equal(bitset.to_bool(bits, n_rows), mask)
    assert bitset.popcount(bits) == int(mask.sum())
    assert np.array_equal(bitset.rows(bits), np.flatnonzero(mask))


@pytest.mark.parametrize(
    ("n_rows", "start", "stop"),
    [(1000, 0, 10), (1000, 990, 1000), (10_000, 4000, 4700), (10_000, 64, 9000)],
)
def test_rows_of_clustered_selection(n_rows: int, start: int, stop: int) -> None:
    # Rows inside one block plus a few far away exercise both the unpacking
    # of the whole span and the gathering of nonzero words only.
    rng = np.random.default_rng(start)
    mask = np.zeros(n_rows, dtype=np.bool_)
    mask[start:stop] = rng.random(stop - start) < 0.4
    for far in (0, n_rows - 1):
        clustered = mask.copy()
        clustered[far] = True
        bits = bitset.from_bool(clustered)
        found = bitset.rows(bits)
        assert found.dtype == np.int64
        assert np.array_equal(found, np.flatnonzero(clustered))
        assert np.array_equal(bitset.rows(bitset.from_bool(mask)), np.flatnonzero(mask))


@pytest.mark.parametrize("n_rows", [1, 64, 130, 5000])
def test_full_sets_only_real_rows(n_rows: int) -> None:
    bits = bitset.full(n_rows)
    assert bitset.popcount(bits) == n_rows
    assert bitset.popcount(~bits & bitset.full(n_rows)) == 0


@pytest.mark.parametrize("density", [0.0, 0.001, 0.2, 1.0])
def test_select_page_matches_flatnonzero(density: float) -> None:
    rng = np.random.default_rng(7)
    mask = rng.random(10_000) < density
    bits = bitset.from_bool(mask)
    expected = np.flatnonzero(mask)
    for offset, limit in [(0, 50), (3, 1), (len(expected) - 2, 10), (9_999, 5), (0, 0)]:
        offset = max(offset, 0)
        page = bitset.select_page(bits, offset, limit)
        assert np.array_equal(page, expected[offset : offset + limit]), (offset, limit)


def test_contains_reads_single_bits() -> None:
    mask = np.random.default_rng(3).random(300) < 0.5
    rows = np.array([0, 1, 63, 64, 127, 128, 299])
    assert np.array_equal(bitset.contains(bitset.from_bool(mask), rows), mask[rows])


def test_from_codes_matches_compare() -> None:
    codes = np.random.default_rng(5).integers(0, 11, 3000).astype(np.uint8)
    matrix = bitset.from_codes(codes, 10)
    for code in range(10):
        assert np.array_equal(bitset.to_bool(matrix[code], 3000), codes == code)
    assert bitset.popcount(np.bitwise_or.reduce(matrix, axis=0)) == int(
        (codes < 10).sum()
    )


def test_facet_groups_hold_every_facet_once() -> None:
    engine = Engine.from_table(
        synthetic_table(5000), DatasetSpec(name="s", kind="synthetic")
    )
    index = engine.index
    groups = index.facet_groups

    names = [column.name for group in groups for column in group.columns]
    assert sorted(names) == sorted(index.facet_names)
    stop = 0
    for position, group in enumerate(groups):
        assert group.n_cells <= facets.MAX_GROUP_CELLS or len(group.columns) == 1
        # Groups number their cells in consecutive ranges, in group order.
        assert group.cells == slice(stop, stop + group.n_cells)
        stop = group.cells.stop
        # Each cell number is cells.start plus the C-order index of the fields'
        # own codes, and the group's codes are a column of the shared matrix.
        decoded = np.unravel_index(group.codes - group.cells.start, group.shape)
        for column, codes in zip(group.columns, decoded, strict=True):
            assert np.array_equal(codes, column.codes)
        assert np.shares_memory(group.codes, index.facets.codes)
        assert np.array_equal(index.facets.codes[:, position], group.codes)
    assert index.facets.n_cells == stop
    assert index.facets.codes.shape == (index.n_rows, len(groups))
    assert not index.facets.codes.flags.writeable


@pytest.mark.parametrize("row_cost", [0.0, float("inf")])
def test_facet_kernels_agree(monkeypatch: pytest.MonkeyPatch, row_cost: float) -> None:
    table = synthetic_table(20_000)
    engine = Engine.from_table(table, DatasetSpec(name="s", kind="synthetic"))
    params = {"where": {"region": ["north", "east"]}, "range": {"amount": [5, 50]}}
    baseline = engine.filter(params)["facets"]
    monkeypatch.setattr(facets, "BINCOUNT_ROW_COST", row_cost)
    monkeypatch.setattr(facets, "EXTRACT_ROW_COST", row_cost)
    monkeypatch.setattr(facets, "EXTRACT_WORD_COST", row_cost)
    assert engine.filter(params)["facets"] == baseline
    region = table.column("region").to_pylist()
    amount = table.column("amount").to_pylist()
    expected = sum(
        r in ("north", "east") and a is not None and 5 <= a <= 50
        for r, a in zip(region, amount, strict=True)
    )
    assert sum(baseline["segment"].values()) == expected
    # A field requested without the rest of its group is counted alone.
    for names in (["store"], ["weekday", "store"], ["quantity", "segment", "region"]):
        subset = engine.filter({**params, "facets": names})["facets"]
        assert subset == {name: baseline[name] for name in names}


@pytest.mark.parametrize("cells", [1, 64, 100_000])
def test_facet_group_limit_keeps_counts(
    monkeypatch: pytest.MonkeyPatch, cells: int
) -> None:
    table = synthetic_table(3000)
    spec = DatasetSpec(name="s", kind="synthetic")
    params = {"where": {"channel": ["channel-01", "channel-04"]}}
    expected = Engine.from_table(table, spec).filter(params)["facets"]
    monkeypatch.setattr(facets, "MAX_GROUP_CELLS", cells)

    engine = Engine.from_table(table, spec)

    assert engine.filter(params)["facets"] == expected
    for group in engine.index.facet_groups:
        assert group.n_cells <= cells or len(group.columns) == 1


def test_synthetic_is_deterministic() -> None:
    first = synthetic_table(5000)
    second = synthetic_table(5000)
    assert first.equals(second)
    spec = DatasetSpec(name="synthetic-5k", kind="synthetic", rows=5000)
    description = Engine.load(spec, None, lambda fraction: None).describe()
    assert description["rows"] == 5000
    kinds = {name: field["kind"] for name, field in description["fields"].items()}
    assert kinds == {
        "segment": "facet",
        "region": "facet",
        "channel": "facet",
        "category": "facet",
        "weekday": "facet",
        "store": "facet",
        "quantity": "facet",
        "amount": "numeric",
        "score": "numeric",
    }
    assert len(description["fields"]["store"]["values"]) == 100
    assert description["fields"]["amount"]["missing"] > 0
