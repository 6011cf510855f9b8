"""Streaming exports of decisions as JSON lines, CSV or Parquet, in the listing's order.

Nothing is built whole in memory: the export walks the ``date=`` partitions in
order and, per day, lets DuckDB sort that day and hand over Arrow batches of
``chunk_rows``; each batch is encoded and yielded at once (a Parquet row group per
batch). Memory is bounded by one day's sort (which DuckDB spills to disk past its
memory limit) and one batch, whatever the number of rows.

Formats: JSON lines with ISO 8601 UTC timestamps (``2026-05-01T12:00:00.000000Z``)
and non-finite numbers as null; CSV with a header row, the same timestamps, lists
as JSON text; Parquet with the view's own column types.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Iterator

import duckdb
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from warehouse.audit.decisions import ORDER_BY, DecisionFilter


@dataclass(frozen=True)
class ExportFormat:
    media_type: str
    extension: str


FORMATS = {
    "jsonl": ExportFormat("application/x-ndjson", "jsonl"),
    "csv": ExportFormat("text/csv; charset=utf-8", "csv"),
    "parquet": ExportFormat("application/vnd.apache.parquet", "parquet"),
}
ISO_UTC = "%Y-%m-%dT%H:%M:%S.%fZ"


class DecisionExport:
    """An iterable of byte chunks; ``rows`` counts the records yielded so far (for the access log)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, data_dir: Path, where: DecisionFilter, fmt: str,
                 chunk_rows: int = 10_000):
        if fmt not in FORMATS:
            raise ValueError(f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}")
        self.con, self.data_dir, self.where, self.fmt, self.chunk_rows = con, Path(data_dir), where, fmt, chunk_rows
        self.rows = 0
        self.finished = False

    def __iter__(self) -> Iterator[bytes]:
        projection = _projection(self.con, self.fmt)
        conditions, params = self.where.conditions()
        schema = self.con.sql(f"SELECT {projection} FROM inferences LIMIT 0").to_arrow_table().schema
        encoder = _ENCODERS[self.fmt](schema)
        for day in partition_days(self.data_dir, "inferences"):
            if not self.where.covers(day):
                continue
            sql = (f"SELECT {projection} FROM inferences WHERE date = ?::DATE AND "
                   f"{' AND '.join(conditions) or 'true'} ORDER BY {ORDER_BY}")
            for batch in self.con.sql(sql, params=[day, *params]).to_arrow_reader(self.chunk_rows):
                self.rows += batch.num_rows
                if chunk := encoder.encode(batch):
                    yield chunk
        if tail := encoder.finish():
            yield tail
        self.finished = True


def partition_days(data_dir: Path, dataset: str) -> list[date]:
    """The ``date=`` partitions of a dataset, oldest first (the NULL partition has no records to export)."""
    days = []
    for folder in (Path(data_dir) / "parquet" / dataset).glob("date=*"):
        try:
            days.append(date.fromisoformat(folder.name.removeprefix("date=")))
        except ValueError:
            continue
    return sorted(days)


def _projection(con: duckdb.DuckDBPyConnection, fmt: str) -> str:
    """The SELECT list: native columns for Parquet, text-friendly ones for CSV, one JSON object for JSON lines."""
    columns = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = 'inferences' "
                          "AND schema_name = 'main' ORDER BY column_index").fetchall()
    if fmt == "parquet":
        return ", ".join(_quote(name) for name, _ in columns)
    converted = [(name, _textual(_quote(name), kind, lists_as_json=fmt == "csv")) for name, kind in columns]
    if fmt == "csv":
        return ", ".join(f"{expression} AS {_quote(name)}" for name, expression in converted)
    fields = ", ".join(f"{_quote(name)} := {expression}" for name, expression in converted)
    return f"to_json(struct_pack({fields}))::VARCHAR AS line"


def _textual(column: str, kind: str, lists_as_json: bool) -> str:
    if kind.startswith("TIMESTAMP"):
        return f"strftime({column}, '{ISO_UTC}')"
    if kind in ("DOUBLE", "FLOAT"):
        return f"CASE WHEN isfinite({column}) THEN {column} END"
    if lists_as_json and kind.endswith("[]"):
        return f"to_json({column})::VARCHAR"
    return column


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Chunks:
    """A write-only file that hands its bytes over in pieces (for pyarrow's writers)."""

    def __init__(self):
        self.parts: list[bytes] = []
        self.position = 0
        self.closed = False

    def write(self, data) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def take(self) -> bytes:
        data, self.parts = b"".join(self.parts), []
        return data


class _JsonLines:
    def __init__(self, schema: pa.Schema):
        pass

    def encode(self, batch: pa.RecordBatch) -> bytes:
        lines = batch.column(0).to_pylist()
        return ("\n".join(lines) + "\n").encode() if lines else b""

    def finish(self) -> bytes:
        return b""


class _Csv:
    def __init__(self, schema: pa.Schema):
        self.sink = _Chunks()
        self.writer = pa_csv.CSVWriter(self.sink, schema)

    def encode(self, batch: pa.RecordBatch) -> bytes:
        self.writer.write_batch(batch)
        return self.sink.take()

    def finish(self) -> bytes:
        self.writer.close()  # an export without rows is the header alone
        return self.sink.take()


class _Parquet:
    def __init__(self, schema: pa.Schema):
        self.sink = _Chunks()
        self.writer = pq.ParquetWriter(self.sink, schema, compression="zstd")

    def encode(self, batch: pa.RecordBatch) -> bytes:
        self.writer.write_batch(batch)
        return self.sink.take()

    def finish(self) -> bytes:
        self.writer.close()
        return self.sink.take()


_ENCODERS = {"jsonl": _JsonLines, "csv": _Csv, "parquet": _Parquet}
