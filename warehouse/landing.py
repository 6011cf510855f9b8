"""Landing: sealed WAL files -> Parquet segments + manifest entries, one file at a time, in order.

For each sealed file: decode its frames, group rows by dataset and by UTC date of
``start_time`` (else ``ingest_time``), drop duplicate spans, apply the transform
hook (pricing), write each group to ``tmp/`` then fsync + ``os.replace`` into
``parquet/<dataset>/date=YYYY-MM-DD/v<schema version>-<wal id>-<part>.parquet``,
append all manifest entries in one fsynced write, and only then delete the WAL
file. Segment names are derived from the WAL id, so a crash anywhere in between
is repaired by landing the file again: a rewritten segment replaces its own
half-finished self, and parts already in the manifest are skipped. Frames that
cannot be decoded go to ``quarantine/`` with a reason file and a manifest entry.

A file is landed in two passes over a memory map of it, so the lander holds a
slice of the file (one row group's frames), not the file: the first pass checks
every frame and reads only the span keys and dates (which rows are first copies,
which partitions exist, hence every part's number); the second decodes the
frames a row group at a time, dedups and prices them and appends them to one Parquet writer
per partition. Pages of the map are handed back as each slice is done.
"""
from __future__ import annotations

import hashlib
import logging
import mmap
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.heap import release_free_heap
from warehouse.manifest import Manifest, read_entries_reversed
from warehouse.record import DATASETS, SCHEMA_VERSION
from warehouse.wal import BadTail, WriteAheadLog, decode_payload, fsync_dir, read_frames, wal_id_number

log = logging.getLogger(__name__)

Transform = Callable[[str, pa.Table], pa.Table]
NULL_PARTITION = "__HIVE_DEFAULT_PARTITION__"  # Hive's (and DuckDB's) spelling of a NULL key
# A span is (trace_id, span_id); start_time is part of its content and is in the key so
# that the catalog views can push time filters below their deduplication (catalog.py).
DEDUP_KEY = ["trace_id", "span_id", "start_time"]
# Unique per row: dictionaries only cost here, plain + zstd is smaller and faster.
HIGH_CARDINALITY = {"trace_id", "span_id", "parent_span_id", "conversation_id", "attributes",
                    "request_key", "retry_of_span_id", "reviewed_span_id", "subject_id"}
# The first pass over a WAL file gives its map's pages back every so often.
SLICE_RELEASE_BYTES = 4 * 1024 * 1024


@dataclass
class ParquetSettings:
    compression: str = "zstd"
    compression_level: int = 1  # smaller and faster than 3 on GenAI rows (warehouse/README.md)
    row_group_rows: int = 32 * 1024
    # Rows the lander decodes, prices and writes at a time, so a landed segment's row groups
    # have about this many rows (compaction merges them into row_group_rows). What the lander
    # holds of a WAL file: 16K rows measured 15-20 MB less at peak than 32K. Segments are
    # bigger on bench/ingest.py's payloads (36.6 against 28.3 bytes/row), whose values repeat
    # every 64 requests; a longer zstd window finds more of those repeats than real traffic has.
    landing_rows: int = 16 * 1024


# --------------------------------------------------------------------------- tables

def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Match ``schema`` exactly: reorder, cast, NULL-fill columns older writers did not have."""
    if table.schema.equals(schema, check_metadata=False):  # the usual case: only metadata differs
        # from_batches: 20 µs for a 53-column frame, against 130 for from_arrays
        return pa.Table.from_batches(table.to_batches(), schema=schema)
    present = dict(zip(table.column_names, table.columns))
    unknown = set(present) - set(schema.names)
    if unknown:
        raise ValueError(f"columns not in the schema: {sorted(unknown)}")
    columns = []
    for target in schema:
        column = present.get(target.name)
        if column is None:
            columns.append(pa.nulls(table.num_rows, target.type))
        else:
            columns.append(column if column.type == target.type else column.cast(target.type))
    return pa.Table.from_arrays(columns, schema=schema)


def first_rows(table: pa.Table) -> pa.Array | None:
    """Row numbers of the first row of each span (DEDUP_KEY), ascending; None if all unique."""
    if table.num_rows < 2:
        return None
    keyed = table.select(DEDUP_KEY).append_column("__row", pa.arange(0, table.num_rows))
    first = keyed.group_by(DEDUP_KEY, use_threads=False).aggregate([("__row", "min")])
    if first.num_rows == table.num_rows:
        return None
    return first["__row_min"].combine_chunks().sort()


def dedup(table: pa.Table) -> pa.Table:
    """Keep the first row of each span, in table order."""
    keep = first_rows(table)
    return table if keep is None else table.take(keep)


def partition_dates(table: pa.Table) -> pa.Array:
    """UTC date of each row's start_time, falling back to ingest_time (NULL if neither)."""
    when = table["start_time"]
    if "ingest_time" in table.column_names:
        when = pc.coalesce(when, table["ingest_time"])
    if when.type.tz is not None:  # UTC: the same dates without a time zone lookup per value (25% faster)
        when = pc.cast(when, pa.timestamp(when.type.unit))
    return pc.cast(when, pa.date32()).combine_chunks()


@dataclass(frozen=True)
class Rows:
    """The rows of ``table`` taken in ``order`` (all of them as they are when None).

    A segment is written from it row group by row group, so putting rows of several days
    in order costs one row group's copy at a time.
    """

    table: pa.Table
    order: pa.Array | None = None

    @property
    def num_rows(self) -> int:
        return self.table.num_rows if self.order is None else len(self.order)

    def chunks(self, rows: int):
        """Consecutive tables of at most ``rows`` rows, in order."""
        for start in range(0, self.num_rows, rows):
            yield (self.table.slice(start, rows) if self.order is None
                   else self.table.take(self.order.slice(start, rows)))

    def column(self, name: str) -> pa.ChunkedArray:
        return self.table[name] if self.order is None else pc.take(self.table[name], self.order)

    def to_table(self) -> pa.Table:
        return self.table if self.order is None else self.table.take(self.order)


def split_by_date(table: pa.Table, dates: pa.Array) -> list[tuple[str, Rows]]:
    """[(partition value, rows)], each partition's rows in arrival order.

    One stable sort by date, and no order at all when the rows already are in it (a slice of
    one day, the usual case). NULL dates go to Hive's NULL partition, last.

    Rows are not grouped by service any more: OTLP requests come one resource (service) each,
    so a frame is already a block of one service's spans, and grouping the blocks of a 16K-row
    slice cost 0.8 µs/span of the lander's CPU (4.94 against 4.16 µs/span for a 64 MB file) for
    3% smaller files (36.6 against 37.7 bytes/row), with no row group left to one service.
    """
    order = pc.sort_indices(pa.table({"__date": dates}), sort_keys=[("__date", "ascending", "at_end")])
    in_order = pc.all(pc.equal(order, pa.arange(0, len(order)).cast(order.type))).as_py()
    if not in_order:
        dates = dates.take(order)
    groups, start = [], 0
    runs = pc.run_end_encode(dates)
    for day, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist()):
        partition = NULL_PARTITION if day is None else day.isoformat()
        rows = (Rows(table.slice(start, end - start)) if in_order
                else Rows(table, order.slice(start, end - start)))
        groups.append((partition, rows))
        start = end
    return groups


# --------------------------------------------------------------------------- files

def parquet_options(schema: pa.Schema, settings: ParquetSettings) -> dict:
    """zstd everywhere; dictionaries for repetitive columns, delta for timestamps,
    byte-stream-split for doubles, delta-length for unique strings (see README)."""
    encoding = {}
    for column in schema:
        if pa.types.is_timestamp(column.type):
            encoding[column.name] = "DELTA_BINARY_PACKED"
        elif pa.types.is_floating(column.type):
            encoding[column.name] = "BYTE_STREAM_SPLIT"
        elif column.name in HIGH_CARDINALITY and pa.types.is_string(column.type):
            encoding[column.name] = "DELTA_LENGTH_BYTE_ARRAY"
    return {
        "compression": settings.compression,
        "compression_level": settings.compression_level,
        "use_dictionary": [name for name in schema.names if name not in encoding],
        "column_encoding": encoding,
        "write_statistics": True,
    }


def tmp_dir(data_dir: Path) -> Path:
    """The data directory's scratch folder for atomic writes (same file system as the destinations)."""
    path = Path(data_dir) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(data: pa.Buffer | bytes, dest: Path, tmp_dir: Path, fsync: bool = True) -> None:
    """tmp file + fsync + rename + fsync(dir): a reader sees the whole file or none of it."""
    tmp = tmp_dir / f"{dest.name}.{os.getpid()}.tmp"
    with open(tmp, "wb") as handle:
        handle.write(data)
        if fsync:
            os.fsync(handle.fileno())
    publish(tmp, dest, fsync)


def publish(tmp: Path, dest: Path, fsync: bool = True) -> None:
    """Rename a complete (and, with ``fsync``, synced) scratch file into place, durably."""
    if not dest.parent.exists():
        dest.parent.mkdir(parents=True, exist_ok=True)
        if fsync:
            fsync_dir(dest.parent.parent)
            fsync_dir(dest.parent.parent.parent)
    os.replace(tmp, dest)
    if fsync:
        fsync_dir(dest.parent)


class SegmentWriter:
    """One Parquet segment, appended to piece by piece in ``tmp/`` and published whole."""

    def __init__(self, dest: Path, tmp_dir: Path, schema: pa.Schema, settings: ParquetSettings):
        self.dest, self.settings = dest, settings
        self.tmp = tmp_dir / f"{dest.name}.{os.getpid()}.tmp"
        self.writer = pq.ParquetWriter(self.tmp, schema, **parquet_options(schema, settings))
        self.rows, self.low, self.high = 0, None, None

    def write(self, rows: Rows) -> None:
        for chunk in rows.chunks(self.settings.row_group_rows):
            self.writer.write_table(chunk, row_group_size=self.settings.row_group_rows)
        self.low, self.high = widen_time_range(self.low, self.high, rows.column("start_time"))
        self.rows += rows.num_rows

    def finish(self, fsync: bool = True) -> dict:
        """Close, sync and rename into place; returns the manifest facts about the file."""
        self.writer.close()
        with open(self.tmp, "rb") as handle:
            if fsync:
                os.fsync(handle.fileno())
            digest = hashlib.file_digest(handle, "sha256")
            size = handle.tell()
        publish(self.tmp, self.dest, fsync)
        return {"rows": self.rows, "bytes": size, "sha256": digest.hexdigest(),
                "min_time": self.low.isoformat() if self.low else None,
                "max_time": self.high.isoformat() if self.high else None}

    def abort(self) -> None:
        self.writer.close()
        self.tmp.unlink(missing_ok=True)


def widen_time_range(low, high, start_times: pa.ChunkedArray | pa.Array):
    """(low, high) widened to cover ``start_times`` (None: nothing seen yet)."""
    bounds = pc.min_max(start_times)
    new_low, new_high = bounds["min"].as_py(), bounds["max"].as_py()
    low = new_low if low is None or (new_low is not None and new_low < low) else low
    high = new_high if high is None or (new_high is not None and new_high > high) else high
    return low, high


def segment_relpath(dataset: str, partition: str, name: str) -> str:
    """Data files start with the schema version they were written with (see catalog.py)."""
    return f"parquet/{dataset}/date={partition}/v{SCHEMA_VERSION}-{name}.parquet"


# --------------------------------------------------------------------------- recovery

@dataclass
class LandedWal:
    """The newest WAL file the manifest has entries for, and which of its parts."""

    wal_id: str | None = None
    parts: set[int] = field(default_factory=set)
    total: int = 0

    @property
    def complete(self) -> bool:
        return self.wal_id is not None and len(self.parts) >= self.total


def last_landed_wal(manifest_file: Path) -> LandedWal:
    """Scan the manifest tail back to the newest landed WAL file (compactions skipped)."""
    found = LandedWal()
    for entry in read_entries_reversed(manifest_file):
        source = entry.get("source")
        wal_id = source.get("wal") if isinstance(source, dict) else None
        if wal_id is None:
            if found.wal_id is None:
                continue
            break
        if found.wal_id is None:
            found.wal_id, found.total = wal_id, entry["source"]["parts"]
        elif wal_id != found.wal_id:
            break
        found.parts.add(entry["source"]["part"])
    return found


# --------------------------------------------------------------------------- the lander

@dataclass(frozen=True)
class _FrameRef:
    """Where a decodable frame's payload is in the WAL file, and how many rows it holds."""

    start: int
    end: int
    rows: int


@dataclass
class _DatasetPlan:
    """A dataset's frames in one WAL file, which of their rows are first copies of a span
    (row numbers over the frames in order, ascending; None: all), and the date partitions
    those rows fall in (sorted, Hive's NULL partition last)."""

    frames: list[_FrameRef]
    keep: pa.Array | None
    partitions: list[str]


@dataclass
class _Output:
    """One thing landing a WAL file produces: a segment or a quarantined frame."""

    kind: str
    dataset: str
    relpath: str
    partition: str = ""
    raw: bytes = b""
    reason: str = ""
    offset: int = 0


class _MappedFile:
    """A read-only memory map of a WAL file whose pages are given back as landing moves on.

    The pages are the file system's cache; a page given back and touched again is read
    from it again, so releasing early is always safe and only costs time."""

    def __init__(self, path: Path):
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            self.data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""

    def release(self, start: int, end: int) -> None:
        """Drop the pages wholly inside [start, end) from the process's memory."""
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE
        last = end // mmap.PAGESIZE * mmap.PAGESIZE
        if self.data and last > first:
            self.data.madvise(mmap.MADV_DONTNEED, first, last - first)


class Lander:
    """Background thread that lands sealed WAL files strictly in order (see module docstring)."""

    def __init__(self, data_dir: Path, wal: WriteAheadLog, manifest: Manifest,
                 parquet: ParquetSettings | None = None, transform: Transform | None = None,
                 fsync: bool = True, poll_interval_s: float = 0.5, peak_lock: threading.Lock | None = None):
        self.data_dir = Path(data_dir)
        self.tmp_dir = self.data_dir / "tmp"
        self.quarantine_dir = self.data_dir / "quarantine"
        self.wal, self.manifest = wal, manifest
        self.parquet = parquet or ParquetSettings()
        self.transform = transform
        self.fsync = fsync
        self.poll_interval_s = poll_interval_s
        self.peak_lock = peak_lock or threading.Lock()  # see Compactor.peak_lock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._landed = threading.Condition()
        self._landed_through = 0  # wal id number of the newest landed file
        self._skip_parts: dict[str, set[int]] = {}
        self._thread: threading.Thread | None = None
        self.counters = {"files_landed": 0, "segments_written": 0, "duplicates_dropped": 0,
                         "frames_quarantined": 0, "landing_errors": 0, "transform_errors": 0}
        self.rows_landed = {name: 0 for name in DATASETS}

    def recover(self, landed: LandedWal) -> None:
        """Discard sealed files the manifest already has; remember parts of a half-landed one."""
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        self.quarantine_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp_dir.iterdir():
            if leftover.is_file():  # half-written files of a crash; directories belong to no writer here
                leftover.unlink()
        if landed.wal_id is None:
            return
        newest = wal_id_number(landed.wal_id)
        for path in self.wal.sealed_files():
            number = wal_id_number(path.stem)
            if number < newest or (path.stem == landed.wal_id and landed.complete):
                log.info("%s was landed before a restart; discarding it", path.name)
                self.wal.discard(path)
            elif path.stem == landed.wal_id:
                self._skip_parts[path.stem] = set(landed.parts)
        self._landed_through = newest

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lander", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Land every sealed file (close the WAL first), then stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join()
            self._thread = None

    def wake(self) -> None:
        self._wake.set()

    def wait_landed(self, wal_number: int, timeout: float | None = None) -> bool:
        """Block until every WAL file up to ``wal_number`` is landed."""
        with self._landed:
            return self._landed.wait_for(lambda: self._landed_through >= wal_number, timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll_interval_s)
            self._wake.clear()
            if not self._land_pending():
                self._stop.wait(1.0)  # back off after an error, then retry the same file
        # Stopping: the WAL is closed, so the sealed list is final. A few tries, then give up:
        # whatever is left stays in wal/sealed/ and lands on the next start.
        for _ in range(3):
            if self._land_pending():
                return
            time.sleep(0.5)
        log.error("stopping with %d WAL files not landed", len(self.wal.sealed_files()))

    def _land_pending(self) -> bool:
        for path in self.wal.sealed_files():
            try:
                self.land_file(path)
            except Exception:
                self.counters["landing_errors"] += 1
                log.exception("landing %s failed; will retry", path.name)
                return False
        return True

    # ------------------------------------------------------------------ one file

    def land_file(self, path: Path) -> None:
        """Land one sealed WAL file, append its manifest entries, then discard it."""
        with self.peak_lock:
            self._land(path)
        release_free_heap()
        with self._landed:
            self._landed_through = max(self._landed_through, wal_id_number(path.stem))
            self._landed.notify_all()

    def _land(self, path: Path) -> None:
        wal_id = path.stem
        mapped = _MappedFile(path)
        quarantined, plans = self._plan(wal_id, mapped)
        outputs = quarantined + [
            _Output("segment", dataset, "", partition=partition)
            for dataset in sorted(plans) for partition in plans[dataset].partitions]
        for number, output in enumerate(outputs[len(quarantined):]):
            output.relpath = segment_relpath(output.dataset, output.partition, f"{wal_id}-{number:04d}")
        skip = self._skip_parts.get(wal_id, set())
        to_write = {part: output for part, output in enumerate(outputs) if part not in skip}
        facts = {part: self._write_quarantine(output)
                 for part, output in to_write.items() if output.kind == "quarantine"}
        for dataset in sorted(plans):
            segments = {part: output for part, output in to_write.items()
                        if output.kind == "segment" and output.dataset == dataset}
            written = self._write_dataset(mapped, dataset, plans[dataset],
                                          {output.partition: self.data_dir / output.relpath
                                           for output in segments.values()})
            facts.update({part: written[output.partition] for part, output in segments.items()})
        entries = [{"kind": output.kind, "dataset": output.dataset, "file": output.relpath,
                    "schema_version": SCHEMA_VERSION, **facts[part],
                    "source": {"wal": wal_id, "part": part, "parts": len(outputs)}}
                   for part, output in enumerate(outputs) if part in facts]
        if entries:
            self.manifest.append(entries)
        self._skip_parts.pop(wal_id, None)
        self.wal.discard(path)
        self._count(outputs, facts)

    # ------------------------------------------------------------------ pass 1: keys and dates

    def _plan(self, wal_id: str, mapped: _MappedFile) -> tuple[list[_Output], dict[str, _DatasetPlan]]:
        """Check every frame and read each dataset's span keys and dates: what the file turns
        into, in a deterministic order (part numbers), before anything is written."""
        frames: dict[str, list[_FrameRef]] = {}
        keys: dict[str, list[pa.Table]] = {}  # copied out of the map
        pending: dict[str, list[pa.Table]] = {}  # still in the map's pages
        dates: dict[str, list[pa.Array]] = {}
        quarantined, released = [], 0
        data = mapped.data
        for item in read_frames(data):
            if isinstance(item, BadTail):
                quarantined.append(self._quarantine_output(wal_id, item.offset, "", bytes(data[item.offset:]),
                                                           item.reason))
                break
            try:
                table = self._decode(item.dataset, item.payload)
            except Exception as exc:
                quarantined.append(self._quarantine_output(wal_id, item.offset, item.dataset,
                                                           bytes(item.payload), f"undecodable frame: {exc}"))
                continue
            frames.setdefault(item.dataset, []).append(
                _FrameRef(item.payload_offset, item.payload_offset + len(item.payload), table.num_rows))
            pending.setdefault(item.dataset, []).append(table.select(DEDUP_KEY))
            dates.setdefault(item.dataset, []).append(partition_dates(table))
            del table
            if item.payload_offset - released >= SLICE_RELEASE_BYTES:
                _copy_out(pending, keys)
                mapped.release(released, item.payload_offset)
                released = item.payload_offset
        _copy_out(pending, keys)
        mapped.release(0, len(data))
        plans = {}
        for dataset in frames:
            key_table = pa.concat_tables(keys.pop(dataset))
            first = first_rows(key_table)
            day = pa.chunked_array(dates.pop(dataset), pa.date32())
            if first is not None:
                day = day.take(first)
                self.counters["duplicates_dropped"] += key_table.num_rows - len(first)
            plans[dataset] = _DatasetPlan(frames[dataset], first, _partition_names(day))
        return quarantined, plans

    # ------------------------------------------------------------------ pass 2: segments

    def _write_dataset(self, mapped: _MappedFile, dataset: str, plan: _DatasetPlan,
                       wanted: dict[str, Path]) -> dict[str, dict]:
        """Decode, dedup and price the dataset's frames a row group at a time, appending each
        day's rows to its partition's segment; returns the facts of every segment written."""
        writers: dict[str, SegmentWriter] = {}
        try:
            for first_row, refs in _slices(plan.frames, self.parquet.landing_rows):
                self._write_slice(mapped, dataset, refs, _keep_rows(plan.keep, first_row, refs), wanted, writers)
                mapped.release(refs[0].start, refs[-1].end)
            return {partition: writer.finish(self.fsync) for partition, writer in writers.items()}
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise

    def _write_slice(self, mapped: _MappedFile, dataset: str, refs: list[_FrameRef], keep: pa.Array | None,
                     wanted: dict[str, Path], writers: dict[str, SegmentWriter]) -> None:
        table = self._decode_slice(dataset, [memoryview(mapped.data)[ref.start:ref.end] for ref in refs])
        if keep is not None:
            table = table.take(keep)
        dates = partition_dates(table)
        for partition, rows in split_by_date(self._transform(dataset, table), dates):
            if partition not in wanted:
                continue
            if partition not in writers:
                writers[partition] = SegmentWriter(wanted[partition], self.tmp_dir, DATASETS[dataset], self.parquet)
            writers[partition].write(rows)

    @staticmethod
    def _decode(dataset: str, payload) -> pa.Table:
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}")
        return conform(decode_payload(payload), DATASETS[dataset])

    @classmethod
    def _decode_slice(cls, dataset: str, payloads: list) -> pa.Table:
        """The frames of a slice as one table: conformed once when they share a schema (the
        usual case), else one by one (frames written before a schema change)."""
        tables = [decode_payload(payload) for payload in payloads]
        try:
            together = pa.concat_tables(tables)
        except pa.ArrowInvalid:
            return pa.concat_tables([conform(table, DATASETS[dataset]) for table in tables])
        return conform(together, DATASETS[dataset])

    def _transform(self, dataset: str, table: pa.Table) -> pa.Table:
        """Apply the hook; on failure land the rows untouched (costs stay NULL = unpriced)
        rather than stall ingestion behind a pricing bug."""
        if self.transform is None:
            return table
        try:
            result = conform(self.transform(dataset, table), DATASETS[dataset])
            if result.num_rows != table.num_rows:
                raise ValueError(f"transform returned {result.num_rows} rows for {table.num_rows}")
            return result
        except Exception:
            self.counters["transform_errors"] += 1
            log.exception("transform failed for %s; landing rows untransformed", dataset)
            return table

    def _quarantine_output(self, wal_id: str, offset: int, dataset: str, raw: bytes, reason: str) -> _Output:
        log.error("quarantining %d bytes of %s at offset %d: %s", len(raw), wal_id, offset, reason)
        return _Output("quarantine", dataset, f"quarantine/{wal_id}-{offset}.bin", raw=raw,
                       reason=reason, offset=offset)

    def _write_quarantine(self, output: _Output) -> dict:
        dest = self.data_dir / output.relpath
        write_atomically(f"{output.reason}\n".encode(), dest.with_suffix(".reason.txt"), self.tmp_dir, self.fsync)
        write_atomically(output.raw, dest, self.tmp_dir, self.fsync)
        return {"bytes": len(output.raw), "sha256": hashlib.sha256(output.raw).hexdigest(),
                "reason": output.reason, "offset": output.offset}

    def _count(self, outputs: list[_Output], facts: dict[int, dict]) -> None:
        self.counters["files_landed"] += 1
        for part, output in enumerate(outputs):
            if part not in facts:
                continue
            if output.kind == "segment":
                self.counters["segments_written"] += 1
                self.rows_landed[output.dataset] = self.rows_landed.get(output.dataset, 0) + facts[part]["rows"]
            else:
                self.counters["frames_quarantined"] += 1


# --------------------------------------------------------------------------- slices

def _slices(frames: list[_FrameRef], rows: int):
    """(number of the first row, frames) runs of at least ``rows`` rows (the last may be fewer)."""
    run, run_rows, first_row = [], 0, 0
    for ref in frames:
        run.append(ref)
        run_rows += ref.rows
        if run_rows >= rows:
            yield first_row, run
            first_row, run, run_rows = first_row + run_rows, [], 0
    if run:
        yield first_row, run


def _keep_rows(keep: pa.Array | None, first_row: int, refs: list[_FrameRef]) -> pa.Array | None:
    """Which rows of a slice to keep (numbers within the slice), given the file-wide ``keep``
    of its dataset and the slice's first row; None: all of them."""
    if keep is None:
        return None
    end = first_row + sum(ref.rows for ref in refs)
    inside = pc.and_(pc.greater_equal(keep, first_row), pc.less(keep, end))
    return pc.subtract(pc.filter(keep, inside), pa.scalar(first_row, keep.type))


def _partition_names(dates: pa.ChunkedArray) -> list[str]:
    """The distinct dates as partition values, in split_by_date's order (NULL last)."""
    days = sorted(day for day in pc.unique(dates).to_pylist() if day is not None)
    names = [day.isoformat() for day in days]
    return names + [NULL_PARTITION] if dates.null_count else names


def _copy_out(pending: dict[str, list[pa.Table]], kept: dict[str, list[pa.Table]]) -> None:
    """Move each dataset's pending tables into ``kept`` as one table in freshly allocated
    buffers, so what is kept holds no pages of the WAL map."""
    for dataset, tables in pending.items():
        together = pa.concat_tables([*tables, tables[0].schema.empty_table()])
        kept.setdefault(dataset, []).append(together.combine_chunks())
    pending.clear()
