"""The one export function both transports call.

OTLP/HTTP and OTLP/gRPC differ only in how bytes arrive and how the answer is
encoded; everything else (capacity check, normalization, durable append,
partial success) happens here, once. This is the shape of the OpenTelemetry
Collector's ``Receiver.Export`` behind ``handleTraces`` and its gRPC service.
"""
from __future__ import annotations

import concurrent.futures
from dataclasses import dataclass, field
from typing import Protocol

from collector.errors import RetryableError
from collector.metrics import PipelineMetrics
from collector.workers import EncodedBatch, NormalizerPool
from warehouse.wal import EncodedFrame

MAX_MESSAGE_CHARS = 2000


class Sink(Protocol):
    """What the receiver needs from storage (``warehouse.storage.Storage``)."""

    def append_encoded(self, frame: EncodedFrame) -> concurrent.futures.Future: ...

    def can_accept(self) -> tuple[bool, str]: ...


@dataclass
class ExportOutcome:
    """What to tell the client: how many spans were refused and why (OTLP partial success)."""

    rejected: int = 0
    message: str = ""
    rows_by_dataset: dict[str, int] = field(default_factory=dict)
    durable: list[concurrent.futures.Future] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return sum(self.rows_by_dataset.values())

    def wait_durable(self, timeout: float | None = None) -> None:
        for future in self.durable:
            future.result(timeout)


class Receiver:
    def __init__(self, sink: Sink, normalizers: NormalizerPool, metrics: PipelineMetrics, retry_after_s: int = 5):
        self.sink = sink
        self.normalizers = normalizers
        self.metrics = metrics
        self.retry_after_s = retry_after_s

    def check_capacity(self) -> None:
        """Refuse before decoding when the log is over its bound or the disk is full."""
        ok, reason = self.sink.can_accept()
        if not ok:  # the transports count the refusal under their own outcome label
            raise RetryableError(f"collector is over capacity ({reason}); retry later", self.retry_after_s)

    def normalize(self, body: bytes, content_type: str, tenant: str | None = None) -> concurrent.futures.Future:
        """Decode, normalize and serialize ``body`` (in a worker process when configured);
        a future of the ``EncodedBatch``. ``tenant``: the one the API key may write."""
        return self.normalizers.submit(body, content_type, tenant)

    def submit(self, batch: EncodedBatch, transport: str) -> ExportOutcome:
        """Hand normalized records to the write-ahead log; the caller waits on ``durable``.

        Capacity was checked before decoding; a full write-ahead log queue still fails the
        ``durable`` futures, which the transports answer as retryable.
        """
        self.metrics.spans_received.labels(transport=transport).inc(batch.spans_received)
        outcome = ExportOutcome(rejected=batch.rejected_spans)
        if batch.rejected_spans:
            self.metrics.spans_rejected.labels(reason="invalid").inc(batch.rejected_spans)
            outcome.message = _join_messages(batch.rejected_spans, batch.rejection_messages)
        if batch.dropped_spans:
            self.metrics.spans_dropped.inc(batch.dropped_spans)
        for frame in batch.frames:
            outcome.durable.append(self.sink.append_encoded(frame))
            outcome.rows_by_dataset[frame.dataset] = frame.rows
        return outcome

    def acknowledge(self, outcome: ExportOutcome, transport: str) -> None:
        """Count what became durable; called once the write-ahead log confirmed the fsync."""
        for dataset, rows in outcome.rows_by_dataset.items():
            self.metrics.spans_accepted.labels(dataset=dataset).inc(rows)
        self.metrics.requests.labels(transport=transport, outcome="partial" if outcome.rejected else "ok").inc()


def _join_messages(rejected: int, messages: list[str]) -> str:
    text = f"{rejected} span(s) rejected: " + "; ".join(messages)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - 3] + "..."
    return text


def wrap_storage_failure(exc: BaseException) -> RetryableError:
    """A write-ahead log failure (disk full, I/O error) is retryable: nothing was acknowledged."""
    return RetryableError(f"could not persist spans: {exc}")
