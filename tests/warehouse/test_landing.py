"""Landing: sealed WAL files become partitioned Parquet segments, exactly once."""
from __future__ import annotations

import shutil
import struct
import time
import zlib
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from warehouse.landing import (Lander, ParquetSettings, Rows, SegmentWriter, last_landed_wal, partition_dates,
                               split_by_date)
from warehouse.manifest import Manifest, manifest_path, read_entries, verify_chain
from warehouse.record import HTTP_ATTEMPT_SCHEMA, RECORD_SCHEMA, to_batch
from warehouse.wal import FRAME_HEADER, FRAME_MAGIC, WriteAheadLog, encode_frame

DAY1 = datetime(2026, 5, 1, 23, 59, 59, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(seconds=2)


def inferences(n: int, first: int = 0, start: datetime | None = DAY1, **extra) -> pa.RecordBatch:
    return to_batch([{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "start_time": start,
                      "service_name": ["b-svc", "a-svc"][i % 2], "ingest_time": DAY2, **extra}
                     for i in range(first, first + n)])


def sealed_file(data_dir: Path, *frames: bytes) -> Path:
    """A sealed WAL file written byte by byte, as a previous process would have left it."""
    path = data_dir / "wal" / "sealed" / f"{time.time_ns():020d}-00c0ffee.wal"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(frames))
    return path


class Rig:
    """A WAL, a manifest and a lander on one data dir, opened the way Storage opens them."""

    def __init__(self, data_dir: Path, transform=None, parquet: ParquetSettings | None = None):
        self.data_dir = data_dir
        self.manifest = Manifest(manifest_path(data_dir))
        landed = last_landed_wal(self.manifest.path)
        self.wal = WriteAheadLog(data_dir / "wal", seal_interval_s=30, id_floor=landed.wal_id)
        self.wal.open()
        self.lander = Lander(data_dir, self.wal, self.manifest, parquet, transform=transform)
        self.lander.recover(landed)

    def land_all(self) -> None:
        for path in self.wal.sealed_files():
            self.lander.land_file(path)

    def close(self) -> None:
        self.wal.close()
        self.manifest.close()

    def segments(self, dataset: str = "inferences") -> list[Path]:
        return sorted((self.data_dir / "parquet" / dataset).glob("date=*/*.parquet"))

    def entries(self) -> list[dict]:
        return list(read_entries(self.manifest.path))


@pytest.fixture
def rig(tmp_path):
    opened = Rig(tmp_path)
    yield opened
    opened.close()


def test_lands_by_dataset_and_date_then_deletes_the_wal_file(rig):
    rig.wal.append("inferences", inferences(4)).result()
    rig.wal.append("inferences", inferences(3, first=10, start=DAY2)).result()
    attempt = to_batch([{"trace_id": "a" * 32, "span_id": "b" * 16, "start_time": DAY1}], HTTP_ATTEMPT_SCHEMA)
    rig.wal.append("http_attempts", attempt).result()
    rig.wal.flush().result()
    [wal_file] = rig.wal.sealed_files()

    rig.lander.land_file(wal_file)

    assert not wal_file.exists() and rig.wal.pending_bytes() == 0
    names = [p.relative_to(rig.data_dir).as_posix() for p in rig.segments() + rig.segments("http_attempts")]
    assert names == [f"parquet/inferences/date=2026-05-01/v1-{wal_file.stem}-0001.parquet",
                     f"parquet/inferences/date=2026-05-02/v1-{wal_file.stem}-0002.parquet",
                     f"parquet/http_attempts/date=2026-05-01/v1-{wal_file.stem}-0000.parquet"]
    entries = rig.entries()
    assert [(e["file"], e["rows"], e["source"]["part"], e["source"]["parts"]) for e in entries] == [
        (names[2], 1, 0, 3), (names[0], 4, 1, 3), (names[1], 3, 2, 3)]
    day1 = pq.read_table(rig.segments()[0])
    assert day1.schema.names == RECORD_SCHEMA.names
    assert day1.schema.field("tenant").metadata == RECORD_SCHEMA.field("tenant").metadata  # docs travel along
    assert day1.schema.metadata == RECORD_SCHEMA.metadata
    assert day1["service_name"].to_pylist() == ["b-svc", "a-svc", "b-svc", "a-svc"]  # arrival order
    assert rig.lander.rows_landed == {"inferences": 7, "http_attempts": 1}
    assert verify_chain(rig.data_dir) == []


def test_duplicates_within_a_file_are_dropped(rig):
    for _ in range(3):  # an exporter retrying the same spans
        rig.wal.append("inferences", inferences(5)).result()
    rig.wal.flush().result()
    rig.land_all()
    [segment] = rig.segments()
    assert pq.read_table(segment).num_rows == 5
    assert rig.lander.counters["duplicates_dropped"] == 10


def test_missing_start_time_uses_ingest_time_then_the_null_partition(rig):
    rig.wal.append("inferences", inferences(2, start=None)).result()
    rig.wal.append("inferences", inferences(1, first=5, start=None, ingest_time=None)).result()
    rig.wal.flush().result()
    rig.land_all()
    assert [p.parent.name for p in rig.segments()] == ["date=2026-05-02", "date=__HIVE_DEFAULT_PARTITION__"]


def test_transform_hook_changes_rows_before_they_land(tmp_path):
    def price(dataset: str, table: pa.Table) -> pa.Table:
        cost = pa.array([0.25] * table.num_rows, pa.float64())
        return table.set_column(table.schema.get_field_index("cost_usd"), "cost_usd", cost)

    rig = Rig(tmp_path, transform=price)
    try:
        rig.wal.append("inferences", inferences(3)).result()
        rig.wal.flush().result()
        rig.land_all()
        assert pq.read_table(rig.segments()[0])["cost_usd"].to_pylist() == [0.25] * 3
    finally:
        rig.close()


def test_failing_transform_lands_the_rows_untouched(tmp_path):
    def broken(dataset: str, table: pa.Table) -> pa.Table:
        raise RuntimeError("price book unavailable")

    rig = Rig(tmp_path, transform=broken)
    try:
        rig.wal.append("inferences", inferences(3)).result()
        rig.wal.flush().result()
        rig.land_all()
        landed = pq.read_table(rig.segments()[0])
        assert landed.num_rows == 3 and landed["cost_usd"].null_count == 3
        assert rig.lander.counters["transform_errors"] == 1
    finally:
        rig.close()


def garbage_frame(dataset: str = "inferences") -> bytes:
    """A frame whose CRC is right but whose payload is not Arrow IPC."""
    name, payload = dataset.encode(), b"definitely not an arrow stream"
    crc = zlib.crc32(payload, zlib.crc32(name))
    return FRAME_HEADER.pack(FRAME_MAGIC, len(payload), crc, len(name)) + name + payload


def test_undecodable_frame_is_quarantined_and_the_rest_lands(tmp_path):
    good = encode_frame("inferences", inferences(2))
    unknown = encode_frame("no_such_dataset", inferences(1))
    path = sealed_file(tmp_path, good, garbage_frame(), unknown)
    rig = Rig(tmp_path)
    try:
        rig.land_all()
        assert not path.exists()
        assert pq.read_table(rig.segments()[0]).num_rows == 2
        quarantined = sorted((tmp_path / "quarantine").glob("*.bin"))
        assert [q.name for q in quarantined] == [f"{path.stem}-{len(good)}.bin",
                                                 f"{path.stem}-{len(good) + len(garbage_frame())}.bin"]
        reasons = [q.with_suffix(".reason.txt").read_text() for q in quarantined]
        assert reasons[0].startswith("undecodable frame") and "no_such_dataset" in reasons[1]
        assert [e["kind"] for e in rig.entries()] == ["quarantine", "quarantine", "segment"]
        assert verify_chain(tmp_path) == []
    finally:
        rig.close()


def test_corrupt_tail_of_a_sealed_file_is_quarantined(tmp_path):
    good = encode_frame("inferences", inferences(2))
    bad = bytearray(encode_frame("inferences", inferences(2, first=9)))
    bad[40] ^= 0xFF
    sealed_file(tmp_path, good, bytes(bad))
    rig = Rig(tmp_path)
    try:
        rig.land_all()
        [quarantined] = (tmp_path / "quarantine").glob("*.bin")
        assert quarantined.read_bytes() == bytes(bad)
        assert quarantined.with_suffix(".reason.txt").read_text() == "crc mismatch\n"
        assert rig.lander.counters["frames_quarantined"] == 1
    finally:
        rig.close()


def test_frames_from_an_older_schema_land_with_nulls(tmp_path):
    old = pa.RecordBatch.from_pydict({"trace_id": ["c" * 32], "span_id": ["d" * 16],
                                      "start_time": pa.array([DAY1], pa.timestamp("us", tz="UTC"))})
    sealed_file(tmp_path, encode_frame("inferences", old), encode_frame("inferences", inferences(1, input_tokens=9)))
    rig = Rig(tmp_path)
    try:
        rig.land_all()
        new_row, old_row = sorted(pq.read_table(rig.segments()[0]).to_pylist(), key=lambda row: row["trace_id"])
        assert new_row["input_tokens"] == 9  # the same slice, another schema
        assert old_row["trace_id"] == "c" * 32 and old_row["input_tokens"] is None
        assert len(old_row) == len(RECORD_SCHEMA)
    finally:
        rig.close()


def test_a_file_landed_before_a_crash_is_not_landed_twice(tmp_path):
    rig = Rig(tmp_path)
    rig.wal.append("inferences", inferences(3)).result()
    rig.wal.flush().result()
    [wal_file] = rig.wal.sealed_files()
    kept = tmp_path / "copy.wal"
    shutil.copy(wal_file, kept)
    rig.land_all()
    rig.close()
    shutil.copy(kept, wal_file)  # the crash came after the manifest append, before the delete

    again = Rig(tmp_path)
    try:
        assert again.wal.sealed_files() == [] and not wal_file.exists()
        assert len(again.entries()) == 1 and verify_chain(tmp_path) == []
    finally:
        again.close()


def test_a_half_committed_file_lands_only_its_missing_parts(tmp_path):
    rig = Rig(tmp_path)
    rig.wal.append("inferences", inferences(3)).result()
    rig.wal.append("inferences", inferences(2, first=7, start=DAY2)).result()
    rig.wal.flush().result()
    [wal_file] = rig.wal.sealed_files()
    kept = tmp_path / "copy.wal"
    shutil.copy(wal_file, kept)
    rig.land_all()
    rig.close()
    # The crash tore the two-entry manifest write after the first line.
    path = manifest_path(tmp_path)
    first_line = path.read_text().splitlines(keepends=True)[0]
    path.write_text(first_line + first_line[:30])
    shutil.copy(kept, wal_file)
    first_segment = tmp_path / rig.entries()[0]["file"]
    inode = first_segment.stat().st_ino

    again = Rig(tmp_path)
    try:
        again.land_all()
        entries = again.entries()
        assert [e["source"]["part"] for e in entries] == [0, 1]
        assert first_segment.stat().st_ino == inode  # part 0 was not rewritten
        assert sum(pq.read_table(p).num_rows for p in again.segments()) == 5
        assert verify_chain(tmp_path) == []
    finally:
        again.close()


def test_new_wal_ids_sort_after_landed_ones(tmp_path):
    rig = Rig(tmp_path)
    rig.wal.append("inferences", inferences(1)).result()
    rig.wal.flush().result()
    rig.land_all()
    rig.close()
    landed = last_landed_wal(manifest_path(tmp_path))
    assert landed.complete and landed.parts == {0}
    again = Rig(tmp_path)
    try:
        again.wal.append("inferences", inferences(1, first=1)).result()
        again.wal.flush().result()
        [newer] = again.wal.sealed_files()
        assert newer.stem > landed.wal_id
        again.land_all()
        assert pc.sum(pa.array([e["rows"] for e in again.entries()])).as_py() == 2
    finally:
        again.close()


def test_frame_header_layout_is_stable():
    """The on-disk format is documented in warehouse/README.md; changing it breaks old WAL files."""
    frame = encode_frame("inferences", inferences(1))
    magic, length, crc, name_len = FRAME_HEADER.unpack_from(frame)
    assert (magic, name_len, FRAME_HEADER.size) == (b"ILW1", len("inferences"), 14)
    assert length == len(frame) - 14 - name_len
    assert crc == zlib.crc32(frame[14 + name_len:], zlib.crc32(b"inferences"))
    assert struct.calcsize("<4sIIH") == 14


def test_split_sorts_days_and_keeps_arrival_order_within_each():
    when = [datetime(2026, 5, 2, 9, tzinfo=timezone.utc), datetime(2026, 5, 1, 9, tzinfo=timezone.utc)]
    rows = [("b-svc", 0, 1), ("a-svc", 0, 2), ("b-svc", 1, 3), (None, 0, 4), ("a-svc", 1, 5), ("b-svc", 0, 6)]
    table = pa.table({"service_name": [svc for svc, _, _ in rows],
                      "start_time": pa.array([when[day] for _, day, _ in rows], pa.timestamp("us", "UTC")),
                      "arrival": [n for _, _, n in rows]})
    parts = split_by_date(table, partition_dates(table))
    tables = [(day, rows.to_table()) for day, rows in parts]
    assert [(day, part["service_name"].to_pylist(), part["arrival"].to_pylist()) for day, part in tables] == [
        ("2026-05-01", ["b-svc", "a-svc"], [3, 5]),
        ("2026-05-02", ["b-svc", "a-svc", None, "b-svc"], [1, 2, 4, 6])]


def test_split_of_rows_already_in_order_copies_nothing():
    table = pa.table({"service_name": ["a", "a", "b"],
                      "start_time": pa.array([datetime(2026, 5, 1, tzinfo=timezone.utc)] * 3,
                                             pa.timestamp("us", "UTC"))})
    [(day, rows)] = split_by_date(table, partition_dates(table))
    assert day == "2026-05-01" and rows.order is None
    part = rows.to_table()
    assert part["service_name"].chunk(0).buffers()[2].address == table["service_name"].chunk(0).buffers()[2].address


def test_a_sorted_segment_is_written_row_group_by_row_group(tmp_path):
    start = datetime(2026, 5, 1, tzinfo=timezone.utc)
    table = pa.table({"n": list(range(7)),
                      "start_time": pa.array([start + timedelta(seconds=s) for s in (6, 0, 5, 1, 4, 2, 3)],
                                             pa.timestamp("us", "UTC"))})
    order = pa.array([1, 3, 5, 6, 4, 2, 0], pa.uint64())
    writer = SegmentWriter(tmp_path / "out" / "s.parquet", tmp_path, table.schema, ParquetSettings(row_group_rows=3))
    writer.write(Rows(table, order))
    facts = writer.finish(fsync=False)
    written = pq.ParquetFile(tmp_path / "out" / "s.parquet")
    assert written.metadata.num_row_groups == 3
    assert written.read()["n"].to_pylist() == [1, 3, 5, 6, 4, 2, 0]
    assert facts["rows"] == 7 and facts["min_time"] == start.isoformat()
    assert facts["max_time"] == (start + timedelta(seconds=6)).isoformat()


def many_frames(data_dir: Path) -> Path:
    """A sealed file of 9 inference frames of 3 rows over two days, with retried spans in
    other frames (a later copy marked feature='retry'), and http_attempts frames between them."""
    frames = []
    for n in range(9):
        day = DAY1 if n % 3 else DAY2
        frames.append(encode_frame("inferences", inferences(3, first=10 * n, start=day, feature="first")))
        if n in (2, 6):  # the first rows of frame 0 and of frame 4, again
            frames.append(encode_frame("inferences", inferences(2, first=0 if n == 2 else 40,
                                                                start=DAY2 if n == 2 else DAY1, feature="retry")))
        if n % 4 == 1:
            attempt = to_batch([{"trace_id": f"{n:032x}", "span_id": "b" * 16, "start_time": DAY1}],
                               HTTP_ATTEMPT_SCHEMA)
            frames.append(encode_frame("http_attempts", attempt))
    return sealed_file(data_dir, *frames)


def landed(data_dir: Path, landing_rows: int) -> tuple[list, list, Rig]:
    many_frames(data_dir)
    rig = Rig(data_dir, parquet=ParquetSettings(landing_rows=landing_rows))
    try:
        rig.land_all()
        entries = [(e["dataset"], e["file"].split("/")[2], e["rows"], e["source"]["part"]) for e in rig.entries()]
        tables = [pq.read_table(path).sort_by([("span_id", "ascending"), ("trace_id", "ascending")])
                  for path in rig.segments() + rig.segments("http_attempts")]
        return entries, tables, rig
    finally:
        rig.close()


def test_a_file_landed_a_row_group_at_a_time_gives_the_same_segments_as_in_one_piece(tmp_path):
    whole_entries, whole, _ = landed(tmp_path / "whole", landing_rows=1000)
    sliced_entries, sliced, rig = landed(tmp_path / "sliced", landing_rows=4)
    assert sliced_entries == whole_entries == [
        ("http_attempts", "date=2026-05-01", 2, 0),
        ("inferences", "date=2026-05-01", 18, 1), ("inferences", "date=2026-05-02", 9, 2)]
    assert [t.to_pylist() for t in sliced] == [t.to_pylist() for t in whole]
    assert {row["feature"] for t in sliced[:2] for row in t.to_pylist()} == {"first"}  # first copies won
    assert rig.lander.counters["duplicates_dropped"] == 4
    assert pq.ParquetFile(rig.segments()[0]).metadata.num_row_groups > 1
    assert verify_chain(tmp_path / "sliced") == []


def test_a_slice_of_nothing_but_copies_lands_the_rest(tmp_path):
    first = encode_frame("inferences", inferences(3))
    sealed_file(tmp_path, first, first, first, encode_frame("inferences", inferences(1, first=7)))
    rig = Rig(tmp_path, parquet=ParquetSettings(landing_rows=3))
    try:
        rig.land_all()
        [segment] = rig.segments()
        assert sorted(pq.read_table(segment)["span_id"].to_pylist()) == [f"{i:016x}" for i in (0, 1, 2, 7)]
        assert rig.lander.counters["duplicates_dropped"] == 6
    finally:
        rig.close()


def test_an_empty_sealed_file_is_discarded(tmp_path):
    path = sealed_file(tmp_path)
    rig = Rig(tmp_path)
    try:
        rig.land_all()
        assert not path.exists() and rig.segments() == [] and rig.entries() == []
    finally:
        rig.close()
