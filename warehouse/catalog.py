"""DuckDB catalog: read-only views over the Parquet segments, in an in-memory database.

No DuckDB database file exists, so nothing holds a lock: the server, the CLI and
a notebook can all open connections at the same time. Per dataset there are two
views:

* ``<dataset>_all``: every row of every data file (a span received twice, or sitting
  in both a segment and the compaction that replaced it, shows up twice);
* ``<dataset>``: one row per span. A span is (trace_id, span_id); the window also
  partitions by ``date`` and ``start_time``, which are part of the span's content,
  so that DuckDB pushes filters on them below the deduplication: ``WHERE date
  BETWEEN ...`` skips whole ``date=`` directories, ``start_time`` filters skip row
  groups by their statistics. Days with a valid duplicate index
  (``warehouse/duplicates.py``, kept by the jobs) skip the window: their files are
  read as they are, but for the few holding later receipts of a span, which an
  anti-join on the index filters. The window is most of the cost of reading a day.

For ``inferences`` the deduplicated view is ``inferences_raw`` (costs as landed);
``inferences`` adds each record's latest repriced cost and ``cost_version``
(``warehouse.pricing.reprice.cost_view_sql``, which also defines ``repricings``,
``cost_versions`` and ``latest_costs``).

Every data file is written with the full schema of its version and is named
``v<schema version>-...parquet``. Each version is read with one glob *without*
``union_by_name`` (which would read every file's footer when binding, seconds with
thousands of files), and versions are combined with ``UNION ALL BY NAME``, so
columns added later are NULL for older files. ``date=__HIVE_DEFAULT_PARTITION__/
v<current>-schema.parquet`` is a zero-row file with the current schema, written
when storage starts: the current version's glob always matches something, and a
connection opened before the first segment landed sees the rows that land later.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.audit.access_log import create_access_log_view
from warehouse.duplicates import DROPPED_FILE, DayIndex, valid_indexes
from warehouse.jobs.results import result_view_sql
from warehouse.landing import DEDUP_KEY, NULL_PARTITION, write_atomically
from warehouse.erasure import ERASURE_SCHEMA, ERASURES
from warehouse.maintenance import create_log_view
from warehouse.pricing.reprice import cost_view_sql
from warehouse.record import DATASETS, SCHEMA_VERSION
from warehouse.retention import RETENTION_ACTIONS, RETENTION_SCHEMA

DEDUP_WINDOW = "PARTITION BY date, trace_id, span_id, start_time ORDER BY ingest_time"
HIVE_OPTIONS = "hive_partitioning = true, hive_types = {'date': DATE}"  # the date= folders as a DATE column
READ_ONLY_STATEMENTS = {duckdb.StatementType.SELECT, duckdb.StatementType.EXPLAIN}
CONNECT_ATTEMPTS = 3


def version_glob(data_dir: Path, dataset: str, version: int) -> str:
    return f"{Path(data_dir).resolve().as_posix()}/parquet/{dataset}/*/v{version}-*.parquet"


def schema_file(data_dir: Path, dataset: str) -> Path:
    return Path(data_dir) / "parquet" / dataset / f"date={NULL_PARTITION}" / f"v{SCHEMA_VERSION}-schema.parquet"


def ensure_schema_files(data_dir: Path, fsync: bool = True) -> None:
    """Write each dataset's zero-row schema file if it is missing or stale."""
    tmp_dir = Path(data_dir) / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    for dataset, schema in DATASETS.items():
        path = schema_file(data_dir, dataset)
        if path.exists() and pq.read_schema(path).equals(schema, check_metadata=True):
            continue
        sink = pa.BufferOutputStream()
        pq.write_table(schema.empty_table(), sink)
        write_atomically(sink.getvalue(), path, tmp_dir, fsync)


def connect(data_dir: Path, read_only: bool = True,
            settings: dict[str, Any] | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the warehouse views.

    ``read_only`` sandboxes it: DuckDB may touch only files under ``data_dir``, may
    not install or load extensions, and the configuration is locked. DuckDB cannot
    forbid ``COPY ... TO`` inside the allowed directory; ``query`` refuses every
    statement but SELECT/EXPLAIN, and ``verify_chain`` reports stray files.
    ``settings`` (e.g. ``memory_limit``, ``threads``) are applied before the lock.
    """
    for attempt in range(1, CONNECT_ATTEMPTS + 1):
        con = duckdb.connect(":memory:")
        try:
            con.execute("SET TimeZone = 'UTC'")  # start_time::DATE must agree with the partitions
            con.execute("SET enable_progress_bar = false")  # jobs and the CLI print their own progress
            for name, value in (settings or {}).items():
                con.execute(f"SET {name} = {_quote(str(value))}")
            create_views(con, data_dir)  # binding globs: a compaction may delete a file meanwhile
            if read_only:
                _sandbox(con, data_dir)
            return con
        except duckdb.Error as exc:
            con.close()
            if attempt == CONNECT_ATTEMPTS or not is_vanished_file_error(exc):
                raise
    raise AssertionError("unreachable")


def _sandbox(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    root = Path(data_dir).resolve().as_posix() + "/"
    con.execute(f"SET allowed_directories = [{_quote(root)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET autoinstall_known_extensions = false")
    con.execute("SET autoload_known_extensions = false")
    con.execute("SET lock_configuration = true")


def create_views(con: duckdb.DuckDBPyConnection, data_dir: Path) -> None:
    """(Re)create the views; call again on a long-lived connection after a schema upgrade."""
    for dataset, schema in DATASETS.items():
        source = _source(con, data_dir, dataset, schema)
        deduplicated = f"{dataset}_raw" if dataset == "inferences" else dataset
        con.execute(f"CREATE OR REPLACE VIEW {dataset}_all AS {source}")
        indexes = valid_indexes(data_dir, dataset)
        con.execute(f"CREATE OR REPLACE VIEW {deduplicated} AS {deduplicated_sql(dataset, indexes)}")
    # ``inferences`` = ``inferences_raw`` with each record's latest cost version (repricing).
    for statement in cost_view_sql(data_dir, "inferences_raw"):
        con.execute(statement)
    for dataset, schema in ((ERASURES, ERASURE_SCHEMA), (RETENTION_ACTIONS, RETENTION_SCHEMA)):
        create_log_view(con, data_dir, dataset, schema)  # receipts of erasures and retention runs
    create_access_log_view(con, data_dir)  # who read what through the auditor API
    for name, select in result_view_sql(data_dir):  # job results, alert history, ...
        con.execute(f"CREATE OR REPLACE VIEW {name} AS {select}")


def deduplicated_sql(dataset: str, indexes: list[DayIndex]) -> str:
    """One row per span: the window over every row, except on days with a valid duplicate index.

    Those days are read from the files the index was computed from: as they are, but for the
    files holding later receipts, which go through an anti-join on the index. See
    ``warehouse/duplicates.py``.
    """
    window = f"SELECT * FROM {dataset}_all {{}} QUALIFY row_number() OVER ({DEDUP_WINDOW}) = 1"
    if not indexes:
        return window.format("")
    days = ", ".join(f"DATE '{index.day.isoformat()}'" for index in indexes)
    parts = [window.format(f"WHERE date NOT IN ({days})"),
             _read_files_sql([path for index in indexes for path in index.clean])]
    dirty = [path for index in indexes for path in index.dirty]
    if dirty:
        key = ", ".join(DEDUP_KEY)
        dropped = f"read_parquet({_sql_list([index.index for index in indexes if index.dirty])})"
        parts.append(f"SELECT * EXCLUDE (filename) FROM ({_read_files_sql(dirty, with_filename=True)}) "
                     f"WHERE ({key}, filename) NOT IN (SELECT {key}, {DROPPED_FILE} FROM {dropped})")
    return " UNION ALL BY NAME ".join(f"({part})" for part in parts if part)


def _read_files_sql(paths: list[str], with_filename: bool = False) -> str:
    """Explicit files, one read per schema version (files are named ``v<version>-...``)."""
    by_version: dict[int, list[str]] = {}
    for path in paths:
        by_version.setdefault(int(Path(path).name.split("-", 1)[0].removeprefix("v")), []).append(path)
    if not paths:
        return ""
    options = HIVE_OPTIONS + (", filename = true" if with_filename else "")
    return " UNION ALL BY NAME ".join(f"SELECT * FROM read_parquet({_sql_list(files)}, {options})"
                                      for _, files in sorted(by_version.items(), reverse=True))


def _sql_list(items: list[str]) -> str:
    return "[" + ", ".join(_quote(item) for item in items) + "]"


def _source(con: duckdb.DuckDBPyConnection, data_dir: Path, dataset: str, schema: pa.Schema) -> str:
    """Newest version first, so the view's columns follow the current schema's order."""
    root = Path(data_dir) / "parquet" / dataset
    versions = [v for v in range(SCHEMA_VERSION, 0, -1) if next(root.glob(f"*/v{v}-*.parquet"), None)]
    if not versions:  # storage never started here: an empty relation with the right columns
        empty = schema.empty_table().append_column(pa.field("date", pa.date32()), pa.array([], pa.date32()))
        con.register(f"_{dataset}_empty", empty)
        return f"SELECT * FROM _{dataset}_empty"
    return " UNION ALL BY NAME ".join(
        f"SELECT * FROM read_parquet({_quote(version_glob(data_dir, dataset, v))}, {HIVE_OPTIONS})" for v in versions)


def query(data_dir: Path, sql: str, params: Sequence[Any] | None = None,
          read_only: bool = True) -> pa.Table:
    """Run one statement on a fresh connection and return an Arrow table.

    Retries once when a file vanished between DuckDB's glob and its read (a
    compaction deleting replaced segments after their grace period).
    """
    if read_only:
        _check_read_only(sql)
    for attempt in (1, 2):
        con = connect(data_dir, read_only)
        try:
            return con.sql(sql, params=params).to_arrow_table()
        except duckdb.Error as exc:
            if attempt == 2 or not is_vanished_file_error(exc):
                raise
        finally:
            con.close()
    raise AssertionError("unreachable")


def is_vanished_file_error(exc: Exception) -> bool:
    """DuckDB's error for a file that existed at glob time and was gone when read."""
    text = str(exc)
    return isinstance(exc, duckdb.IOException) and (
        "No such file or directory" in text or "No files found" in text or "Cannot open file" in text)


def _check_read_only(sql: str) -> None:
    statements = duckdb.extract_statements(sql)
    if len(statements) != 1:
        raise ValueError("exactly one SQL statement is allowed")
    if statements[0].type not in READ_ONLY_STATEMENTS:
        raise PermissionError(f"only SELECT and EXPLAIN are allowed, not {statements[0].type.name}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
