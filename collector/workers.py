"""Decode and normalize in worker processes.

Reading protobuf attributes and applying the convention precedence is
CPU-bound Python that holds the GIL (about 25-45 µs per span, see
bench/normalize_micro.py), so one process cannot use a second core. With
``ingest.workers`` > 0 the collector hands each request body to a pool of
processes and keeps only the cheap parts (HTTP, the write-ahead log, landing)
in the main process. ``workers = 0`` normalizes inline, which is simplest to
debug and what tests of the normalization itself use.

A worker hands back an ``EncodedBatch``: the records already serialized as
write-ahead log frames (``warehouse.encoding``), which cross the process
boundary as plain bytes and which the main process queues without decoding.
"""
from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, fields
from datetime import datetime, timezone

import pyarrow as pa

from collector.normalize import NormalizedBatch, NormalizeSettings, normalize_protobuf, normalize_request
from collector.otlp_decode import decode_json, decode_protobuf
from collector.tenancy import restrict_to_tenant
from warehouse.encoding import FrameEncoder
from warehouse.wal import EncodedFrame

PROTOBUF = "application/x-protobuf"
DECODERS = {PROTOBUF: decode_protobuf, "application/json": decode_json}
_settings: NormalizeSettings | None = None
_encode: FrameEncoder | None = None


@dataclass
class EncodedBatch:
    """A ``NormalizedBatch`` whose records are ready for the write-ahead log (one frame per
    dataset that has rows), with the counts the receiver reports."""

    frames: list[EncodedFrame]
    spans_received: int
    rejected_spans: int
    rejection_messages: list[str]
    dropped_spans: int

    def table(self, dataset: str) -> pa.Table | None:
        """The rows of ``dataset`` decoded again (tests, debugging); None when it has none."""
        return next((frame.table() for frame in self.frames if frame.dataset == dataset), None)


def decode_and_normalize(body: bytes, content_type: str, settings: NormalizeSettings | None = None
                         ) -> NormalizedBatch:
    """Body bytes to normalized records; raises ``PermanentError`` for an undecodable body."""
    settings = settings or _settings
    if content_type == PROTOBUF:  # straight from the bytes (the C reader when built)
        return normalize_protobuf(body, settings, datetime.now(timezone.utc))
    request = DECODERS[content_type](body)
    return normalize_request(request, settings, datetime.now(timezone.utc))


def prepare(body: bytes, content_type: str, tenant: str | None = None,
            settings: NormalizeSettings | None = None, encode: FrameEncoder | None = None) -> EncodedBatch:
    """What a worker does with one request: normalize, keep the key's tenant, serialize."""
    batch = decode_and_normalize(body, content_type, settings)
    if tenant is not None:
        batch = restrict_to_tenant(batch, tenant)
    encode = encode or _encode
    datasets = (("inferences", batch.inferences), ("http_attempts", batch.http_attempts))
    return EncodedBatch(frames=[encode(name, records) for name, records in datasets if records.num_rows],
                        spans_received=batch.spans_received, rejected_spans=batch.rejected_spans,
                        rejection_messages=batch.rejection_messages, dropped_spans=batch.dropped_spans)


def _initialize(settings_kwargs: dict, encode: FrameEncoder, server_pid: int) -> None:
    global _settings, _encode
    _settings = NormalizeSettings(**settings_kwargs)
    _encode = encode
    # What is imported now lives as long as the worker: out of the cyclic collector's
    # sight, its full collections no longer walk it between requests (inferledger/memory.py).
    gc.freeze()
    threading.Thread(target=_exit_with_server, args=(server_pid, os.getppid()), daemon=True).start()


def _exit_with_server(server_pid: int, parent_pid: int) -> None:
    """A collector killed with SIGKILL cannot stop its pool; its workers notice and leave.

    A worker's parent is the fork server, which exits when the collector does; the
    collector itself is watched too, in case the fork server outlives it."""
    while os.getppid() == parent_pid and _alive(server_pid):
        time.sleep(1.0)
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else (the pid was reused): gone for us
        return False
    return True


def worker_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a fork server that imported this module and nothing else.

    Spawned workers re-import the collector's ``__main__`` (the whole CLI: DuckDB, FastAPI,
    gRPC) and hold ~130 MB each; forked from a server that preloaded only the normalizer,
    they share its pages (pyarrow, the conventions, the C reader) and hold what they
    allocate. The fork server is single-threaded, so forking it is safe where forking the
    collector (threads, an event loop) would not be."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["collector.workers", "collector._preloaded"])
    return context


class NormalizerPool:
    """A process pool that runs ``prepare``; zero workers means inline.

    ``encode`` comes from the storage the frames go to (``Storage.frame_encoder()``).
    """

    def __init__(self, settings: NormalizeSettings, workers: int, encode: FrameEncoder = FrameEncoder()):
        self.settings = settings
        self.workers = workers
        self.encode = encode
        self._pool = None
        if workers > 0:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        kwargs = {f.name: getattr(self.settings, f.name) for f in fields(self.settings) if f.init}
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=worker_context(),
                                   initializer=_initialize, initargs=(kwargs, self.encode, os.getpid()))

    def submit(self, body: bytes, content_type: str, tenant: str | None = None) -> Future:
        """A future of the request's ``EncodedBatch``; ``tenant``: the API key's (see collector.tenancy)."""
        if self._pool is None:
            future: Future = Future()
            try:
                future.set_result(prepare(body, content_type, tenant, self.settings, self.encode))
            except Exception as exc:  # delivered to the caller exactly as the pool would
                future.set_exception(exc)
            return future
        return self._pool_submit(body, content_type, tenant)

    def _pool_submit(self, body: bytes, content_type: str, tenant: str | None) -> Future:
        try:
            return self._pool.submit(prepare, body, content_type, tenant)
        except BrokenProcessPool:  # a worker died (OOM killer, signal): start a fresh pool once
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(prepare, body, content_type, tenant)

    def warm_up(self) -> None:
        """Start every worker now, so the first requests do not pay for process start-up."""
        if self._pool is not None:
            for future in [self._pool.submit(prepare, b"", PROTOBUF)
                           for _ in range(self.workers)]:
                future.result()

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
