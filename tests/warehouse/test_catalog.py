"""Catalog: DuckDB views over real segments, deduplication, pruning, read-only sandbox."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from warehouse.catalog import connect, ensure_schema_files, is_vanished_file_error, query
from warehouse.compaction import CompactionSettings
from warehouse.record import DATASETS, RECORD_SCHEMA, to_batch
from warehouse.storage import Storage, StorageSettings

DAY = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
FAST = StorageSettings(seal_interval_s=0.2, compaction=CompactionSettings(enabled=False))


def spans(n: int, first: int = 0, day: int = 0, ingested: datetime = DAY, **extra) -> pa.RecordBatch:
    return to_batch([{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "start_time": DAY + timedelta(days=day),
                      "ingest_time": ingested, "service_name": "svc", **extra}
                     for i in range(first, first + n)])


def land(data_dir: Path, *batches: pa.RecordBatch) -> None:
    """Each batch becomes its own segment (a flush between them)."""
    with Storage(data_dir, FAST) as storage:
        for batch in batches:
            storage.append("inferences", batch).result()
            assert storage.flush(timeout=10)


def count(data_dir: Path, view: str, where: str = "true") -> int:
    return query(data_dir, f"SELECT count(*) AS n FROM {view} WHERE {where}")["n"][0].as_py()


def expected_columns() -> list[str]:
    return RECORD_SCHEMA.names + ["date"]


@pytest.mark.parametrize("with_schema_files", [False, True])
def test_views_exist_with_typed_columns_before_any_data(tmp_path, with_schema_files):
    if with_schema_files:
        ensure_schema_files(tmp_path)
    con = connect(tmp_path)
    for dataset, schema in DATASETS.items():
        described = {name: kind for name, kind, *_ in con.sql(f"DESCRIBE {dataset}").fetchall()}
        extra = ["date", "cost_version"] if dataset == "inferences" else ["date"]  # cost_version: repricing
        assert list(described) == schema.names + extra
        assert con.sql(f"SELECT count(*) FROM {dataset}").fetchall() == [(0,)]
    described = dict(row[:2] for row in con.sql("DESCRIBE inferences").fetchall())
    assert described["start_time"] == "TIMESTAMP WITH TIME ZONE"
    assert described["finish_reasons"] == "VARCHAR[]"
    assert described["input_tokens"] == "BIGINT" and described["date"] == "DATE"
    con.close()


def test_a_connection_opened_before_the_first_segment_sees_later_rows(tmp_path):
    with Storage(tmp_path, FAST) as storage:
        con = connect(tmp_path)
        assert con.sql("SELECT count(*) FROM inferences").fetchall() == [(0,)]
        storage.append("inferences", spans(3)).result()
        assert storage.flush(timeout=10)
        assert con.sql("SELECT count(*) FROM inferences").fetchall() == [(3,)]
        con.close()


def test_a_span_received_twice_appears_once(tmp_path):
    later = DAY + timedelta(minutes=5)
    land(tmp_path, spans(4), spans(4, ingested=later), spans(2, first=100))
    assert count(tmp_path, "inferences_all") == 10
    assert count(tmp_path, "inferences") == 6
    kept = query(tmp_path, "SELECT DISTINCT ingest_time FROM inferences WHERE span_id < '0000000000000064'")
    assert kept["ingest_time"].to_pylist() == [DAY]  # the first receipt wins


def test_date_filter_reads_only_its_partition(tmp_path):
    land(tmp_path, spans(3, day=0), spans(5, first=10, day=1), spans(7, first=20, day=2))
    assert count(tmp_path, "inferences", "date = DATE '2026-05-02'") == 5
    con = connect(tmp_path)
    plan = con.sql("EXPLAIN SELECT count(*) FROM inferences WHERE date = DATE '2026-05-02'").fetchall()[0][1]
    con.close()
    assert "Scanning Files: 1/4" in plan  # 3 segments + the schema file; only one is read


def test_start_time_filter_is_pushed_into_the_scan(tmp_path):
    land(tmp_path, spans(3, day=0), spans(5, first=10, day=1))
    where = "start_time >= TIMESTAMPTZ '2026-05-02 00:00:00+00'"
    assert count(tmp_path, "inferences", where) == 5
    con = connect(tmp_path)
    plan = con.sql(f"EXPLAIN SELECT * FROM inferences WHERE {where}").fetchall()[0][1]
    con.close()
    read_parquet = plan[plan.index("READ_PARQUET"):]
    assert "start_time>=" in read_parquet.replace(" ", "")  # below the dedup, on the Parquet reader


def test_query_returns_arrow_with_utc_timestamps(tmp_path):
    land(tmp_path, spans(2, input_tokens=7))
    table = query(tmp_path, "SELECT start_time, input_tokens FROM inferences ORDER BY span_id")
    assert table.schema.field("start_time").type == pa.timestamp("us", tz="UTC")
    assert table["input_tokens"].to_pylist() == [7, 7]
    assert query(tmp_path, "SELECT ? AS x", [5])["x"].to_pylist() == [5]


def test_read_only_connections_reach_nothing_outside_the_data_dir(tmp_path):
    land(tmp_path, spans(1))
    con = connect(tmp_path)
    with pytest.raises(duckdb.PermissionException):
        con.sql("SELECT * FROM read_csv('/etc/passwd')").fetchall()
    with pytest.raises(duckdb.Error):
        con.execute("SET enable_external_access = true")
    con.close()


def test_query_accepts_only_reads(tmp_path):
    land(tmp_path, spans(1))
    target = tmp_path / "parquet" / "inferences" / "stolen.csv"
    with pytest.raises(PermissionError, match="COPY"):
        query(tmp_path, f"COPY (SELECT * FROM inferences) TO '{target}'")
    with pytest.raises(ValueError, match="one SQL statement"):
        query(tmp_path, "SELECT 1; SELECT 2")
    assert not target.exists()
    assert query(tmp_path, "EXPLAIN SELECT * FROM inferences").num_rows >= 1


def test_vanished_file_errors_are_recognised():
    with pytest.raises(duckdb.IOException) as missing:
        duckdb.sql("SELECT * FROM read_parquet('/nonexistent/segment.parquet')").fetchall()
    assert is_vanished_file_error(missing.value)
    with pytest.raises(duckdb.Error) as syntax:
        duckdb.sql("SELEC 1")
    assert not is_vanished_file_error(syntax.value)


def test_readers_see_each_span_once_while_compaction_replaces_files(tmp_path):
    """Compaction with no grace period races the readers: no error, no duplicate, no loss."""
    batches = [spans(5, first=i * 5) for i in range(12)]
    land(tmp_path, *batches)
    settings = StorageSettings(seal_interval_s=0.2, compaction=CompactionSettings(
        interval_s=0.05, min_files=2, grace_s=0.0, idle_s=0.0))
    counts, errors, stop = [], [], threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                counts.append(count(tmp_path, "inferences"))
        except Exception as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    with Storage(tmp_path, settings) as storage:
        reader.start()
        for _ in range(200):
            if storage.stats()["segment_files"] == 1:
                break
            stop.wait(0.05)
        stop.set()
        reader.join()
        assert storage.stats()["compactions"] >= 1
    assert errors == [] and counts and set(counts) == {60}
    assert count(tmp_path, "inferences_all") == 60
    other = connect(tmp_path), connect(tmp_path)  # several readers at once: no lock anywhere
    assert [c.sql("SELECT count(*) FROM inferences").fetchall() for c in other] == [[(60,)], [(60,)]]
