"""What erasure and retention share: removing files the manifest says are gone, and
their audit-log tables (one small Parquet file per action, with a manifest entry).

Both follow the compactor's order of steps: write new files, commit a manifest
entry, then delete. A crash between the commit and the deletions leaves files the
manifest has removed (``verify`` names them ``not_removed``); ``finish_removals``
deletes them on the next run.
"""
from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from warehouse.landing import ParquetSettings, parquet_options, tmp_dir, write_atomically
from warehouse.manifest import LiveFiles, Manifest, file_sha256, opened
from warehouse.wal import fsync_dir

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_action_id(prefix: str, now: datetime) -> str:
    """Sortable and unique: ``<prefix>-20260501T120000Z-<8 hex>``."""
    return f"{prefix}-{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def remove_files(data_dir: Path, names: list[str]) -> None:
    """Delete ``names`` (relative to the data dir) and fsync their directories."""
    directories = set()
    for name in names:
        path = Path(data_dir) / name
        path.unlink(missing_ok=True)
        directories.add(path.parent)
    for directory in directories:
        if directory.exists():
            fsync_dir(directory)


def finish_removals(data_dir: Path, files: LiveFiles) -> list[str]:
    """Delete files an erasure or retention committed as removed but a crash left on disk.

    Only when the file still has the hash the entry recorded: anything else is
    evidence of tampering and stays for ``verify`` to report.
    """
    leftover = [name for name, (sha, _, _) in files.removed.items()
                if (Path(data_dir) / name).exists() and file_sha256(Path(data_dir) / name) == sha]
    if leftover:
        log.warning("finishing %d removal(s) a previous run committed but did not complete", len(leftover))
        remove_files(data_dir, leftover)
    return leftover


def append_entries(data_dir: Path, manifest: Manifest | None, entries: list[dict]) -> list[dict]:
    """Append to the caller's manifest (the server's), or to one opened for this call."""
    with opened(data_dir, manifest) as appender:
        return appender.append(entries)


# --------------------------------------------------------------------------- log tables

def write_log_table(data_dir: Path, dataset: str, name: str, table: pa.Table, day) -> dict:
    """One Parquet file ``parquet/<dataset>/date=<day>/<name>.parquet``; returns its manifest facts."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **parquet_options(table.schema, ParquetSettings()))
    data = sink.getvalue()
    relpath = f"parquet/{dataset}/date={day.isoformat()}/{name}.parquet"
    write_atomically(data, Path(data_dir) / relpath, tmp_dir(data_dir))
    return {"dataset": dataset, "file": relpath, "rows": table.num_rows, "bytes": data.size,
            "sha256": hashlib.sha256(data).hexdigest()}


def create_log_view(con: duckdb.DuckDBPyConnection, data_dir: Path, dataset: str, schema: pa.Schema) -> None:
    """View ``dataset`` over its files plus the ``date`` partition column; typed and empty before the first."""
    root = Path(data_dir).resolve() / "parquet" / dataset
    if next(root.glob("date=*/*.parquet"), None) is None:
        empty = schema.empty_table().append_column(pa.field("date", pa.date32()), pa.array([], pa.date32()))
        con.register(f"_{dataset}_empty", empty)
        con.execute(f"CREATE OR REPLACE VIEW {dataset} AS SELECT * FROM _{dataset}_empty")
        return
    pattern = (root / "date=*" / "*.parquet").as_posix().replace("'", "''")
    con.execute(f"CREATE OR REPLACE VIEW {dataset} AS SELECT * FROM read_parquet('{pattern}', "
                "hive_partitioning = true, hive_types = {'date': DATE})")
