"""Benchmark the filter kernel: bit-sliced facet bitsets vs a row-mask scan.

Both sides run numpy on the same synthetic table (bellhop's synthetic source,
fixed seed). The filter is three single-value conditions:
region = north, channel = channel-00, weekday = 3.

- engine count: the engine's own path for the count: params checked,
  facet bitsets ANDed, popcount.
- bitset kernel: the same three bitset rows ANDed and popcounted directly,
  without the params handling.
- engine filter: the whole `filter` method: count, a 50-id page and the
  count of every value of every facet field (7 fields, 198 values).
- row-mask count: one uint64 attribute mask per row (region, channel and
  weekday bits), AND with the target mask, compare, sum.
- row-mask ids: the same scan, then np.flatnonzero for the matching ids.

Prints one markdown table of medians. `--quick` runs small sizes only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
from bellhop_shared.catalog import DatasetSpec
from bellhop_worker.engine import Engine, bitset
from bellhop_worker.engine.conditions import select_rows
from bellhop_worker.engine.loaders.synthetic import synthetic_table

WHERE = {"region": ["north"], "channel": ["channel-00"], "weekday": [3]}
FULL_SIZES = (10_000, 100_000, 1_000_000, 10_000_000)
QUICK_SIZES = (10_000, 100_000)


def median_ms(step: Callable[[], object], repeats: int) -> float:
    step()
    samples = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        step()
        samples.append((time.perf_counter_ns() - started) / 1e6)
    return statistics.median(samples)


def row_masks(engine: Engine) -> tuple[np.ndarray, np.ndarray]:
    """Build one uint64 attribute mask per row and the filter's target mask."""
    masks = np.zeros(engine.index.n_rows, dtype=np.uint64)
    target = np.uint64(0)
    shift = 0
    for name, wanted in WHERE.items():
        column = engine.index.columns[name]
        assert column.codes is not None and column.dictionary is not None
        masks |= np.left_shift(np.uint64(1), column.codes.astype(np.uint64) + shift)
        code = column.code_lookup()[wanted[0]]
        target |= np.left_shift(np.uint64(1), np.uint64(code + shift))
        shift += len(column.dictionary) + 1
    assert shift <= 64, "the row-mask scan needs every attribute in 64 bits"
    return masks, target


def measure(n_rows: int, repeats: int) -> dict[str, float]:
    spec = DatasetSpec(name=f"synthetic-{n_rows}", kind="synthetic", rows=n_rows)
    engine = Engine.from_table(synthetic_table(n_rows), spec)
    masks, target = row_masks(engine)
    params = {"where": WHERE}

    def engine_count() -> int:
        return bitset.popcount(select_rows(engine.index, params).bits)

    kernel_rows = [
        engine.index.columns[name].bitsets[  # type: ignore[index]
            engine.index.columns[name].code_lookup()[values[0]]
        ]
        for name, values in WHERE.items()
    ]

    def kernel_count() -> int:
        bits = kernel_rows[0] & kernel_rows[1]
        np.bitwise_and(bits, kernel_rows[2], out=bits)
        return bitset.popcount(bits)

    def scan_count() -> int:
        return int(np.count_nonzero((masks & target) == target))

    def scan_ids() -> np.ndarray:
        return np.flatnonzero((masks & target) == target)

    assert engine_count() == scan_count() == engine.filter(params)["count"]
    assert kernel_count() == scan_count()
    return {
        "engine_count": median_ms(engine_count, repeats),
        "kernel_count": median_ms(kernel_count, repeats),
        "engine_filter": median_ms(lambda: engine.filter(params), repeats),
        "scan_count": median_ms(scan_count, repeats),
        "scan_ids": median_ms(scan_ids, repeats),
        "matches": engine_count(),
    }


def default_repeats(n_rows: int, quick: bool) -> int:
    if quick:
        return 5
    if n_rows >= 10_000_000:
        return 15
    return 50


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="10k and 100k rows, 5 repeats"
    )
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per cell")
    args = parser.parse_args()
    sizes = QUICK_SIZES if args.quick else FULL_SIZES
    print(
        "| rows | matches | engine count ms | bitset kernel ms | row-mask count ms "
        "| count speedup | kernel speedup | engine filter + all facets ms "
        "| row-mask count + ids ms |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n_rows in sizes:
        cell = measure(n_rows, args.repeats or default_repeats(n_rows, args.quick))
        speedup = cell["scan_count"] / cell["engine_count"]
        kernel_speedup = cell["scan_count"] / cell["kernel_count"]
        print(
            f"| {n_rows:,} | {cell['matches']:,} | {cell['engine_count']:.3f} "
            f"| {cell['kernel_count']:.3f} | {cell['scan_count']:.3f} "
            f"| {speedup:.1f}x | {kernel_speedup:.1f}x "
            f"| {cell['engine_filter']:.3f} "
            f"| {cell['scan_ids']:.3f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
