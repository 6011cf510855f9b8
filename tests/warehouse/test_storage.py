"""Storage facade: visibility, stop/restart, backpressure, compaction, stats."""
from __future__ import annotations

import json
import shutil
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from warehouse.catalog import query
from warehouse.compaction import CompactionSettings, Compactor
from warehouse.manifest import Manifest, manifest_path, read_entries, verify_chain
from warehouse.record import HTTP_ATTEMPT_SCHEMA, to_batch
from warehouse.storage import Storage, StorageSettings, StorageUnavailable

DAY = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)
NO_COMPACTION = CompactionSettings(enabled=False)


def spans(n: int, first: int = 0, **extra) -> pa.RecordBatch:
    return to_batch([{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "start_time": DAY + timedelta(seconds=i),
                      "ingest_time": DAY, **extra} for i in range(first, first + n)])


def count(data_dir: Path, view: str = "inferences") -> int:
    return query(data_dir, f"SELECT count(*) AS n FROM {view}")["n"][0].as_py()


def wait_until(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_appended_rows_are_queryable_within_the_visibility_target(tmp_path):
    settings = StorageSettings(compaction=NO_COMPACTION)  # defaults: seal every 1 s, target 5 s
    with Storage(tmp_path, settings) as storage:
        started = time.monotonic()
        storage.append("inferences", spans(10)).result()
        attempt = to_batch([{"trace_id": "e" * 32, "span_id": "f" * 16, "start_time": DAY}], HTTP_ATTEMPT_SCHEMA)
        storage.append("http_attempts", attempt).result()
        assert wait_until(lambda: count(tmp_path) == 10 and count(tmp_path, "http_attempts") == 1,
                          settings.visibility_target_s)
        assert time.monotonic() - started <= settings.visibility_target_s


def test_stop_lands_everything_and_a_restart_carries_on(tmp_path):
    settings = StorageSettings(seal_interval_s=30, visibility_target_s=60, compaction=NO_COMPACTION)
    with Storage(tmp_path, settings) as storage:
        storage.append("inferences", spans(5)).result()
    assert count(tmp_path) == 5
    assert not any((tmp_path / "wal").rglob("*.wal"))
    with Storage(tmp_path, settings) as storage:
        storage.append("inferences", spans(5, first=5)).result()
        storage.append("inferences", spans(5)).result()  # a retry of spans stored before the restart
    assert count(tmp_path) == 10 and count(tmp_path, "inferences_all") == 15
    assert verify_chain(tmp_path) == []


def test_refuses_while_too_much_waits_to_land(tmp_path):
    release = threading.Event()

    def slow_pricing(dataset: str, table: pa.Table) -> pa.Table:
        release.wait(10)
        return table

    settings = StorageSettings(seal_interval_s=0.1, max_pending_bytes=1000, transform=slow_pricing,
                               compaction=NO_COMPACTION)
    with Storage(tmp_path, settings) as storage:
        assert storage.can_accept() == (True, "")
        storage.append("inferences", spans(20)).result()
        accepted, reason = storage.can_accept()
        assert not accepted and "waiting to land" in reason
        release.set()
        assert storage.flush(timeout=10)
        assert storage.can_accept() == (True, "")


def test_refuses_when_the_disk_is_nearly_full(tmp_path):
    with Storage(tmp_path, StorageSettings(min_free_bytes=2**62, compaction=NO_COMPACTION)) as storage:
        accepted, reason = storage.can_accept()
        assert not accepted and "free on the data disk" in reason


def test_append_checks_what_can_never_be_stored(tmp_path):
    with Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)) as storage:
        with pytest.raises(ValueError, match="unknown dataset"):
            storage.append("spans", spans(1))
        extra = pa.RecordBatch.from_pydict({"trace_id": ["a" * 32], "surprise": [1]})
        with pytest.raises(ValueError, match="surprise"):
            storage.append("inferences", extra)
        assert storage.append("inferences", spans(0)).result() is None
        partial = pa.RecordBatch.from_pydict({"span_id": ["b" * 16], "trace_id": ["a" * 32],
                                              "start_time": pa.array([DAY], pa.timestamp("us", tz="UTC"))})
        storage.append("inferences", partial).result()
        assert storage.flush(timeout=10)
    row = query(tmp_path, "SELECT trace_id, input_tokens FROM inferences").to_pylist()
    assert row == [{"trace_id": "a" * 32, "input_tokens": None}]


def test_appends_after_stop_fail_as_retryable(tmp_path):
    storage = Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION))
    storage.start()
    storage.stop()
    assert isinstance(storage.append("inferences", spans(1)).exception(), StorageUnavailable)
    assert storage.can_accept() == (False, "storage is not running")


def test_stats_describe_the_pipeline(tmp_path):
    with Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)) as storage:
        for first in (0, 100):
            storage.append("inferences", spans(4, first=first)).result()
        assert storage.flush(timeout=10)
        stats = storage.stats()
    assert (stats["rows_landed_inferences"], stats["rows_landed_http_attempts"]) == (8, 0)
    assert all(isinstance(value, (int, float)) for value in stats.values())  # flat, for Prometheus
    assert stats["wal_appends"] == 2 and stats["wal_fsyncs"] >= 1 and stats["wal_bytes_written"] > 0
    assert stats["pending_bytes"] == 0 and stats["flush_lag_seconds"] == 0.0
    assert stats["segment_files"] == stats["segments_landed"] == 1
    assert stats["free_bytes"] > 0 and stats["landing_errors"] == 0


def test_one_writer_per_data_dir(tmp_path):
    with Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)):
        with pytest.raises(RuntimeError, match="already writing"):
            Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)).start()
        assert count(tmp_path) == 0  # readers need no lock
    with Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)):
        pass  # released by stop()


def test_invalid_settings_fail_fast(tmp_path):
    with pytest.raises(ValueError, match="seal_interval_s"):
        Storage(tmp_path, StorageSettings(seal_interval_s=10, visibility_target_s=5))
    with pytest.raises(ValueError, match="wal_compression"):
        Storage(tmp_path, StorageSettings(wal_compression="gzip"))


def landed_segments(data_dir: Path, n: int) -> list[Path]:
    """n segments in one partition, one flush each."""
    with Storage(data_dir, StorageSettings(compaction=NO_COMPACTION)) as storage:
        for i in range(n):
            storage.append("inferences", spans(3, first=i * 3)).result()
            assert storage.flush(timeout=10)
    return sorted((data_dir / "parquet" / "inferences").glob("date=2026-05-01/v1-*.parquet"))


def test_compaction_merges_small_segments_then_deletes_them_after_the_grace_period(tmp_path):
    segments = landed_segments(tmp_path, 4)
    settings = StorageSettings(compaction=CompactionSettings(interval_s=0.05, min_files=2, grace_s=0.3))
    with Storage(tmp_path, settings) as storage:
        assert wait_until(lambda: storage.stats()["compactions"] == 1)
        assert all(path.exists() for path in segments)  # still in their grace period
        assert count(tmp_path) == 12 and count(tmp_path, "inferences_all") == 24
        assert wait_until(lambda: storage.stats()["files_deleted"] == 4)
    [merged] = (tmp_path / "parquet" / "inferences" / "date=2026-05-01").glob("v1-compact-*.parquet")
    assert count(tmp_path) == count(tmp_path, "inferences_all") == 12
    entry = list(read_entries(manifest_path(tmp_path)))[-1]
    assert entry["kind"] == "compaction" and entry["rows"] == 12
    assert [r["file"] for r in entry["source"]["replaces"]] == [p.relative_to(tmp_path).as_posix() for p in segments]
    assert entry["file"] == merged.relative_to(tmp_path).as_posix()
    assert verify_chain(tmp_path) == []
    assert not any((tmp_path / "compaction" / "pending").iterdir())


def test_compaction_counts_span_ids_only_when_no_file_is_landing(tmp_path):
    """The lander's and the compactor's memory peaks take turns: Storage gives both one lock,
    which the lander holds while landing a file and compaction needs for its span-id count."""
    landed_segments(tmp_path, 3)
    lock = threading.Lock()
    manifest = Manifest(manifest_path(tmp_path))
    compactor = Compactor(tmp_path, manifest, CompactionSettings(min_files=2, idle_s=0, grace_s=0), fsync=False,
                          peak_lock=lock)
    try:
        with lock:  # a file is landing
            merging = threading.Thread(target=compactor.run_once)
            merging.start()
            merging.join(0.5)
            assert merging.is_alive() and compactor.counters["compactions"] == 0
        merging.join(10)
        assert not merging.is_alive() and compactor.counters["compactions"] == 1
    finally:
        manifest.close()
    assert count(tmp_path) == 9


def test_storage_gives_its_lander_and_compactor_one_peak_lock(tmp_path):
    with Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)) as storage:
        assert storage.lander.peak_lock is storage.compactor.peak_lock


def test_compaction_keeps_the_first_receipt_of_a_span_stored_in_two_segments(tmp_path):
    later = DAY + timedelta(minutes=5)
    with Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)) as storage:
        # spans 0 and 1 again in the last segment, with the earlier receipt time
        # with span 10's id again in another trace: a different span, kept
        for batches in ([spans(3, ingest_time=later)], [spans(2, first=10)],
                        [spans(2), spans(1, first=10, trace_id="f" * 32)]):
            for batch in batches:
                storage.append("inferences", batch).result()
            assert storage.flush(timeout=10)
    settings = StorageSettings(compaction=CompactionSettings(interval_s=0.05, min_files=2, grace_s=0))
    with Storage(tmp_path, settings) as storage:
        assert wait_until(lambda: storage.stats()["files_deleted"] == 3)
        assert storage.stats()["compactions"] == 1 and storage.stats()["duplicates_dropped"] == 2
    assert count(tmp_path, "inferences_all") == count(tmp_path) == 6
    rows = query(tmp_path, "SELECT trace_id, span_id, ingest_time FROM inferences_all "
                           "ORDER BY span_id, trace_id").to_pylist()
    assert [(r["trace_id"][-2:], r["span_id"][-2:], r["ingest_time"]) for r in rows] == [
        ("00", "00", DAY), ("01", "01", DAY), ("02", "02", later), ("0a", "0a", DAY), ("ff", "0a", DAY),
        ("0b", "0b", DAY)]


def test_an_uncommitted_compaction_is_undone_on_start(tmp_path):
    segments = landed_segments(tmp_path, 2)
    orphan = segments[0].with_name("v1-compact-00000000000000000001-deadbeef.parquet")
    shutil.copy(segments[0], orphan)  # the output was renamed in, then the process died
    record = tmp_path / "compaction" / "pending" / "v1-compact-00000000000000000001-deadbeef.json"
    record.write_text(json.dumps({"output": orphan.relative_to(tmp_path).as_posix(),
                                  "replaces": [p.relative_to(tmp_path).as_posix() for p in segments],
                                  "created_at": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}))
    assert [p.kind for p in verify_chain(tmp_path)] == ["extra"]
    with Storage(tmp_path, StorageSettings(compaction=NO_COMPACTION)):
        pass
    assert not orphan.exists() and not record.exists() and all(p.exists() for p in segments)
    assert verify_chain(tmp_path) == [] and count(tmp_path) == 6


def test_a_committed_compaction_finishes_its_deletions_after_a_restart(tmp_path):
    segments = landed_segments(tmp_path, 3)
    long_grace = StorageSettings(compaction=CompactionSettings(interval_s=0.05, min_files=2, grace_s=3600))
    with Storage(tmp_path, long_grace) as storage:
        assert wait_until(lambda: storage.stats()["compactions"] == 1)
    assert all(p.exists() for p in segments)  # stopped inside the grace period
    short_grace = StorageSettings(compaction=CompactionSettings(interval_s=0.05, min_files=2, grace_s=0))
    with Storage(tmp_path, short_grace) as storage:
        assert wait_until(lambda: storage.stats()["files_deleted"] == 3)
    assert not any(p.exists() for p in segments)
    assert verify_chain(tmp_path) == [] and count(tmp_path) == 9
