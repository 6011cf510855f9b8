"""The collector's own health as job metrics, so alerts can watch it like any other figure.

The receiver counts rejected spans and refused requests in its Prometheus
registry (``collector.metrics``). Every minute the server writes this hour's counts
into ``job_metrics`` under the job name ``collector``: ``collector.rejected_spans``
by reason (spans refused inside an accepted batch: OTLP partial success) and
``collector.refused_requests`` by answer (whole requests answered 4xx/5xx or with
a gRPC error). Counters restart with the process, so an hour that spans a restart
counts from the restart on.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from warehouse.jobs.results import replace_windows
from warehouse.jobs.runner import METRICS_SCHEMA, METRICS_TABLE, STEP, Metric, floor_time, metrics_table

ACCEPTED_OUTCOMES = {"ok", "partial", "200", "OK"}


def counter_values(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """{(metric, label value): count} for rejected spans and refused requests."""
    values: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "inferledger_spans_rejected_total":
                values[("collector.rejected_spans", sample.labels["reason"])] = sample.value
            elif sample.name == "inferledger_export_requests_total" and sample.labels["outcome"] not in ACCEPTED_OUTCOMES:
                key = ("collector.refused_requests", f"{sample.labels['transport']}:{sample.labels['outcome']}")
                values[key] = values.get(key, 0.0) + sample.value
    return values


@dataclass
class HealthRecorder:
    """Turns ever-growing counters into per-hour counts.

    The baseline of an hour is what the counters showed at the last recording of the
    hour before, so nothing falls between two hours (a rejection in the last minute
    of an hour counts in the next one).
    """

    data_dir: Path
    registry: CollectorRegistry
    hour: datetime | None = None
    baseline: dict[tuple[str, str], float] = field(default_factory=dict)
    last: dict[tuple[str, str], float] = field(default_factory=dict)

    def record(self, now: datetime | None = None) -> list[Metric]:
        now = now or datetime.now(UTC)
        hour = floor_time(now, "hour")
        current = counter_values(self.registry)
        if hour != self.hour:
            self.hour, self.baseline = hour, self.last
        self.last = current
        window = (hour, hour + STEP["hour"])
        by_label = []
        for (name, label), value in sorted(current.items()):
            count = value - self.baseline.get((name, label), 0.0)
            key = "reason" if name == "collector.rejected_spans" else "answer"
            by_label.append(Metric(window, name, count, {key: label}, verdict="rejecting" if count else "ok"))
        rejected = sum(m.value for m in by_label if m.metric == "collector.rejected_spans")
        metrics = [Metric(window, "collector.rejected_spans", rejected, {"reason": "any"},
                          verdict="rejecting" if rejected else "ok"), *by_label]
        replace_windows(self.data_dir, METRICS_TABLE, "collector", METRICS_SCHEMA, [window],
                        metrics_table("collector", metrics, now))
        return metrics
