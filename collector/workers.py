"""Decode and normalize in worker processes.

Reading protobuf attributes and applying the convention precedence is
CPU-bound Python that holds the GIL (about 25-45 µs per span, see
bench/normalize_micro.py), so one process cannot use a second core. With
``ingest.workers`` > 0 the collector hands each request body to a pool of
processes and keeps only the cheap parts (HTTP, the write-ahead log, landing)
in the main process. ``workers = 0`` normalizes inline, which is simplest to
debug and what tests of the normalization itself use.
"""
from __future__ import annotations

import multiprocessing
import os
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import fields
from datetime import datetime, timezone

from collector.normalize import NormalizedBatch, NormalizeSettings, normalize_protobuf, normalize_request
from collector.otlp_decode import decode_json, decode_protobuf

PROTOBUF = "application/x-protobuf"
DECODERS = {PROTOBUF: decode_protobuf, "application/json": decode_json}
_settings: NormalizeSettings | None = None


def decode_and_normalize(body: bytes, content_type: str, settings: NormalizeSettings | None = None
                         ) -> NormalizedBatch:
    """Body bytes to normalized records; raises ``PermanentError`` for an undecodable body."""
    settings = settings or _settings
    if content_type == PROTOBUF:  # straight from the bytes (the C reader when built)
        return normalize_protobuf(body, settings, datetime.now(timezone.utc))
    request = DECODERS[content_type](body)
    return normalize_request(request, settings, datetime.now(timezone.utc))


def _initialize(settings_kwargs: dict, parent_pid: int) -> None:
    global _settings
    _settings = NormalizeSettings(**settings_kwargs)
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """A collector killed with SIGKILL cannot stop its pool; its workers notice and leave."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(0)


class NormalizerPool:
    """A process pool that runs ``decode_and_normalize``; zero workers means inline."""

    def __init__(self, settings: NormalizeSettings, workers: int):
        self.settings = settings
        self.workers = workers
        self._pool = None
        if workers > 0:
            self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        kwargs = {f.name: getattr(self.settings, f.name) for f in fields(self.settings) if f.init}
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_initialize, initargs=(kwargs, os.getpid()))

    def submit(self, body: bytes, content_type: str) -> Future:
        if self._pool is None:
            future: Future = Future()
            try:
                future.set_result(decode_and_normalize(body, content_type, self.settings))
            except Exception as exc:  # delivered to the caller exactly as the pool would
                future.set_exception(exc)
            return future
        return self._pool_submit(body, content_type)

    def _pool_submit(self, body: bytes, content_type: str) -> Future:
        try:
            return self._pool.submit(decode_and_normalize, body, content_type)
        except BrokenProcessPool:  # a worker died (OOM killer, signal): start a fresh pool once
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(decode_and_normalize, body, content_type)

    def warm_up(self) -> None:
        """Start every worker now, so the first requests do not pay for process start-up."""
        if self._pool is not None:
            for future in [self._pool.submit(decode_and_normalize, b"", PROTOBUF)
                           for _ in range(self.workers)]:
                future.result()

    def shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
