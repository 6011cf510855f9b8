"""Compaction: merge a partition's small segments into bigger, deduplicated files.

Landing writes one segment per WAL file (about one a second under load): data is
visible quickly, but queries pay per file. The compactor thread merges small
files of one ``dataset/date=`` partition, size-tiered so each row is rewritten
only a few times: files are grouped by tier = floor(log_{min_files}(rows)), and a
tier with ``min_files`` files is merged (the result lands in a higher tier). A
partition that got no new file for ``idle_s`` (yesterday's) has all its small
files merged at once. Merging streams the inputs batch by batch into one
``ParquetWriter``; memory is one row group plus the dedup keys of the inputs.

Crash safety, step by step:
1. ``compaction/pending/<name>.json`` names the output and the files it replaces;
2. the output is written to ``tmp/``, fsynced and renamed into the partition;
3. the manifest entry (the commit point) lists the replaced files with their hashes;
4. after ``grace_s`` (readers may have globbed the old files) they are deleted,
   then the pending record. On start, a record whose output has no manifest entry
   never committed: its output is deleted; otherwise its deletions resume.
"""
from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from warehouse.heap import release_free_heap
from warehouse.landing import (DEDUP_KEY, ParquetSettings, conform, first_rows, parquet_options, publish,
                               widen_time_range, write_atomically)
from warehouse.manifest import SCHEMA_FILE_NAME, Manifest, file_sha256, read_entries_reversed
from warehouse.priority import lower_thread_priority
from warehouse.record import DATASETS, SCHEMA_VERSION
from warehouse.wal import fsync_dir

log = logging.getLogger(__name__)
REWRITE_LOCK = Path("compaction") / "rewrite.lock"


@dataclass
class CompactionSettings:
    enabled: bool = True
    interval_s: float = 10.0            # how often the compactor looks for work
    small_file_bytes: int = 32 * 2**20  # only files below this size are merged
    min_files: int = 8                  # files per tier that trigger a merge; also the tier ratio
    idle_s: float = 300.0               # a partition with no new file for this long is merged whole
    target_rows: int = 1_000_000        # stop adding inputs beyond this many rows
    grace_s: float = 60.0               # replaced files stay this long for running readers
    nice: int = 10                      # the compactor thread's CPU priority below ingest's (priority.py)


@dataclass
class _Job:
    dataset: str
    partition_dir: Path
    files: list[Path]


class _Stopped(Exception):
    """Storage is stopping: abandon the merge in progress (it has not committed)."""


class Compactor:
    """Finds and runs merges on its own thread; appends to the shared manifest."""

    def __init__(self, data_dir: Path, manifest: Manifest, settings: CompactionSettings,
                 parquet: ParquetSettings | None = None, fsync: bool = True,
                 peak_lock: threading.Lock | None = None):
        self.data_dir = Path(data_dir)
        # Held by the span-id count, compaction's memory peak; Storage shares it with the
        # lander, which holds it while landing a file, so the two peaks never add up.
        self.peak_lock = peak_lock or threading.Lock()
        self.manifest = manifest
        self.settings = settings
        self.parquet = parquet or ParquetSettings()
        self.fsync = fsync
        self.pending_dir = self.data_dir / "compaction" / "pending"
        self.tmp_dir = self.data_dir / "tmp"
        self._deletions: dict[Path, tuple[float, list[str]]] = {}  # record -> (due, files)
        self._rows_cache: dict[Path, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters = {"compactions": 0, "files_replaced": 0, "files_deleted": 0,
                         "rows_compacted": 0, "duplicates_dropped": 0, "compaction_errors": 0}

    # ------------------------------------------------------------------ lifecycle

    def recover(self) -> None:
        """Finish or undo compactions a crash interrupted (before the thread starts)."""
        self.pending_dir.mkdir(parents=True, exist_ok=True)
        due = time.monotonic() + self.settings.grace_s
        for record in sorted(self.pending_dir.glob("*.json")):
            pending = json.loads(record.read_text())
            if self._committed(pending):
                self._deletions[record] = (due, pending["replaces"])
            else:
                log.warning("compaction into %s never committed; removing it", pending["output"])
                (self.data_dir / pending["output"]).unlink(missing_ok=True)
                record.unlink()

    def _committed(self, pending: dict) -> bool:
        """Did the manifest get this compaction's entry? Replaced files are deleted only
        after the commit, so one missing means yes; else scan the manifest back to
        (a margin before) the record's creation for the entry."""
        if any(not (self.data_dir / name).exists() for name in pending["replaces"]):
            return True
        horizon = _iso(datetime.fromisoformat(pending["created_at"].replace("Z", "+00:00"))
                       - timedelta(minutes=10))  # margin for a clock step
        for entry in read_entries_reversed(self.manifest.path):
            if entry.get("kind") == "compaction" and entry.get("file") == pending["output"]:
                return True
            if entry.get("created_at", "") < horizon:
                return False
        return False

    def start(self) -> None:
        if self.settings.enabled:
            self._thread = threading.Thread(target=self._run, name="compactor", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Abandon a merge in progress; replaced files keep their grace period (next start)."""
        self._stop.set()
        if self._thread:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        lower_thread_priority(self.settings.nice)
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.run_once()
            except Exception:
                self.counters["compaction_errors"] += 1
                log.exception("compaction run failed")

    # ------------------------------------------------------------------ one round

    def run_once(self) -> int:
        """Delete expired replaced files, then run every merge that is due; returns merges done.

        Merges run under the rewrite lock; while an erasure or a retention holds it
        (possibly in another process) this round merges nothing."""
        self.delete_expired()
        with rewrite_lock(self.data_dir, wait=False) as held:
            return self._merge_due() if held else 0

    def _merge_due(self) -> int:
        merged = 0
        for job in self.find_jobs():
            try:
                self.compact(job)
                merged += 1
                release_free_heap()
            except _Stopped:
                return merged
            except Exception:
                self.counters["compaction_errors"] += 1
                log.exception("compacting %s failed", job.partition_dir)
        return merged

    def find_jobs(self) -> list[_Job]:
        """At most one merge per partition per round, oldest partitions first."""
        skip = self.awaiting_deletion()
        now = time.time()
        jobs = []
        for dataset in DATASETS:
            for partition_dir in sorted((self.data_dir / "parquet" / dataset).glob("date=*")):
                files = self._pick(self._small_files(partition_dir, skip), now)
                if len(files) >= 2:
                    jobs.append(_Job(dataset, partition_dir, files))
        return jobs

    def _pick(self, small: list[tuple[Path, int, float]], now: float) -> list[Path]:
        ratio = max(2, self.settings.min_files)
        tiers: dict[int, list[tuple[Path, int]]] = {}
        for path, rows, _ in small:
            tiers.setdefault(int(math.log(max(rows, 1), ratio)), []).append((path, rows))
        for tier in sorted(tiers):
            if len(tiers[tier]) >= ratio:
                return self._bounded(tiers[tier])
        newest = max((mtime for _, _, mtime in small), default=now)
        if len(small) >= 2 and now - newest >= self.settings.idle_s:
            return self._bounded([(path, rows) for path, rows, _ in small])
        return []

    def _bounded(self, files: list[tuple[Path, int]]) -> list[Path]:
        chosen, total = [], 0
        for path, rows in files:
            if chosen and total + rows > self.settings.target_rows:
                break
            chosen.append(path)
            total += rows
        return chosen

    def _small_files(self, partition_dir: Path, skip: set[str]) -> list[tuple[Path, int, float]]:
        found = []
        for path in sorted(partition_dir.glob("*.parquet")):
            if SCHEMA_FILE_NAME.fullmatch(path.name) or self._relpath(path) in skip:
                continue
            stat = path.stat()
            if stat.st_size < self.settings.small_file_bytes:
                if path not in self._rows_cache:  # segments are immutable: read each footer once
                    self._rows_cache[path] = pq.read_metadata(path).num_rows
                found.append((path, self._rows_cache[path], stat.st_mtime))
        return found

    def awaiting_deletion(self) -> set[str]:
        return {name for _, files in list(self._deletions.values()) for name in files}

    # ------------------------------------------------------------------ one merge

    def compact(self, job: _Job) -> dict:
        """Merge ``job.files`` into one file and commit it in the manifest."""
        name = f"v{SCHEMA_VERSION}-compact-{time.time_ns():020d}-{secrets.token_hex(4)}"
        output = job.partition_dir / f"{name}.parquet"
        replaces = [self._relpath(path) for path in job.files]
        record = self.pending_dir / f"{name}.json"
        created = _iso(datetime.now(timezone.utc))
        write_atomically(json.dumps({"output": self._relpath(output), "replaces": replaces,
                                     "created_at": created}).encode(), record, self.tmp_dir, self.fsync)
        committed = False
        try:
            entry = self._merge_and_commit(job, output, replaces)
            committed = True
        finally:
            if not committed:  # undo steps 1 and 2
                output.unlink(missing_ok=True)
                record.unlink(missing_ok=True)
        self._deletions[record] = (time.monotonic() + self.settings.grace_s, replaces)
        for path in job.files:
            self._rows_cache.pop(path, None)
        self.counters["compactions"] += 1
        self.counters["files_replaced"] += len(replaces)
        self.counters["rows_compacted"] += entry["rows"]
        return entry

    def _merge_and_commit(self, job: _Job, output: Path, replaces: list[str]) -> dict:
        sources = [{"file": name, "sha256": file_sha256(self.data_dir / name)} for name in replaces]
        tmp = self.tmp_dir / f"{output.name}.tmp"
        try:
            facts = self._merge(job, tmp)
            if self.fsync:
                with open(tmp, "rb") as handle:
                    os.fsync(handle.fileno())
            publish(tmp, output, self.fsync)
        finally:
            tmp.unlink(missing_ok=True)
        entry = {"kind": "compaction", "dataset": job.dataset, "file": self._relpath(output),
                 "schema_version": SCHEMA_VERSION, **facts, "bytes": output.stat().st_size,
                 "sha256": file_sha256(output), "source": {"replaces": sources}}
        return self.manifest.append([entry])[0]

    def _merge(self, job: _Job, dest: Path) -> dict:
        """Stream the inputs into one file, skipping later copies of a span (catalog's rule)."""
        schema = DATASETS[job.dataset]
        with self.peak_lock:
            drop = self._rows_to_drop(job.files)
        buffered: list[pa.Table] = []
        rows, low, high = 0, None, None
        with pq.ParquetWriter(dest, schema, **parquet_options(schema, self.parquet)) as writer:
            for index, path in enumerate(job.files):
                for table in self._read(path, schema, drop.get(index)):
                    buffered.append(table)
                    rows += table.num_rows
                    low, high = widen_time_range(low, high, table["start_time"])
                    if sum(t.num_rows for t in buffered) >= self.parquet.row_group_rows:
                        writer.write_table(pa.concat_tables(buffered), self.parquet.row_group_rows)
                        buffered = []
            if buffered:
                writer.write_table(pa.concat_tables(buffered), self.parquet.row_group_rows)
        return {"rows": rows, "min_time": low.isoformat() if low else None,
                "max_time": high.isoformat() if high else None}

    def _read(self, path: Path, schema: pa.Schema, drop: pa.Array | None):
        offset = 0
        # small batches: a 64K-row batch held 30 MB more at once for no speed gain
        for batch in pq.ParquetFile(path).iter_batches(batch_size=8 * 1024):
            if self._stop.is_set():
                raise _Stopped()
            table = conform(pa.Table.from_batches([batch]), schema)
            if drop is not None:
                positions = pa.arange(offset, offset + batch.num_rows)
                table = table.filter(pc.invert(pc.is_in(positions, value_set=drop)))
            offset += batch.num_rows
            yield table

    def _rows_to_drop(self, files: list[Path]) -> dict[int, pa.Array]:
        """Per input holding a later copy of a span, the row numbers to leave out: the
        earliest ingest_time wins (the catalog's rule).

        Copies across segments are rare (an exporter's retry landing in another WAL file),
        so a first pass over span ids alone (about 24 bytes a row) finds the few that occur
        twice; only their rows' full keys are read and sorted. Loading every key of up to
        ``target_rows`` rows and sorting them doubled compaction's peak memory.
        """
        span_ids = pa.concat_tables([pq.read_table(path, columns=["span_id"]) for path in files])
        ids = _fixed_width(span_ids["span_id"])
        del span_ids
        counts = pa.table({"span_id": ids}).group_by("span_id", use_threads=False).aggregate([([], "count_all")])
        del ids
        repeated = pc.filter(counts["span_id"], pc.greater(counts["count_all"], 1))
        if len(repeated) == 0:
            return {}
        repeated = repeated.cast(pa.binary()).cast(pa.string())
        keys = pa.concat_tables([self._candidate_keys(path, index, repeated) for index, path in enumerate(files)],
                                promote_options="permissive")
        keys = keys.take(pc.sort_indices(keys, sort_keys=[("ingest_time", "ascending", "at_end")]))
        first = first_rows(keys)
        if first is None:  # the same span id in different traces: nothing to drop
            return {}
        later = keys.filter(pc.invert(pc.is_in(pa.arange(0, keys.num_rows), value_set=first)))
        self.counters["duplicates_dropped"] += later.num_rows
        return {index: pc.filter(later["__row"], pc.equal(later["__file"], index)).combine_chunks()
                for index in set(later["__file"].to_pylist())}

    @staticmethod
    def _candidate_keys(path: Path, index: int, span_ids: pa.Array) -> pa.Table:
        """The keys of the rows of ``path`` whose span id is in ``span_ids``, with their positions."""
        keys = pq.read_table(path, columns=DEDUP_KEY + ["ingest_time"])
        keys = keys.append_column("__row", pa.arange(0, keys.num_rows))
        keys = keys.filter(pc.is_in(keys["span_id"], value_set=span_ids))
        return keys.append_column("__file", pa.array([index] * keys.num_rows, pa.int32()))

    # ------------------------------------------------------------------ deletion after the grace period

    def delete_expired(self, force: bool = False) -> int:
        """Delete replaced files whose grace period is over (all of them if ``force``)."""
        now = time.monotonic()
        deleted = 0
        for record, (due, files) in list(self._deletions.items()):
            if not force and due > now:
                continue
            for name in files:
                path = self.data_dir / name
                if path.exists():
                    path.unlink()
                    deleted += 1
            if self.fsync:
                for directory in {(self.data_dir / name).parent for name in files}:
                    fsync_dir(directory)
            record.unlink(missing_ok=True)
            del self._deletions[record]
        self.counters["files_deleted"] += deleted
        return deleted

    def _relpath(self, path: Path) -> str:
        return path.relative_to(self.data_dir).as_posix()


@contextmanager
def rewrite_lock(data_dir: Path, wait: bool = True):
    """Exclusive lock of whoever rewrites or deletes landed files: the compactor, an
    erasure, a retention run. A flock, so it works across processes (a CLI ``erase``
    beside a running server) and between threads that open it separately. Yields
    True when held; with ``wait=False``, False at once if someone else holds it."""
    path = Path(data_dir) / REWRITE_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _fixed_width(span_ids: pa.ChunkedArray) -> pa.ChunkedArray:
    """Span ids as 16-byte fixed-size binary when every one is 16 characters (OTLP's hex ids):
    the same bytes without offsets, which group_by counts in 3/4 of the memory and 2/3 of the
    time (1M ids: 35 against 47 MB). Anything else is returned as it is."""
    chunks = []
    for chunk in span_ids.chunks:
        lengths = pc.min_max(pc.binary_length(chunk))
        if chunk.null_count or chunk.offset or lengths["min"].as_py() != 16 or lengths["max"].as_py() != 16:
            return span_ids
        offsets, data = chunk.buffers()[1:]
        if int.from_bytes(offsets[:4].to_pybytes(), "little") != 0:
            return span_ids
        chunks.append(pa.Array.from_buffers(pa.binary(16), len(chunk), [None, data]))
    return pa.chunked_array(chunks, pa.binary(16))


def _iso(moment: datetime) -> str:
    """The manifest's created_at format, so the two compare as strings."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")
