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
