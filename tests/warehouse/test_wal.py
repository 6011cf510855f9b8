"""Write-ahead log: real files, real fsync, real write failures (RLIMIT_FSIZE)."""
from __future__ import annotations

import errno
import resource
import signal
import threading
import time
from concurrent.futures import wait
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from warehouse.record import HTTP_ATTEMPT_SCHEMA, to_batch
from warehouse.wal import (BadTail, Frame, StorageUnavailable, WriteAheadLog, decode_payload, encode_frame,
                           read_frames, valid_prefix_length, wal_id_number)

T0 = datetime(2026, 5, 1, 12, tzinfo=timezone.utc)


def attempts(n: int, first: int = 0) -> pa.RecordBatch:
    return to_batch([{"trace_id": f"{i:032x}", "span_id": f"{i:016x}", "start_time": T0, "status_code": 200}
                     for i in range(first, first + n)], HTTP_ATTEMPT_SCHEMA)


def frames_of(path) -> list[Frame | BadTail]:
    return list(read_frames(path.read_bytes()))


@pytest.fixture
def wal(tmp_path):
    log = WriteAheadLog(tmp_path / "wal", seal_interval_s=30)
    log.open()
    yield log
    log.close()


def test_acknowledged_batch_is_in_the_active_file(wal):
    batch = attempts(3)
    assert wal.append("http_attempts", batch).result(timeout=5) is None
    [active] = list(wal.active_dir.iterdir())
    [frame] = frames_of(active)
    assert frame.dataset == "http_attempts"
    assert decode_payload(frame.payload).to_pylist() == pa.Table.from_batches([batch]).to_pylist()
    assert wal.counters["fsyncs"] == 1 and wal.pending_bytes() == active.stat().st_size


def test_concurrent_appends_share_fsyncs(wal):
    futures, lock = [], threading.Lock()

    def writer(first: int) -> None:
        for i in range(50):
            future = wal.append("http_attempts", attempts(4, first + i * 4))
            with lock:
                futures.append(future)

    threads = [threading.Thread(target=writer, args=(n * 1000,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done, _ = wait(futures, timeout=10)
    assert all(f.exception() is None for f in done) and len(done) == 400
    assert wal.counters["appends"] == 400
    assert wal.counters["fsyncs"] < 400  # group commit: one fsync covered several appends


def test_flush_seals_and_reports_the_sealed_file(wal):
    wal.append("http_attempts", attempts(2)).result()
    newest = wal.flush().result(timeout=5)
    [sealed] = wal.sealed_files()
    assert wal_id_number(sealed.stem) == newest
    assert not list(wal.active_dir.iterdir())
    assert len(frames_of(sealed)) == 1


def test_seals_after_the_interval(tmp_path):
    log = WriteAheadLog(tmp_path / "wal", seal_interval_s=0.2)
    log.open()
    try:
        log.append("http_attempts", attempts(1)).result()
        deadline = time.monotonic() + 5
        while not log.sealed_files() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(log.sealed_files()) == 1
    finally:
        log.close()


def test_rotates_when_the_file_is_full(tmp_path):
    log = WriteAheadLog(tmp_path / "wal", max_file_bytes=1, seal_interval_s=30)
    log.open()
    try:
        for i in range(3):
            log.append("http_attempts", attempts(1, i)).result()
        log.flush().result()
        assert len(log.sealed_files()) == 3
    finally:
        log.close()


def test_torn_tail_of_an_active_file_is_cut_on_open(tmp_path):
    """What a crash mid-write leaves: complete frames, then part of one (never acknowledged)."""
    good = encode_frame("http_attempts", attempts(2)) + encode_frame("http_attempts", attempts(2, 2))
    active = tmp_path / "wal" / "active" / f"{time.time_ns():020d}-0badcafe.wal"
    active.parent.mkdir(parents=True)
    active.write_bytes(good + encode_frame("http_attempts", attempts(5, 9))[:-7])

    reopened = WriteAheadLog(tmp_path / "wal")
    reopened.open()
    try:
        [sealed] = reopened.sealed_files()
        assert sealed.read_bytes() == good
        assert [f.dataset for f in frames_of(sealed)] == ["http_attempts"] * 2
    finally:
        reopened.close()


def test_corruption_is_reported_not_skipped():
    data = bytearray(encode_frame("http_attempts", attempts(1)) + encode_frame("http_attempts", attempts(1, 1)))
    data[-3] ^= 0xFF
    items = list(read_frames(bytes(data)))
    assert isinstance(items[0], Frame)
    assert isinstance(items[1], BadTail) and items[1].reason == "crc mismatch"
    assert valid_prefix_length(bytes(data)) == items[1].offset
    assert list(read_frames(b"garbage!" * 4))[0].reason == "bad frame magic"


def test_full_queue_is_refused(tmp_path):
    log = WriteAheadLog(tmp_path / "wal", max_queue_bytes=1)
    log.open()
    try:
        with log._cond:  # hold the writer off so the first frame is still queued
            queued = log.append("http_attempts", attempts(1))
            refused = log.append("http_attempts", attempts(1, 1))
        assert isinstance(refused.exception(timeout=1), StorageUnavailable)
        assert queued.result(timeout=5) is None  # the bound refuses, never drops what it took
        assert log.counters["rejected_full"] == 1
    finally:
        log.close()


def test_append_after_close_fails(tmp_path):
    log = WriteAheadLog(tmp_path / "wal")
    log.open()
    log.close()
    assert isinstance(log.append("http_attempts", attempts(1)).exception(), StorageUnavailable)


def test_ids_stay_above_the_floor_even_if_the_clock_is_behind(tmp_path):
    floor = f"{time.time_ns() + 10**15:020d}-00000000"  # about 11 days in the future
    log = WriteAheadLog(tmp_path / "wal", id_floor=floor)
    log.open()
    try:
        log.append("http_attempts", attempts(1)).result()
        log.flush().result()
        [sealed] = log.sealed_files()
        assert wal_id_number(sealed.stem) > wal_id_number(floor)
    finally:
        log.close()


def test_failed_write_fails_the_futures_and_the_next_file_works(tmp_path):
    """A real EFBIG from the kernel (RLIMIT_FSIZE), not a simulated exception."""
    log = WriteAheadLog(tmp_path / "wal", seal_interval_s=30)
    log.open()
    big = attempts(20000)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        log.append("http_attempts", attempts(1)).result()
        size = next(log.active_dir.iterdir()).stat().st_size
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1000, hard))
        failed = log.append("http_attempts", big)
        error = failed.exception(timeout=5)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    try:
        assert isinstance(error, StorageUnavailable)
        assert error.__cause__.errno == errno.EFBIG
        assert log.counters["write_errors"] == 1
        log.append("http_attempts", attempts(1, 7)).result(timeout=5)
        log.flush().result()
        sealed = log.sealed_files()
        assert len(sealed) == 2  # the failed file was cut back and sealed, a new one started
        assert all(isinstance(f, Frame) for path in sealed for f in frames_of(path))
        assert sum(len(frames_of(path)) for path in sealed) == 2
    finally:
        log.close()


def test_one_group_larger_than_a_writev_call(wal):
    with wal._cond:  # queue 700 frames (1,400 buffers) so the writer takes them as one group
        futures = [wal.append("http_attempts", attempts(1, i)) for i in range(700)]
    wait(futures, timeout=10)
    assert wal.counters["groups"] == 1
    wal.flush().result()
    [sealed] = wal.sealed_files()
    frames = frames_of(sealed)
    assert len(frames) == 700 and all(isinstance(f, Frame) for f in frames)
    assert [decode_payload(f.payload)["trace_id"][0].as_py() for f in frames] == [f"{i:032x}" for i in range(700)]
