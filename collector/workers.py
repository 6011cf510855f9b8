"""Decode and normalize in worker processes.

Reading protobuf attributes and applying the convention precedence is
CPU-bound work that holds the GIL (6-10 µs per span with the C extension,
about 45 in pure Python, see bench/normalize_micro.py), so one process cannot
use a second core. With
``ingest.workers`` > 0 the collector hands each request body to a pool of
processes and keeps only the cheap parts (HTTP, the write-ahead log, landing)
in the main process. ``workers = 0`` normalizes inline, which is simplest to
debug and what tests of the normalization itself use.

A worker hands back an ``EncodedBatch``: the records already serialized as
write-ahead log frames (``warehouse.encoding``), which cross the process
boundary as plain bytes and which the main process queues without decoding.
How workers are fed, started and replaced: collector/README.md, "Worker processes".
"""
from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import pickle
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, fields
from datetime import datetime, timezone

import pyarrow as pa

from collector.normalize import NormalizedBatch, NormalizeSettings, normalize_protobuf, normalize_request
from collector.otlp_decode import decode_json, decode_protobuf
from collector.tenancy import restrict_to_tenant
from warehouse.encoding import FrameEncoder
from warehouse.wal import EncodedFrame

log = logging.getLogger(__name__)
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


class WorkerDied(RuntimeError):
    """The worker normalizing a request exited (OOM killer, a signal); nothing was stored,
    so the transports answer it as retryable."""


class NormalizerPool:
    """Worker processes, each fed over its own pipe by one thread of the server; zero
    workers means inline.

    Requests wait in one queue and whichever worker is free takes the next. The server's
    side of a request is one queue put (the event loop never writes to a pipe) and, in the
    feeding thread, one write and one read; ``concurrent.futures.ProcessPoolExecutor``
    had a manager and a feeder thread and a wake-up pipe written by the event loop, whose
    writes showed up as a quarter of the event loop's busy time under load. A worker that
    dies fails the request it had and is replaced.

    ``encode`` comes from the storage the frames go to (``Storage.frame_encoder()``).
    """

    def __init__(self, settings: NormalizeSettings, workers: int, encode: FrameEncoder = FrameEncoder()):
        self.settings = settings
        self.workers = workers
        self.encode = encode
        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        worker_args = ({f.name: getattr(settings, f.name) for f in fields(settings) if f.init}, encode, os.getpid())
        self._feeders = [_Feeder(self._requests, worker_args, number) for number in range(workers)]

    def submit(self, body: bytes, content_type: str, tenant: str | None = None) -> Future:
        """A future of the request's ``EncodedBatch``; ``tenant``: the API key's (see collector.tenancy)."""
        future: Future = Future()
        if not self._feeders:
            try:
                future.set_result(prepare(body, content_type, tenant, self.settings, self.encode))
            except Exception as exc:  # delivered to the caller exactly as a worker's would be
                future.set_exception(exc)
            return future
        if self._closed:
            raise RuntimeError("the normalizer pool is shut down")
        self._requests.put((future, body, content_type, tenant))
        return future

    def warm_up(self, timeout: float = 60.0) -> None:
        """Wait until every worker has started, so the first requests do not pay for it."""
        for feeder in self._feeders:
            feeder.ready.wait(timeout)

    def worker_pids(self) -> list[int]:
        return [feeder.process.pid for feeder in self._feeders if feeder.process is not None]

    def shutdown(self) -> None:
        """Finish the requests already queued, then stop every worker."""
        if self._closed:
            return
        self._closed = True
        for _ in self._feeders:
            self._requests.put(None)
        for feeder in self._feeders:
            feeder.thread.join()


class _Feeder:
    """One worker process and the server thread that hands it requests, one at a time.

    ``worker_args``: what ``_serve`` gets after its pipe (settings, encoder, the server's pid)."""

    def __init__(self, requests: queue.SimpleQueue, worker_args: tuple, number: int):
        self.requests, self.worker_args = requests, worker_args
        self.ready = threading.Event()
        self.process = None
        self.connection = None
        self.thread = threading.Thread(target=self._run, name=f"normalizer-{number}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        self._start_worker()
        while (item := self.requests.get()) is not None:
            future, request = item[0], item[1:]
            if future.set_running_or_notify_cancel():
                self._handle(future, request)
        self._stop_worker()

    def _handle(self, future: Future, request: tuple) -> None:
        try:
            self.connection.send_bytes(pickle.dumps(request, pickle.HIGHEST_PROTOCOL))
            succeeded, value = pickle.loads(self.connection.recv_bytes())
        except (EOFError, OSError) as exc:
            future.set_exception(WorkerDied(f"normalizer worker {self.process.pid} exited "
                                            f"(code {self.process.exitcode}): {exc!r}"))
            self._stop_worker()
            self._start_worker()
            return
        if succeeded:
            future.set_result(value)
        else:
            future.set_exception(value)

    def _start_worker(self) -> None:
        context = worker_context()
        ours, theirs = context.Pipe()
        self.process = context.Process(target=_serve, name=self.thread.name, daemon=True,
                                       args=(theirs, *self.worker_args))
        self.process.start()
        theirs.close()
        self.connection = ours
        try:
            self.connection.recv_bytes()  # initialized
        except EOFError:
            log.error("normalizer worker %s exited while starting (code %s)", self.process.pid,
                      self.process.join(5) or self.process.exitcode)
        self.ready.set()

    def _stop_worker(self) -> None:
        self.connection.close()  # the worker reads EOF and leaves
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


def _serve(connection, settings_kwargs: dict, encode: FrameEncoder, server_pid: int) -> None:
    """A worker's life: answer (body, content type, tenant) requests until the server hangs up."""
    _initialize(settings_kwargs, encode, server_pid)
    connection.send_bytes(b"ready")
    while True:
        try:
            body, content_type, tenant = pickle.loads(connection.recv_bytes())
        except EOFError:
            return
        try:
            reply = (True, prepare(body, content_type, tenant))
        except Exception as exc:  # the caller gets it as it was raised (CollectorError subclasses)
            reply = (False, exc)
        try:
            message = pickle.dumps(reply, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            message = pickle.dumps((False, RuntimeError(f"could not send the result back: {exc!r}")))
        connection.send_bytes(message)
