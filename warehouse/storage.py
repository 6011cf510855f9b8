"""Storage: the one object the collector talks to (WAL + lander + compaction + catalog files).

    storage = Storage(data_dir, StorageSettings())
    storage.start()
    ok, reason = storage.can_accept()        # refuse with 503/UNAVAILABLE when False
    future = storage.append("inferences", batch)
    future.result()                          # durable (fsynced): now answer 200
    encode = storage.frame_encoder()         # picklable: normalizer processes serialize for the WAL
    storage.append_encoded(encode("inferences", batch))
    storage.stop()                           # seals and lands everything

Any exception from the future means the batch is not durable; ``StorageUnavailable``
is the retryable kind. ``append`` itself raises ``ValueError`` for a batch that can
never be stored (unknown dataset, columns that do not fit the schema).
"""
from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from warehouse.catalog import ensure_schema_files
from warehouse.encoding import FrameEncoder
from warehouse.compaction import CompactionSettings, Compactor
from warehouse.landing import Lander, ParquetSettings, Transform, last_landed_wal
from warehouse.manifest import SCHEMA_FILE_NAME, Manifest, manifest_path
from warehouse.wal import EncodedFrame, StorageUnavailable, WriteAheadLog

__all__ = ["Storage", "StorageSettings", "StorageUnavailable", "CompactionSettings", "ParquetSettings",
           "FrameEncoder", "EncodedFrame"]

MiB = 2**20
WAL_COMPRESSIONS = (None, "lz4", "zstd")


@dataclass
class StorageSettings:
    """Developer-facing knobs; defaults are the ones documented in warehouse/README.md."""

    fsync: bool = True                      # False only for tests/benchmarks: acks stop meaning durable
    seal_interval_s: float = 1.0            # rotate the active WAL file at least this often
    visibility_target_s: float = 5.0        # appended rows are queryable within this
    max_wal_file_bytes: int = 64 * MiB      # rotate earlier when the active file is this big
    max_queue_bytes: int = 16 * MiB         # serialized batches waiting for the WAL writer
    max_pending_bytes: int = 256 * MiB      # WAL bytes not yet in Parquet: refuse beyond this
    min_free_bytes: int = 256 * MiB         # refuse when the data disk has less free space
    wal_compression: str | None = None      # "lz4"/"zstd": smaller WAL, more CPU (see README)
    parquet: ParquetSettings = field(default_factory=ParquetSettings)
    compaction: CompactionSettings = field(default_factory=CompactionSettings)
    transform: Transform | None = None      # (dataset, table) -> table, applied when landing

    def validate(self) -> None:
        if not 0 < self.seal_interval_s < self.visibility_target_s:
            raise ValueError("seal_interval_s must be > 0 and below visibility_target_s "
                             f"({self.seal_interval_s} >= {self.visibility_target_s})")
        if self.wal_compression not in WAL_COMPRESSIONS:
            raise ValueError(f"wal_compression must be one of {WAL_COMPRESSIONS}")
        for name in ("max_wal_file_bytes", "max_queue_bytes", "max_pending_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")


class Storage:
    """Durable append of Arrow batches, landed as Parquet and queried via warehouse.catalog."""

    def __init__(self, data_dir: Path, settings: StorageSettings | None = None):
        self.data_dir = Path(data_dir)
        self.settings = settings or StorageSettings()
        self.settings.validate()
        self._running = False
        self._free = (0.0, 0)  # (checked at, free bytes)
        self._lock = threading.Lock()
        self.wal: WriteAheadLog | None = None
        self.lander: Lander | None = None
        self.compactor: Compactor | None = None
        self.manifest: Manifest | None = None
        self._lock_fd: int | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Recover what a crash left (WAL, half-landed files, compactions), then start the threads."""
        if self._running:
            raise RuntimeError("storage already started")
        for sub in ("wal", "parquet", "tmp", "quarantine"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        self._take_writer_lock()
        try:
            self._open_components()
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise
        self.lander.start()
        self.compactor.start()
        self._running = True

    def _open_components(self) -> None:
        s = self.settings
        self.manifest = Manifest(manifest_path(self.data_dir), fsync=s.fsync)
        peak_lock = threading.Lock()  # the lander's and the compactor's memory peaks, one at a time
        self.compactor = Compactor(self.data_dir, self.manifest, s.compaction, s.parquet, s.fsync, peak_lock)
        self.compactor.recover()
        landed = last_landed_wal(self.manifest.path)
        self.wal = WriteAheadLog(self.data_dir / "wal", fsync=s.fsync, max_file_bytes=s.max_wal_file_bytes,
                                 seal_interval_s=s.seal_interval_s, max_queue_bytes=s.max_queue_bytes,
                                 compression=s.wal_compression, id_floor=landed.wal_id,
                                 on_seal=self._wake_lander)
        self.lander = Lander(self.data_dir, self.wal, self.manifest, s.parquet, s.transform, s.fsync,
                             poll_interval_s=min(0.5, s.seal_interval_s), peak_lock=peak_lock)
        self.wal.open()
        self.lander.recover(landed)
        ensure_schema_files(self.data_dir, s.fsync)

    def stop(self) -> None:
        """Stop accepting, write and seal what is queued, land every sealed file."""
        if not self._running:
            return
        self._running = False
        self.compactor.stop()
        self.wal.close()
        self.lander.stop()
        self.manifest.close()
        os.close(self._lock_fd)  # releases the flock
        self._lock_fd = None

    def __enter__(self) -> "Storage":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _take_writer_lock(self) -> None:
        """One writing process per data dir: two landers would land the same WAL files twice
        and two manifest writers would fork the chain. Readers take no lock. The kernel
        drops the flock when the process dies, kill -9 included."""
        fd = os.open(self.data_dir / "wal" / "writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RuntimeError(f"another process is already writing to {self.data_dir}") from None
        self._lock_fd = fd

    def _wake_lander(self) -> None:
        if self.lander is not None:
            self.lander.wake()

    # ------------------------------------------------------------------ ingestion

    def append(self, dataset: str, batch: pa.RecordBatch) -> Future:
        """Queue ``batch`` for ``dataset``; the future resolves once it is fsynced to the WAL."""
        return self.append_encoded(self.frame_encoder()(dataset, batch))

    def frame_encoder(self) -> FrameEncoder:
        """What ``append_encoded`` expects its frames from (with this storage's WAL compression)."""
        return FrameEncoder(self.settings.wal_compression)

    def append_encoded(self, frame: EncodedFrame) -> Future:
        """Queue a frame made by ``frame_encoder()``; resolves once it is fsynced to the WAL."""
        if frame.rows == 0:
            done: Future = Future()
            done.set_result(None)
            return done
        if not self._running:
            failed: Future = Future()
            failed.set_exception(StorageUnavailable("storage is not running"))
            return failed
        return self.wal.append_encoded(frame)

    def can_accept(self) -> tuple[bool, str]:
        """Backpressure check, cheap enough for every request: (False, why) means answer 'retry later'."""
        if not self._running:
            return False, "storage is not running"
        pending = self.wal.pending_bytes() + self.wal.queued_bytes()
        if pending > self.settings.max_pending_bytes:
            return False, (f"{pending} bytes are waiting to land, over the "
                           f"{self.settings.max_pending_bytes} byte bound")
        free = self._free_bytes()
        if free < self.settings.min_free_bytes:
            return False, f"only {free} bytes free on the data disk (minimum {self.settings.min_free_bytes})"
        return True, ""

    def flush(self, timeout: float | None = None) -> bool:
        """Seal and land everything appended so far; False if ``timeout`` ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        newest = self.wal.flush().result(timeout)
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        return self.lander.wait_landed(newest, remaining)

    def _free_bytes(self) -> int:
        checked, free = self._free
        now = time.monotonic()
        if now - checked > 1.0:  # statvfs once a second, not per request
            free = shutil.disk_usage(self.data_dir).free
            self._free = (now, free)
        return free

    # ------------------------------------------------------------------ observability

    def stats(self) -> dict:
        """Counters and gauges for Prometheus (names are documented in warehouse/README.md)."""
        wal, lander, compactor = self.wal, self.lander, self.compactor
        if wal is None:
            return {"running": False}
        oldest = wal.oldest_unlanded_time()
        per_dataset = {f"rows_landed_{name}": rows for name, rows in lander.rows_landed.items()}
        return {
            "running": self._running,
            "wal_appends": wal.counters["appends"],
            "wal_bytes_written": wal.counters["bytes_written"],
            "wal_fsyncs": wal.counters["fsyncs"],
            "wal_groups": wal.counters["groups"],
            "wal_write_errors": wal.counters["write_errors"],
            "wal_rejected_full": wal.counters["rejected_full"],
            "wal_queued_bytes": wal.queued_bytes(),
            "pending_bytes": wal.pending_bytes(),
            "sealed_files_waiting": len(wal.sealed_files()),
            "flush_lag_seconds": max(0.0, time.time() - oldest) if oldest else 0.0,
            "files_landed": lander.counters["files_landed"],
            "segments_landed": lander.counters["segments_written"],
            "segment_files": self._segment_files(),
            **per_dataset,
            "duplicates_dropped": lander.counters["duplicates_dropped"] + compactor.counters["duplicates_dropped"],
            "frames_quarantined": lander.counters["frames_quarantined"],
            "landing_errors": lander.counters["landing_errors"],
            "transform_errors": lander.counters["transform_errors"],
            "compactions": compactor.counters["compactions"],
            "compaction_errors": compactor.counters["compaction_errors"],
            "files_deleted": compactor.counters["files_deleted"],
            "free_bytes": self._free_bytes(),
        }

    def _segment_files(self) -> int:
        return sum(1 for path in (self.data_dir / "parquet").glob("*/*/*.parquet")
                   if not SCHEMA_FILE_NAME.fullmatch(path.name))

