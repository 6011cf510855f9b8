"""Prometheus metrics for the pipeline itself (not for the inferences it carries).

One registry per running collector, so tests can start several in one process.
Counters are per event class, never a log line per span.
"""
from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily


class PipelineMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.spans_received = Counter(
            "inferledger_spans_received", "Spans received in export requests.", ["transport"], registry=self.registry
        )
        self.spans_accepted = Counter(
            "inferledger_spans_accepted", "Spans durably written, by dataset.", ["dataset"], registry=self.registry
        )
        self.spans_rejected = Counter(
            "inferledger_spans_rejected", "Spans refused, by reason.", ["reason"], registry=self.registry
        )
        self.spans_dropped = Counter(
            "inferledger_spans_dropped", "Valid spans that are neither inferences nor kept HTTP attempts.",
            registry=self.registry,
        )
        self.requests = Counter(
            "inferledger_export_requests", "Export requests by transport and outcome.", ["transport", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "inferledger_export_request_seconds", "Time from request to durable answer.", ["transport"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )

    def add_gauges(self, read_stats: Callable[[], dict[str, float]]) -> None:
        """Expose storage statistics (log bytes, flush lag, segments) as gauges read at scrape time."""
        self.registry.register(_StatsCollector(read_stats))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StatsCollector:
    def __init__(self, read_stats: Callable[[], dict[str, float]]):
        self._read_stats = read_stats

    def collect(self):
        for name, value in sorted(self._read_stats().items()):
            if isinstance(value, (int, float)):
                yield GaugeMetricFamily(f"inferledger_storage_{name}", f"Storage statistic {name}.", value=value)
