"""Job result tables: small Parquet tables under ``<data_dir>/results/<table>/``.

Every result row belongs to a window (``window_start``, ``window_end``) of the job
that wrote it. Files are kept per job and day (``<job>/<YYYY-MM-DD>.parquet``, the
day of ``window_start``) so a table stays a few hundred files a year however often
the job runs. Re-running a window *replaces* its rows: the day file is read, the
rows of the recomputed windows are dropped, the new rows added, and the file is
written to a temporary name and renamed, under a per-table lock. A reader never
sees a half-written file and a re-run never duplicates rows.

``warehouse.catalog.connect`` exposes every table directory as a view of the same
name; ``ensure_table`` writes a zero-row ``_schema.parquet`` so the view exists
(with the right columns) before the first run.
"""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.landing import tmp_dir, write_atomically

RESULTS_DIR = "results"
SCHEMA_FILE = "_schema.parquet"
WINDOW_COLUMNS = [("window_start", pa.timestamp("us", tz="UTC")), ("window_end", pa.timestamp("us", tz="UTC"))]


def results_root(data_dir: Path) -> Path:
    return Path(data_dir) / RESULTS_DIR


def table_dir(data_dir: Path, table: str) -> Path:
    if not table.isidentifier():
        raise ValueError(f"result table name {table!r} must be an identifier")
    return results_root(data_dir) / table


def with_window(fields: Iterable[tuple[str, pa.DataType]]) -> pa.Schema:
    """A result schema: the window columns first, then the table's own columns."""
    return pa.schema(WINDOW_COLUMNS + list(fields))


def ensure_table(data_dir: Path, table: str, schema: pa.Schema) -> None:
    """Write the table's zero-row schema file when missing or different (a new column)."""
    if not len(schema):
        raise ValueError(f"result table {table!r} needs at least one column")
    path = table_dir(data_dir, table) / SCHEMA_FILE
    if path.exists() and pq.read_schema(path).equals(schema):
        return
    sink = pa.BufferOutputStream()
    pq.write_table(schema.empty_table(), sink)
    write_atomically(sink.getvalue(), path, tmp_dir(data_dir), fsync=False)


def replace_windows(data_dir: Path, table: str, job: str, schema: pa.Schema,
                    windows: list[tuple[datetime, datetime]], rows: pa.Table) -> int:
    """Replace every row of ``job`` in ``table`` whose window starts in one of ``windows``.

    ``rows`` must carry ``window_start``; rows for windows with no results are simply
    removed (a recomputed window that now has nothing replaces what was there).
    Returns the number of rows written.
    """
    rows = _conform(rows, schema)
    starts = sorted({start for start, _ in windows})
    days = sorted({start.date() for start in starts} | set(_row_days(rows)))
    ensure_table(data_dir, table, schema)
    with _table_lock(data_dir, table):
        for day in days:
            path = table_dir(data_dir, table) / job / f"{day.isoformat()}.parquet"
            kept = _read(path, schema)
            if kept is not None and starts:
                recomputed = pa.array(starts, pa.timestamp("us", tz="UTC"))
                kept = kept.filter(pc.invert(pc.is_in(kept["window_start"], value_set=recomputed)))
            fresh = rows.filter(pc.equal(pc.cast(rows["window_start"], pa.date32()), pa.scalar(day, pa.date32())))
            parts = [part for part in (kept, fresh) if part is not None and part.num_rows]
            merged = pa.concat_tables(parts) if parts else None
            _write_or_remove(data_dir, path, merged, schema)
    return rows.num_rows


def append_rows(data_dir: Path, table: str, partition: str, schema: pa.Schema, rows: pa.Table) -> None:
    """Append ``rows`` to ``<table>/<partition>.parquet`` (logs such as job runs; nothing is replaced)."""
    rows = _conform(rows, schema)
    ensure_table(data_dir, table, schema)
    with _table_lock(data_dir, table):
        path = table_dir(data_dir, table) / f"{partition}.parquet"
        existing = _read(path, schema)
        merged = rows if existing is None else pa.concat_tables([existing, rows])
        _write_or_remove(data_dir, path, merged, schema)


def _row_days(rows: pa.Table) -> list[date]:
    if not rows.num_rows:
        return []
    return pc.unique(pc.cast(rows["window_start"], pa.date32())).to_pylist()


def _conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """Select and cast to ``schema``; a column the job did not produce is NULL."""
    columns = []
    for field in schema:
        if field.name in rows.column_names:
            columns.append(rows[field.name].cast(field.type))
        else:
            columns.append(pa.nulls(rows.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _read(path: Path, schema: pa.Schema) -> pa.Table | None:
    if not path.exists():
        return None
    return _conform(pq.read_table(path), schema)


def _write_or_remove(data_dir: Path, path: Path, table: pa.Table | None, schema: pa.Schema) -> None:
    if table is None or table.num_rows == 0:
        path.unlink(missing_ok=True)
        return
    sink = pa.BufferOutputStream()
    pq.write_table(table.cast(schema), sink, compression="zstd")
    write_atomically(sink.getvalue(), path, tmp_dir(data_dir), fsync=True)


@contextmanager
def _table_lock(data_dir: Path, table: str):
    """Serialize writers of one table across threads and processes (server and CLI)."""
    directory = table_dir(data_dir, table)
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def result_view_sql(data_dir: Path) -> list[tuple[str, str]]:
    """(view name, SELECT) for every result table on disk; read by ``warehouse.catalog``."""
    root = results_root(data_dir)
    if not root.exists():
        return []
    views = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir() and p.name.isidentifier()):
        schema_file = directory / SCHEMA_FILE
        if not schema_file.exists() or not len(pq.read_schema(schema_file)):  # a view needs columns
            continue
        glob = directory.resolve().as_posix()
        views.append((directory.name,
                      f"SELECT * FROM read_parquet('{glob}/**/*.parquet', "
                      "union_by_name = true, hive_partitioning = false)"))
    return views
