"""Duplicate index: days read without the deduplication window give the same rows as with it."""
from __future__ import annotations

import os
from pathlib import Path
import shutil
import time
from datetime import date, timedelta

import pyarrow.parquet as pq

from tests.warehouse.test_catalog import DAY, count, land, spans
from warehouse import duplicates
from warehouse.catalog import query
from warehouse.compaction import CompactionSettings
from warehouse.storage import Storage, StorageSettings

FIRST, SECOND = date(2026, 5, 1), date(2026, 5, 2)
ALL_ROWS = "SELECT * EXCLUDE (cost_version) FROM inferences ORDER BY span_id, ingest_time"


def index_folder(data_dir, day: date):
    return data_dir / duplicates.CACHE / "inferences" / f"date={day.isoformat()}"


def refresh(data_dir) -> int:
    return duplicates.refresh(data_dir, "inferences", FIRST, SECOND, settle_s=0)


def land_with_duplicates(data_dir):
    """Day one: spans 0-3 received twice (two segments), 100-101 once; day two: 10-14 once."""
    land(data_dir, spans(4), spans(4, ingested=DAY + timedelta(minutes=5)), spans(2, first=100),
         spans(5, first=10, day=1))


def test_the_index_holds_the_keys_stored_twice_and_reads_agree_with_the_window(tmp_path):
    land_with_duplicates(tmp_path)
    unindexed = query(tmp_path, ALL_ROWS)
    assert refresh(tmp_path) == 2
    [first_index] = index_folder(tmp_path, FIRST).iterdir()
    [second_index] = index_folder(tmp_path, SECOND).iterdir()
    # day one: 4 later receipts, all in its second file (by name); day two: none
    assert first_index.name.endswith("-4-1.parquet") and second_index.name.endswith("-0-.parquet")
    files = sorted((tmp_path / "parquet" / "inferences" / "date=2026-05-01").iterdir())
    dropped = pq.read_table(first_index).sort_by("span_id").to_pylist()
    assert [(row["span_id"], row["file"]) for row in dropped] == [
        (f"{i:016x}", files[1].resolve().as_posix()) for i in range(4)]
    assert [i.day for i in duplicates.valid_indexes(tmp_path, "inferences")] == [FIRST, SECOND]
    indexed = query(tmp_path, ALL_ROWS)
    assert indexed.equals(unindexed)
    assert indexed.num_rows == 11 and count(tmp_path, "inferences_all") == 15
    kept = query(tmp_path, "SELECT DISTINCT ingest_time FROM inferences WHERE span_id < '0000000000000004'")
    assert kept["ingest_time"].to_pylist() == [DAY]  # the first receipt still wins
    assert count(tmp_path, "inferences", "date = DATE '2026-05-02'") == 5
    assert refresh(tmp_path) == 0  # nothing changed: nothing to do


def test_the_catalog_trusts_a_valid_index(tmp_path):
    """Proof that indexed days skip the window: an index that wrongly says 'no duplicates' is believed."""
    land_with_duplicates(tmp_path)
    refresh(tmp_path)
    [first_index] = index_folder(tmp_path, FIRST).iterdir()
    first_index.rename(first_index.with_name(first_index.name.replace("-4-1.", "-0-.")))
    assert count(tmp_path, "inferences", "date = DATE '2026-05-01'") == 10


def test_a_new_segment_makes_the_day_stale_until_it_is_indexed_again(tmp_path):
    land_with_duplicates(tmp_path)
    refresh(tmp_path)
    land(tmp_path, spans(2, first=10, day=1, ingested=DAY + timedelta(hours=1)))  # day two: 10, 11 again
    assert [i.day for i in duplicates.valid_indexes(tmp_path, "inferences")] == [FIRST]
    assert count(tmp_path, "inferences", "date = DATE '2026-05-02'") == 5  # the window, meanwhile
    assert refresh(tmp_path) == 1
    [second_index] = index_folder(tmp_path, SECOND).iterdir()  # the stale one is gone
    assert second_index.name.endswith("-2-1.parquet")  # in the new segment, after the day's first
    assert count(tmp_path, "inferences", "date = DATE '2026-05-02'") == 5
    assert query(tmp_path, "SELECT max(ingest_time) AS t FROM inferences WHERE date = DATE '2026-05-02'")["t"][0] \
        .as_py() == DAY


def test_days_still_being_written_are_left_to_the_window(tmp_path):
    land_with_duplicates(tmp_path)
    assert duplicates.refresh(tmp_path, "inferences", FIRST, SECOND) == 0  # files younger than SETTLE_S
    old = DAY.timestamp()
    for path in (tmp_path / "parquet" / "inferences" / "date=2026-05-01").iterdir():
        os.utime(path, (old, old))
    assert duplicates.refresh(tmp_path, "inferences", FIRST, SECOND) == 1
    assert count(tmp_path, "inferences") == 11


def test_indexes_of_days_that_no_longer_exist_are_removed(tmp_path):
    land_with_duplicates(tmp_path)
    refresh(tmp_path)
    shutil.rmtree(tmp_path / "parquet" / "inferences" / "date=2026-05-01")  # as retention does
    assert refresh(tmp_path) == 0
    assert not index_folder(tmp_path, FIRST).exists() and index_folder(tmp_path, SECOND).exists()
    assert count(tmp_path, "inferences") == 5


def test_the_first_receipt_wins_even_when_it_landed_in_a_later_file(tmp_path):
    later = DAY + timedelta(hours=2)
    land(tmp_path, spans(3, ingested=later), spans(3, ingested=DAY))  # a delayed batch lands second
    unindexed = query(tmp_path, ALL_ROWS)
    refresh(tmp_path)
    indexed = query(tmp_path, ALL_ROWS)
    assert indexed.equals(unindexed)
    assert set(indexed["ingest_time"].to_pylist()) == {DAY}


def test_a_day_in_its_compaction_grace_period_is_indexed_and_read_once(tmp_path):
    """Segments and the compaction that replaced them both on disk: every key twice, counted once."""
    land(tmp_path, *[spans(5, first=i * 5) for i in range(4)])
    settings = StorageSettings(seal_interval_s=0.2, compaction=CompactionSettings(
        interval_s=0.05, min_files=2, grace_s=600.0, idle_s=0.0))
    with Storage(tmp_path, settings) as storage:
        for _ in range(200):
            if storage.stats()["compactions"] >= 1:
                break
            time.sleep(0.05)
        assert storage.stats()["compactions"] >= 1
        assert count(tmp_path, "inferences_all") == 40  # 4 segments + their compaction
        unindexed = query(tmp_path, ALL_ROWS)
        assert refresh(tmp_path) == 1
        [index] = duplicates.valid_indexes(tmp_path, "inferences")
        assert index.dropped == 20 and index.dirty  # one copy of each key is dropped
        assert query(tmp_path, ALL_ROWS).equals(unindexed)
        assert count(tmp_path, "inferences") == 20


def test_readers_stay_exact_while_compaction_replaces_indexed_files(tmp_path):
    land(tmp_path, *[spans(5, first=i * 5) for i in range(12)])
    refresh(tmp_path)
    settings = StorageSettings(seal_interval_s=0.2, compaction=CompactionSettings(
        interval_s=0.05, min_files=2, grace_s=0.5, idle_s=0.0))
    counts = []
    with Storage(tmp_path, settings) as storage:
        for _ in range(200):
            counts.append(count(tmp_path, "inferences"))
            refresh(tmp_path)
            if storage.stats()["segment_files"] == 1:
                break
            time.sleep(0.02)
    assert set(counts) == {60}
    refresh(tmp_path)
    assert count(tmp_path, "inferences") == 60 and duplicates.valid_indexes(tmp_path, "inferences")


def test_refresh_all_indexes_every_settled_day_of_every_dataset(tmp_path, monkeypatch):
    land_with_duplicates(tmp_path)
    monkeypatch.setattr(duplicates, "SETTLE_S", 0.0)
    assert duplicates.refresh_all(tmp_path, {"memory_limit": "256MB", "threads": 1}) == 2
    assert [i.day for i in duplicates.valid_indexes(tmp_path, "inferences")] == [FIRST, SECOND]
    assert duplicates.refresh_all(tmp_path) == 0


def test_a_file_vanishing_during_a_refresh_postpones_the_day_without_failing(tmp_path, monkeypatch):
    land_with_duplicates(tmp_path)
    real_write = duplicates._write_index

    def compaction_deletes_meanwhile(con, data_dir, files, folder, fingerprint):
        if "2026-05-01" in folder.name:
            Path(files[0]).unlink()  # gone between listing and reading, as after a grace period
        return real_write(con, data_dir, files, folder, fingerprint)

    monkeypatch.setattr(duplicates, "_write_index", compaction_deletes_meanwhile)
    assert refresh(tmp_path) == 1  # day two indexed, day one postponed
    assert [i.day for i in duplicates.valid_indexes(tmp_path, "inferences")] == [SECOND]


def test_foreign_files_in_the_cache_are_ignored(tmp_path):
    land_with_duplicates(tmp_path)
    folder = index_folder(tmp_path, FIRST)
    folder.mkdir(parents=True)
    for name in ("notes.txt", "abc.parquet", "abc-x-1.parquet", "abc-1-one.parquet", "abc-1-2-3.parquet"):
        (folder / name).write_text("not an index")
    assert duplicates.valid_indexes(tmp_path, "inferences") == []
    assert count(tmp_path, "inferences") == 11  # the window, as without a cache
    assert refresh(tmp_path) == 2
    assert count(tmp_path, "inferences") == 11


def test_a_file_deleted_between_listing_and_stat_is_left_out(tmp_path, monkeypatch):
    """A compaction's grace period may end while a reader fingerprints the day."""
    land(tmp_path, spans(3), spans(2, first=10))
    folder = next((tmp_path / "parquet" / "inferences").glob("date=*/v1-0*.parquet")).parent
    real_scandir = os.scandir

    def listing_then_deletion(path):
        entries = list(real_scandir(path))
        segment = next(e for e in entries if e.name.startswith("v1-0"))
        Path(segment.path).unlink()
        return iter(entries)

    monkeypatch.setattr(duplicates.os, "scandir", listing_then_deletion)
    files, _ = duplicates.data_files(folder)
    monkeypatch.setattr(duplicates.os, "scandir", real_scandir)
    assert [Path(f).name for f in files] == [p.name for p in sorted(folder.glob("*.parquet"))]
