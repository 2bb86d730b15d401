"""The worker's engine against DuckDB, the embedded alternative, on flights.

Filter plus facets: the same answer from both, for a selective filter
(carrier in UA, AA and month 7) and for one that matches every row: the
matching count, the first page of 50 row ids in row order, and the count of
every value of every facet field the engine reports. The engine runs
in-process, as the worker calls it. DuckDB answers from a table loaded from
the same CSV in three shapes: one query per facet, one UNION ALL of the
per-facet GROUP BYs, or one GROUPING SETS query, each plus an ids query (and
a count query where the shape has no total), and each with one thread and
with DuckDB's default thread count. The fastest of these is compared. Every
answer is checked to be equal to the engine's before any time is reported.

Loading: the unzipped flights CSV parsed and indexed by the engine against
DuckDB's read_csv into a table, each in a fresh engine or connection.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from bellhop_shared.catalog import DatasetSpec, load_catalog, resolve
from bellhop_worker.engine import Engine
from bench_load import unzip_flights
from harness import median_ms
from pyinstrument import Profiler
from report import Context, Section, Target, ms

TITLE = "Filter and facets against DuckDB"
PAGE_SIZE = 50
SPEEDUP_TARGET = 10.0
LOAD_RATIO_TARGET = 1.5
FILTERS: dict[str, dict[str, list[Any]]] = {
    "selective: carrier in (UA, AA), month 7": {"carrier": ["UA", "AA"], "month": [7]},
    "every row": {},
}

Answer = tuple[int, list[int], dict[str, dict[str, int]]]


@dataclass
class Plan:
    engine_repeats: int
    duckdb_repeats: int
    load_repeats: int


FULL_PLAN = Plan(engine_repeats=300, duckdb_repeats=30, load_repeats=5)
QUICK_PLAN = Plan(engine_repeats=20, duckdb_repeats=3, load_repeats=1)


def _sql_value(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


def where_sql(where: dict[str, list[Any]]) -> str:
    """Return the WHERE clause for an engine `where` (OR within, AND across)."""
    if not where:
        return "TRUE"
    terms = [
        f'"{field}" IN ({", ".join(_sql_value(v) for v in values)})'
        for field, values in where.items()
    ]
    return " AND ".join(terms)


def load_duckdb(csv_path: Path) -> duckdb.DuckDBPyConnection:
    """Load the CSV into a table; flights writes missing values as NA."""
    connection = duckdb.connect()
    connection.execute(
        "CREATE TABLE flights AS SELECT * FROM read_csv(?, nullstr = 'NA')",
        [str(csv_path)],
    )
    return connection


def _count_and_ids(
    connection: duckdb.DuckDBPyConnection, condition: str
) -> tuple[int, list[int]]:
    count = connection.execute(
        f"SELECT count(*) FROM flights WHERE {condition}"
    ).fetchone()
    ids = connection.execute(
        f"SELECT rowid FROM flights WHERE {condition} ORDER BY rowid LIMIT {PAGE_SIZE}"
    ).fetchall()
    return int(count[0]), [int(row[0]) for row in ids]  # type: ignore[index]


def duckdb_per_facet(
    connection: duckdb.DuckDBPyConnection, condition: str, facets: list[str]
) -> Answer:
    """Run a count query, an ids query and one GROUP BY per facet."""
    count, ids = _count_and_ids(connection, condition)
    counts: dict[str, dict[str, int]] = {}
    for field in facets:
        rows = connection.execute(
            f'SELECT "{field}", count(*) FROM flights '
            f'WHERE {condition} AND "{field}" IS NOT NULL GROUP BY "{field}"'
        ).fetchall()
        counts[field] = {str(value): int(n) for value, n in rows}
    return count, ids, counts


def duckdb_union_all(
    connection: duckdb.DuckDBPyConnection, condition: str, facets: list[str]
) -> Answer:
    """Run a count query, an ids query and one UNION ALL of the GROUP BYs."""
    count, ids = _count_and_ids(connection, condition)
    union = " UNION ALL ".join(
        f'SELECT {index} AS field, "{field}"::VARCHAR AS value, count(*) '
        f'FROM flights WHERE {condition} AND "{field}" IS NOT NULL GROUP BY "{field}"'
        for index, field in enumerate(facets)
    )
    counts: dict[str, dict[str, int]] = {field: {} for field in facets}
    for index, value, n in connection.execute(union).fetchall():
        counts[facets[index]][value] = int(n)
    return count, ids, counts


def duckdb_grouping_sets(
    connection: duckdb.DuckDBPyConnection, condition: str, facets: list[str]
) -> Answer:
    """Run one GROUPING SETS query (every facet and the total) and an ids query."""
    columns = ", ".join(f'"{field}"' for field in facets)
    sets = ", ".join(f'("{field}")' for field in facets) + ", ()"
    rows = connection.execute(
        f"SELECT GROUPING({columns}), {columns}, count(*) FROM flights "
        f"WHERE {condition} GROUP BY GROUPING SETS ({sets})"
    ).fetchall()
    everything = (1 << len(facets)) - 1
    count = 0
    counts: dict[str, dict[str, int]] = {field: {} for field in facets}
    for grouping, *values, n in rows:
        if grouping == everything:
            count = int(n)
            continue
        # GROUPING sets the bit of each column that is not grouped; the most
        # significant bit is the first column.
        position = len(facets) - 1 - (everything ^ grouping).bit_length() + 1
        value = values[position]
        if value is not None:
            counts[facets[position]][str(value)] = int(n)
    ids = connection.execute(
        f"SELECT rowid FROM flights WHERE {condition} ORDER BY rowid LIMIT {PAGE_SIZE}"
    ).fetchall()
    return count, [int(row[0]) for row in ids], counts


def engine_answer(engine: Engine, where: dict[str, list[Any]]) -> Answer:
    result = engine.filter({"where": where, "limit": PAGE_SIZE})
    nonzero = {
        field: {value: n for value, n in counts.items() if n}
        for field, counts in result["facets"].items()
    }
    return result["count"], list(result["ids"]), nonzero


def check_same(name: str, engine: Answer, other: Answer, method: str) -> None:
    """Raise when the two answers differ in count, ids or any facet count."""
    if engine[0] != other[0]:
        raise AssertionError(
            f"{name}: count {engine[0]} (engine) != {other[0]} ({method})"
        )
    if engine[1] != other[1]:
        raise AssertionError(
            f"{name}: ids {engine[1][:5]}... != {other[1][:5]}... ({method})"
        )
    for field, counts in engine[2].items():
        if counts != other[2].get(field):
            raise AssertionError(f"{name}: facet {field!r} counts differ ({method})")


@dataclass
class FilterTiming:
    name: str
    count: int
    engine_ms: float
    duckdb_ms: dict[str, float]
    profile: str | None = None

    @property
    def best_duckdb(self) -> tuple[str, float]:
        return min(self.duckdb_ms.items(), key=lambda item: item[1])

    @property
    def speedup(self) -> float:
        return self.best_duckdb[1] / self.engine_ms


DUCKDB_METHODS: dict[str, Callable[..., Answer]] = {
    "one query per facet": duckdb_per_facet,
    "UNION ALL": duckdb_union_all,
    "GROUPING SETS": duckdb_grouping_sets,
}


def thread_counts(connection: duckdb.DuckDBPyConnection) -> list[int]:
    """Return 1 and DuckDB's default thread count (the machine's cores)."""
    row = connection.execute("SELECT current_setting('threads')").fetchone()
    default = int(row[0]) if row else 1
    return sorted({1, default})


def time_filter(
    plan: Plan,
    engine: Engine,
    connection: duckdb.DuckDBPyConnection,
    name: str,
    where: dict[str, list[Any]],
) -> FilterTiming:
    facets = engine.index.facet_names
    expected = engine_answer(engine, where)
    condition = where_sql(where)
    timings: dict[str, float] = {}
    for threads in thread_counts(connection):
        connection.execute(f"SET threads = {threads}")
        for method, answer in DUCKDB_METHODS.items():
            variant = f"{method}, {threads} thread{'s' if threads > 1 else ''}"
            check_same(name, expected, answer(connection, condition, facets), variant)
            timings[variant] = median_ms(
                lambda answer=answer: answer(connection, condition, facets),
                plan.duckdb_repeats,
            )
    connection.execute("RESET threads")
    engine_ms = median_ms(
        lambda: engine.filter({"where": where, "limit": PAGE_SIZE}),
        plan.engine_repeats,
        10,
    )
    timing = FilterTiming(name, expected[0], engine_ms, timings)
    if timing.speedup < SPEEDUP_TARGET:
        timing.profile = engine_profile(engine, where, plan.engine_repeats)
    return timing


def engine_profile(engine: Engine, where: dict[str, list[Any]], runs: int) -> str:
    """Return pyinstrument's call tree of runs engine filters, as plain text."""
    profiler = Profiler(interval=0.0001)
    profiler.start()
    for _ in range(runs):
        engine.filter({"where": where, "limit": PAGE_SIZE})
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    tree = [line for line in text.splitlines() if line.strip()]
    # Drop pyinstrument's banner; the tree starts at the first timed line.
    start = next(i for i, line in enumerate(tree) if line.lstrip()[:1].isdigit())
    return "\n".join(tree[start : start + 30])


def time_loads(plan: Plan, csv_path: Path) -> dict[str, float]:
    flights_zip = resolve("flights", load_catalog())
    assert flights_zip is not None
    plain = DatasetSpec(name="flights-csv", kind="csv", path=str(csv_path))
    return {
        "duckdb": median_ms(lambda: load_duckdb(csv_path).close(), plan.load_repeats),
        "engine_csv": median_ms(
            lambda: Engine.load(plain, None, lambda f: None), plan.load_repeats
        ),
        "engine_zip": median_ms(
            lambda: Engine.load(flights_zip, None, lambda f: None), plan.load_repeats
        ),
    }


def run(ctx: Context) -> Section:
    plan = QUICK_PLAN if ctx.quick else FULL_PLAN
    spec = resolve("flights", load_catalog())
    assert spec is not None
    engine = Engine.load(spec, None, lambda fraction: None)
    with tempfile.TemporaryDirectory() as directory:
        csv_path = unzip_flights(Path(directory))
        connection = load_duckdb(csv_path)
        threads = thread_counts(connection)
        timings = [
            time_filter(plan, engine, connection, name, where)
            for name, where in FILTERS.items()
        ]
        connection.close()
        loads = time_loads(plan, csv_path)
    return _section(ctx, plan, engine, timings, loads, threads)


def _spawn_ms(ctx: Context) -> float | None:
    spawn = ctx.results.get("spawn")
    if spawn is None or spawn.error is not None:
        return None
    return spawn.data.get("spawn_ready_ms", {}).get("flights")


def _variants_table(timings: list[FilterTiming]) -> str:
    variants = list(timings[0].duckdb_ms)
    rows = ["| variant | " + " | ".join(t.name for t in timings) + " |"]
    rows.append("|---|" + "---:|" * len(timings))
    for variant in variants:
        cells = " | ".join(ms(t.duckdb_ms[variant]) for t in timings)
        rows.append(f"| {variant} | {cells} |")
    return "\n".join(rows)


def _section(
    ctx: Context,
    plan: Plan,
    engine: Engine,
    timings: list[FilterTiming],
    loads: dict[str, float],
    threads: list[int],
) -> Section:
    load_ratio = loads["engine_csv"] / loads["duckdb"]
    spawn_ms = _spawn_ms(ctx)
    section = Section(TITLE)
    section.targets = [
        Target(
            f"engine vs DuckDB, {t.name}",
            f">= {SPEEDUP_TARGET:g} x faster",
            f"{t.speedup:.1f} x ({ms(t.engine_ms)} ms vs {ms(t.best_duckdb[1])} ms)",
            t.speedup >= SPEEDUP_TARGET,
        )
        for t in timings
    ]
    section.targets.append(
        Target(
            "flights load vs DuckDB read_csv",
            f"<= {LOAD_RATIO_TARGET:g} x DuckDB",
            f"{load_ratio:.2f} x ({ms(loads['engine_csv'])} ms "
            f"vs {ms(loads['duckdb'])} ms)",
            load_ratio <= LOAD_RATIO_TARGET,
        )
    )
    section.data = {
        "answers_agree": True,
        "filters": {
            t.name: {
                "count": t.count,
                "engine_ms": t.engine_ms,
                "duckdb_ms": t.duckdb_ms,
                "speedup": t.speedup,
            }
            for t in timings
        },
        "loads_ms": loads,
        "load_ratio": load_ratio,
        "spawn_ready_ms": spawn_ms,
        "duckdb_threads": threads,
    }
    section.lines = _lines(plan, engine, timings, loads, threads, spawn_ms)
    return section


def _lines(
    plan: Plan,
    engine: Engine,
    timings: list[FilterTiming],
    loads: dict[str, float],
    threads: list[int],
    spawn_ms: float | None,
) -> list[str]:
    facets = engine.index.facet_names
    n_values = sum(len(engine.index.columns[f].dictionary or ()) for f in facets)
    lines = [
        f"Each answer: the count, the first {PAGE_SIZE} row ids in row order and "
        f"the count of every value of the {len(facets)} facet fields the engine "
        f"reports ({', '.join(facets)}; {n_values} values). Both engines' answers "
        "were checked equal before timing. Medians of "
        f"{plan.engine_repeats} runs (engine, in-process, one thread) and "
        f"{plan.duckdb_repeats} runs of each DuckDB variant (results fetched "
        f"into Python, threads {' and '.join(map(str, threads))}).",
        "",
        "| filter | matching rows | engine ms | fastest DuckDB ms | fastest "
        "DuckDB variant | engine x faster |",
        "|---|---:|---:|---:|---|---:|",
    ]
    for t in timings:
        variant, best_ms = t.best_duckdb
        lines.append(
            f"| {t.name} | {t.count:,} | {ms(t.engine_ms)} | {ms(best_ms)} | "
            f"{variant} | {t.speedup:.1f} |"
        )
    lines += ["", "Every DuckDB variant, ms:", "", _variants_table(timings)]
    for t in timings:
        if t.profile is not None:
            lines += [
                "",
                f"The engine missed the target on {t.name}; pyinstrument's call "
                f"tree of {plan.engine_repeats} engine filters (seconds):",
                "",
                "```",
                t.profile,
                "```",
            ]
    spawn = "not measured in this run" if spawn_ms is None else f"{ms(spawn_ms)}"
    duckdb_ms, engine_csv_ms = ms(loads["duckdb"]), ms(loads["engine_csv"])
    zip_ms = ms(loads["engine_zip"])
    lines += [
        "",
        f"Loading flights (336,776 rows), medians of {plan.load_repeats}:",
        "",
        "| step | ms |",
        "|---|---:|",
        f"| DuckDB: read_csv of the unzipped CSV into a table | {duckdb_ms} |",
        f"| engine: the unzipped CSV parsed and indexed | {engine_csv_ms} |",
        f"| engine: the bundled zip parsed and indexed (as in the worker) | {zip_ms} |",
        f"| worker: spawn to ready through the gateway, local provider | {spawn} |",
        "",
        f"The engine's load is {loads['engine_csv'] / loads['duckdb']:.2f} x DuckDB's "
        f"(target <= {LOAD_RATIO_TARGET:g} x).",
    ]
    return lines
