"""Retention: whole days past the limit go, with a chained record; nothing below six months."""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pyarrow.parquet as pq
import pytest

from inferledger.config import ConfigError
from tests.conftest import make_config
from tests.warehouse.audit_data import NO_COMPACTION, decisions, land
from warehouse.catalog import query
from warehouse.manifest import file_sha256, manifest_path, read_entries, verify_chain
from warehouse.record import HTTP_ATTEMPT_SCHEMA, to_batch
from warehouse.retention import MIN_RETENTION_DAYS, RetentionPolicy, apply_retention
from warehouse.storage import Storage

TODAY = date(2027, 6, 10)
AGES = (500, 401, 400, 10)  # days before TODAY


def at(age: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=age), time(12), tzinfo=UTC)


@pytest.fixture
def warehouse(tmp_path):
    """Three decisions and one HTTP attempt on each of four days; day 500 has two segments."""
    data_dir = tmp_path / "data"
    batches = [decisions("alice", 3, day=at(age)) for age in AGES] + [decisions("bob", 2, day=at(500))]
    land(data_dir, *batches)
    with Storage(data_dir, NO_COMPACTION) as storage:
        attempts = [{"trace_id": f"{age:032x}", "span_id": f"{age:016x}", "start_time": at(age), "status_code": 200}
                    for age in AGES]
        storage.append("http_attempts", to_batch(attempts, HTTP_ATTEMPT_SCHEMA)).result()
    return data_dir


def days(data_dir, view="inferences") -> dict[date, int]:
    rows = query(data_dir, f"SELECT date, count(*) AS n FROM {view} GROUP BY date ORDER BY date").to_pylist()
    return {row["date"]: row["n"] for row in rows}


def test_days_older_than_the_limit_are_removed_and_verify_stays_clean(warehouse):
    before = days(warehouse)
    assert list(before.values()) == [5, 3, 3, 3]
    result = apply_retention(warehouse, RetentionPolicy(), TODAY, actor="scheduler")
    # limit 400 days: the cutoff is TODAY - 400; days strictly before it go, the cutoff day stays
    assert days(warehouse) == {TODAY - timedelta(days=400): 3, TODAY - timedelta(days=10): 3}
    assert set(days(warehouse, "http_attempts")) == {TODAY - timedelta(days=400), TODAY - timedelta(days=10)}
    assert result["rows_removed"] == 5 + 3 + 2  # inferences of days 500 and 401, their two HTTP attempts
    assert {(p["dataset"], p["date"]) for p in result["partitions"]} == {
        (ds, (TODAY - timedelta(days=age)).isoformat()) for ds in ("inferences", "http_attempts") for age in (500, 401)}
    assert not (warehouse / "parquet/inferences" / f"date={TODAY - timedelta(days=500)}").exists()
    assert verify_chain(warehouse) == []


def test_the_removal_is_chained_and_logged(warehouse):
    segments = sorted(p.relative_to(warehouse).as_posix()
                      for p in (warehouse / f"parquet/inferences/date={TODAY - timedelta(days=500)}").glob("*.parquet"))
    hashes = {name: file_sha256(warehouse / name) for name in segments}
    result = apply_retention(warehouse, RetentionPolicy(), TODAY, actor="scheduler")
    entries = list(read_entries(manifest_path(warehouse)))
    removal = next(e for e in entries if e["kind"] == "retention" and e["dataset"] == "inferences"
                   and e["source"]["partition"] == f"date={TODAY - timedelta(days=500)}")
    assert {item["file"]: item["sha256"] for item in removal["source"]["removes"]} == hashes
    assert len(segments) == 2 and removal["source"]["retention_days"] == 400
    assert removal["source"]["cutoff"] == (TODAY - timedelta(days=400)).isoformat()
    assert entries[-1]["kind"] == "retention_receipt" and entries[-1]["file"] == result["receipt_file"]
    logged = query(warehouse, "SELECT * FROM retention_actions ORDER BY dataset, partition_date").to_pylist()
    assert [(r["dataset"], r["partition_date"], r["rows"], r["actor"]) for r in logged] == [
        ("http_attempts", TODAY - timedelta(days=500), 1, "scheduler"),
        ("http_attempts", TODAY - timedelta(days=401), 1, "scheduler"),
        ("inferences", TODAY - timedelta(days=500), 5, "scheduler"),
        ("inferences", TODAY - timedelta(days=401), 3, "scheduler")]
    inference_row = logged[2]
    assert inference_row["chain_entry_hash"] == removal["entry_hash"] and sorted(inference_row["files"]) == segments


def test_a_second_run_removes_nothing(warehouse):
    apply_retention(warehouse, RetentionPolicy(), TODAY)
    again = apply_retention(warehouse, RetentionPolicy(), TODAY)
    assert again["partitions"] == [] and again["action_id"] is None and again["skipped"] == []
    assert verify_chain(warehouse) == []


def test_per_dataset_limits(warehouse):
    policy = RetentionPolicy(400, {"http_attempts": 200, "inferences": 450})
    apply_retention(warehouse, policy, TODAY)
    assert set(days(warehouse)) == {TODAY - timedelta(days=age) for age in (401, 400, 10)}
    assert set(days(warehouse, "http_attempts")) == {TODAY - timedelta(days=10)}
    assert verify_chain(warehouse) == []


def test_audit_logs_are_kept_unless_configured(warehouse):
    policy = RetentionPolicy()
    assert policy.days_for("inferences") == 400 and policy.days_for("cost_versions") == 400
    assert policy.days_for("erasures") is None and policy.days_for("retention_actions") is None
    assert RetentionPolicy(400, {"access_log": 730}).days_for("access_log") == 730


def test_a_tampered_partition_is_kept_as_evidence(warehouse):
    segment = next((warehouse / f"parquet/inferences/date={TODAY - timedelta(days=500)}").glob("*.parquet"))
    table = pq.read_table(segment)
    pq.write_table(table.slice(1), segment)  # a row deleted by hand
    result = apply_retention(warehouse, RetentionPolicy(), TODAY)
    assert [(s["dataset"], s["date"]) for s in result["skipped"]] == [
        ("inferences", (TODAY - timedelta(days=500)).isoformat())]
    assert "does not match its manifest hash" in result["skipped"][0]["reason"]
    assert segment.exists()
    assert [p.kind for p in verify_chain(warehouse)] == ["modified"]


@pytest.mark.parametrize("days", [0, 30, MIN_RETENTION_DAYS - 1])
def test_below_six_months_is_refused(days):
    with pytest.raises(ValueError, match=f"{days} days is below the minimum of 183 days"):
        RetentionPolicy(days)
    with pytest.raises(ValueError, match="retention_days_by_dataset.http_attempts"):
        RetentionPolicy(400, {"http_attempts": days})


def test_configuration_refuses_short_retention_with_a_clear_message(tmp_path):
    with pytest.raises(ConfigError, match=r"audit.retention_days: .*100 days is below the minimum of 183 days"):
        make_config(tmp_path, audit__retention_days=100)
    with pytest.raises(ConfigError, match=r"retention_days_by_dataset.inferences = 90 days"):
        make_config(tmp_path, audit__retention_days_by_dataset={"inferences": 90})
    config = make_config(tmp_path, audit__retention_days=183, audit__retention_days_by_dataset={"http_attempts": 365})
    assert config.audit.retention_policy() == RetentionPolicy(183, {"http_attempts": 365})
