"""Write-ahead log: the collector acknowledges a span only once its bytes are here, fsynced.

A single writer thread owns the active file. ``append()`` serializes the batch in
the caller's thread (Arrow IPC, CRC) and queues the frame; the writer takes
everything queued, writes it, syncs once for the whole group (group commit) and
only then resolves the callers' futures. Files rotate ``active/`` -> ``sealed/``
by ``os.replace`` when they grow past ``max_file_bytes`` or ``seal_interval_s``
has passed; the lander (``warehouse/landing.py``) turns sealed files into
Parquet and discards them.

Frame layout (little-endian), chosen so a torn or corrupt tail is detectable
and the reader can skip nothing silently::

    magic b"ILW1" | payload length u32 | crc32(name + payload) u32 | name length u16
    | dataset name (utf-8) | Arrow IPC stream (schema + one record batch)
"""
from __future__ import annotations

import logging
import os
import secrets
import struct
import threading
import time
import zlib
from collections import OrderedDict, deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pyarrow as pa

log = logging.getLogger(__name__)

FRAME_MAGIC = b"ILW1"
FRAME_HEADER = struct.Struct("<4sIIH")
WAL_SUFFIX = ".wal"
MAX_GROUP_BYTES = 32 * 1024 * 1024  # one write/fsync group at most
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024  # buffers per writev
_sync = getattr(os, "fdatasync", os.fsync)  # fdatasync also persists the file size


class StorageUnavailable(Exception):
    """The data was NOT made durable; the caller should answer 'retry later'."""


# --------------------------------------------------------------------------- frames

def strip_metadata(schema: pa.Schema) -> pa.Schema:
    """Drop field descriptions: they are ~6 KB per frame and the lander re-applies them."""
    return pa.schema([f.remove_metadata() for f in schema])


def frame_parts(dataset: str, batch: pa.RecordBatch, compression: str | None = None) -> tuple[bytes, pa.Buffer]:
    """(header + dataset name, Arrow IPC payload): written with writev, never copied together."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression=compression)
    with pa.ipc.new_stream(sink, batch.schema, options=options) as writer:
        writer.write_batch(batch)
    payload = sink.getvalue()
    name = dataset.encode()
    crc = zlib.crc32(payload, zlib.crc32(name))
    return FRAME_HEADER.pack(FRAME_MAGIC, payload.size, crc, len(name)) + name, payload


@dataclass(frozen=True)
class EncodedFrame:
    """A batch already serialized as a WAL frame, so it can cross a process boundary as two
    byte strings (pickling a RecordBatch costs ~3 µs/span both ways) and be queued as is."""

    dataset: str
    rows: int
    head: bytes
    payload: pa.Buffer

    @classmethod
    def of(cls, dataset: str, batch: pa.RecordBatch, compression: str | None = None) -> "EncodedFrame":
        head, payload = frame_parts(dataset, batch, compression)
        return cls(dataset, batch.num_rows, head, payload)

    def table(self) -> pa.Table:
        return decode_payload(self.payload)


def encode_frame(dataset: str, batch: pa.RecordBatch, compression: str | None = None) -> bytes:
    """One self-describing frame; the schema travels with it so old WAL files stay readable."""
    head, payload = frame_parts(dataset, batch, compression)
    return head + payload.to_pybytes()


def decode_payload(payload) -> pa.Table:
    """Arrow IPC stream bytes back to a table (raises pa.ArrowInvalid when garbled).

    Zero-copy: the table's buffers point into ``payload`` (bytes, memoryview or pa.Buffer)."""
    with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
        return reader.read_all()


@dataclass(frozen=True)
class Frame:
    offset: int
    dataset: str
    payload: memoryview  # into the file's bytes: landing a 64 MB file must not copy it
    payload_offset: int  # where ``payload`` starts in the file


@dataclass(frozen=True)
class BadTail:
    """Bytes from ``offset`` on are not a valid frame (torn write or corruption)."""

    offset: int
    reason: str


def read_frames(data: bytes) -> Iterator[Frame | BadTail]:
    """Yield valid frames in order; a ``BadTail`` ends the iteration if the rest is invalid."""
    offset, end = 0, len(data)
    while offset < end:
        reason = _frame_problem(data, offset)
        if reason:
            yield BadTail(offset, reason)
            return
        _, length, _, name_len = FRAME_HEADER.unpack_from(data, offset)
        body = offset + FRAME_HEADER.size
        name = data[body:body + name_len].decode("utf-8", "replace")
        yield Frame(offset, name, memoryview(data)[body + name_len:body + name_len + length], body + name_len)
        offset = body + name_len + length


def _frame_problem(data: bytes, offset: int) -> str:
    if len(data) - offset < FRAME_HEADER.size:
        return "truncated frame header"
    magic, length, crc, name_len = FRAME_HEADER.unpack_from(data, offset)
    if magic != FRAME_MAGIC:
        return "bad frame magic"
    body = offset + FRAME_HEADER.size
    if body + name_len + length > len(data):
        return "truncated frame body"
    name = data[body:body + name_len]
    payload = memoryview(data)[body + name_len:body + name_len + length]
    if zlib.crc32(payload, zlib.crc32(name)) != crc:
        return "crc mismatch"
    return ""


def valid_prefix_length(data: bytes) -> int:
    """Length of the leading run of valid frames: everything after it was never acknowledged."""
    for item in read_frames(data):
        if isinstance(item, BadTail):
            return item.offset
    return len(data)


# --------------------------------------------------------------------------- ids and files

def wal_id_number(wal_id: str) -> int:
    """WAL ids are '<nanoseconds, 20 digits>-<random>'; the number orders and dates them."""
    return int(wal_id.split("-", 1)[0])


def fsync_dir(path: Path) -> None:
    """Make a create/rename/unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: list) -> None:
    """writev every part, resuming after short writes (IOV_MAX bounds one call)."""
    views = [memoryview(part) for part in parts]
    index = 0
    while index < len(views):
        written = os.writev(fd, views[index:index + IOV_MAX])
        while written:
            if written >= len(views[index]):
                written -= len(views[index])
                index += 1
            else:
                views[index] = views[index][written:]
                written = 0
        while index < len(views) and not len(views[index]):
            index += 1


@dataclass
class _Pending:
    head: bytes
    payload: pa.Buffer | None
    future: Future
    barrier: bool = False  # flush(): seal after the frames before it, resolve with that file's number

    @property
    def size(self) -> int:
        return len(self.head) + (self.payload.size if self.payload is not None else 0)


class WriteAheadLog:
    """Durable, group-committed append log of Arrow batches (see the module docstring)."""

    def __init__(self, directory: Path, fsync: bool = True, max_file_bytes: int = 64 * 2**20,
                 seal_interval_s: float = 1.0, max_queue_bytes: int = 64 * 2**20,
                 compression: str | None = None, id_floor: str | None = None, on_seal=None):
        self.directory = Path(directory)
        self.active_dir = self.directory / "active"
        self.sealed_dir = self.directory / "sealed"
        self.fsync = fsync
        self.max_file_bytes = max_file_bytes
        self.seal_interval_s = seal_interval_s
        self.max_queue_bytes = max_queue_bytes
        self.compression = compression
        self.on_seal = on_seal
        self._last_number = wal_id_number(id_floor) if id_floor else 0
        self._cond = threading.Condition()
        self._queue: deque[_Pending] = deque()
        self._queued_bytes = 0
        self._sealed: OrderedDict[str, int] = OrderedDict()  # wal id -> bytes, oldest first
        self._fd: int | None = None
        self._active_id = ""
        self._active_bytes = 0
        self._active_opened = 0.0
        self._newest_sealed = 0
        self._closing = False
        self._thread: threading.Thread | None = None
        self.counters = {"appends": 0, "bytes_written": 0, "fsyncs": 0, "groups": 0,
                         "sealed_files": 0, "write_errors": 0, "rejected_full": 0}

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Seal what a previous process left in active/ (torn tail cut off), then start writing."""
        self.active_dir.mkdir(parents=True, exist_ok=True)
        self.sealed_dir.mkdir(parents=True, exist_ok=True)
        for path in sorted(self.active_dir.glob("*" + WAL_SUFFIX)):
            self._recover_active(path)
        for path in sorted(self.sealed_dir.glob("*" + WAL_SUFFIX)):
            self._sealed[path.stem] = path.stat().st_size
            self._newest_sealed = wal_id_number(path.stem)
            self._last_number = max(self._last_number, self._newest_sealed)
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Write everything already queued, seal the active file, stop the writer."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread:
            self._thread.join()
            self._thread = None

    def flush(self) -> Future:
        """Seal everything queued so far; the future resolves to the newest sealed file's id
        number (0 if none), which the lander reports as landed once it is in Parquet."""
        future: Future = Future()
        with self._cond:
            if self._closing or self._thread is None:
                future.set_result(self._newest_sealed)
            else:
                self._queue.append(_Pending(b"", None, future, barrier=True))
                self._cond.notify()
        return future

    # ------------------------------------------------------------------ append

    def append(self, dataset: str, batch: pa.RecordBatch) -> Future:
        """Queue one batch; the future resolves to None once it is on disk (fsynced)."""
        return self.append_encoded(EncodedFrame.of(dataset, batch, self.compression))

    def append_encoded(self, frame: EncodedFrame) -> Future:
        """Queue a frame serialized elsewhere (a normalizer process); resolves like ``append``."""
        future: Future = Future()
        pending = _Pending(frame.head, frame.payload, future)
        with self._cond:
            if self._closing or self._thread is None:
                future.set_exception(StorageUnavailable("write-ahead log is not running"))
            elif self._queued_bytes and self._queued_bytes + pending.size > self.max_queue_bytes:
                self.counters["rejected_full"] += 1
                future.set_exception(StorageUnavailable("write-ahead log queue is full"))
            else:
                self._queue.append(pending)
                self._queued_bytes += pending.size
                self._cond.notify()
        return future

    # ------------------------------------------------------------------ sealed files (lander side)

    def sealed_files(self) -> list[Path]:
        """Sealed, not yet discarded files, oldest first."""
        with self._cond:
            return [self.sealed_dir / (wal_id + WAL_SUFFIX) for wal_id in self._sealed]

    def discard(self, path: Path) -> None:
        """Delete a landed sealed file and make the deletion durable."""
        path.unlink(missing_ok=True)
        if self.fsync:
            fsync_dir(self.sealed_dir)
        with self._cond:
            self._sealed.pop(path.stem, None)

    # ------------------------------------------------------------------ stats

    def pending_bytes(self) -> int:
        """Bytes on disk not yet landed: sealed files plus the active file."""
        with self._cond:
            return sum(self._sealed.values()) + self._active_bytes

    def queued_bytes(self) -> int:
        return self._queued_bytes

    def oldest_unlanded_time(self) -> float | None:
        """Unix time when the oldest unlanded WAL file was started, None when all landed."""
        with self._cond:
            ids = list(self._sealed)[:1] or ([self._active_id] if self._active_bytes else [])
        return wal_id_number(ids[0]) / 1e9 if ids else None

    # ------------------------------------------------------------------ writer thread

    def _run(self) -> None:
        try:
            while True:
                group, stop = self._take_group()
                frames = [item for item in group if not item.barrier]
                barriers = [item for item in group if item.barrier]
                if frames:
                    self._write_group(frames)
                if barriers or stop or self._seal_due():
                    self._seal_active()
                for item in barriers:
                    item.future.set_result(self._newest_sealed)
                if stop:
                    return
        except Exception as exc:  # never leave a caller waiting on a dead writer
            log.exception("write-ahead log writer stopped")
            self._fail_queued(exc)

    def _fail_queued(self, exc: Exception) -> None:
        with self._cond:
            self._closing = True
            pending, self._queue = list(self._queue), deque()
            self._queued_bytes = 0
        error = StorageUnavailable(f"write-ahead log writer stopped: {exc}")
        for item in pending:
            if not item.future.done():
                item.future.set_exception(error)

    def _take_group(self) -> tuple[list[_Pending], bool]:
        """Everything queued (up to MAX_GROUP_BYTES, and up to a flush barrier)."""
        with self._cond:
            while not (self._queue or self._closing or self._seal_due()):
                self._cond.wait(self._wait_timeout())
            group, size = [], 0
            while self._queue and (not group or size + self._queue[0].size <= MAX_GROUP_BYTES):
                item = self._queue.popleft()
                group.append(item)
                size += item.size
                if item.barrier:
                    break
            self._queued_bytes -= size
            return group, self._closing and not self._queue

    def _wait_timeout(self) -> float | None:
        if not self._active_bytes:
            return None
        return max(0.001, self._active_opened + self.seal_interval_s - time.monotonic())

    def _seal_due(self) -> bool:
        if not self._active_bytes:
            return False
        return (self._active_bytes >= self.max_file_bytes
                or time.monotonic() - self._active_opened >= self.seal_interval_s)

    def _write_group(self, group: list[_Pending]) -> None:
        parts = [part for item in group for part in (item.head, item.payload)]
        size = sum(item.size for item in group)
        try:
            self._ensure_active()
            _write_all(self._fd, parts)
            if self.fsync:
                _sync(self._fd)
                self.counters["fsyncs"] += 1
        except Exception as exc:
            self._fail_group(group, exc)
            return
        with self._cond:
            self._active_bytes += size
        self.counters["bytes_written"] += size
        self.counters["appends"] += len(group)
        self.counters["groups"] += 1
        for item in group:
            item.future.set_result(None)

    def _fail_group(self, group: list[_Pending], exc: Exception) -> None:
        """Cut the partial group off and start a fresh file: after a failed fsync the
        page cache state is unknown (Linux may drop the dirty pages), so never reuse it."""
        log.error("write-ahead log write failed: %s", exc)
        self.counters["write_errors"] += 1
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._active_bytes)
            except OSError:
                pass  # the lander quarantines a garbled tail
            self._seal_active()
        error = StorageUnavailable(f"write-ahead log write failed: {exc}")
        error.__cause__ = exc
        for item in group:
            item.future.set_exception(error)

    def _ensure_active(self) -> None:
        if self._fd is not None:
            return
        self._last_number = max(time.time_ns(), self._last_number + 1)
        wal_id = f"{self._last_number:020d}-{secrets.token_hex(4)}"
        path = self.active_dir / (wal_id + WAL_SUFFIX)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._active_id = wal_id
        self._active_opened = time.monotonic()
        if self.fsync:
            fsync_dir(self.active_dir)  # the file's name must survive a crash, not only its bytes

    def _seal_active(self) -> None:
        if self._fd is None:
            return
        os.close(self._fd)
        self._fd = None
        wal_id, size = self._active_id, self._active_bytes
        src = self.active_dir / (wal_id + WAL_SUFFIX)
        if size == 0:
            src.unlink(missing_ok=True)
        else:
            self._move_to_sealed(src, size)
        with self._cond:
            self._active_id, self._active_bytes = "", 0

    def _move_to_sealed(self, src: Path, size: int) -> None:
        try:
            os.replace(src, self.sealed_dir / src.name)
            if self.fsync:
                fsync_dir(self.sealed_dir)
                fsync_dir(self.active_dir)
        except OSError as exc:  # stays in active/; the next open() seals it
            log.error("could not seal %s: %s", src.name, exc)
            return
        with self._cond:
            self._sealed[src.stem] = size
            self._newest_sealed = wal_id_number(src.stem)
        self.counters["sealed_files"] += 1
        if self.on_seal:
            self.on_seal()

    def _recover_active(self, path: Path) -> None:
        """An active file left by a crash: keep its valid frames, drop the torn tail."""
        data = path.read_bytes()
        keep = valid_prefix_length(data)
        self._last_number = max(self._last_number, wal_id_number(path.stem))
        if keep == 0:
            path.unlink()
            return
        if keep < len(data):
            log.warning("%s: dropping %d torn bytes after the last valid frame",
                        path.name, len(data) - keep)
            os.truncate(path, keep)
            with open(path, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(path, self.sealed_dir / path.name)
        fsync_dir(self.sealed_dir)
        fsync_dir(self.active_dir)
