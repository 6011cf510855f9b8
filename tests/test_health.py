"""The collector's rejections become job metrics that alerts can watch."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from inferledger.health import HealthRecorder
from tests.otlp_builders import export_request, genai_span
from warehouse.catalog import query

PROTO = {"Content-Type": "application/x-protobuf"}


def rejected(data_dir, hour_start):
    return {(row["metric"], row["labels"]): (row["value"], row["verdict"]) for row in query(
        data_dir, "SELECT metric, labels, value, verdict FROM job_metrics WHERE job = 'collector' AND window_start = ?",
        [hour_start]).to_pylist()}


def test_rejected_spans_and_refused_requests_are_counted_per_hour(collector):
    recorder = HealthRecorder(collector.data_dir, collector.pipeline.receiver.metrics.registry)
    now = datetime(2026, 11, 23, 10, 15, tzinfo=UTC)
    recorder.record(now)
    assert rejected(collector.data_dir, now.replace(minute=0))[("collector.rejected_spans", '{"reason": "any"}')] \
        == (0.0, "ok")

    batch = export_request([genai_span(input_tokens=10), genai_span(input_tokens=-5), genai_span(input_tokens=-1)])
    assert httpx.post(collector.http_url + "/v1/traces", content=batch.SerializeToString(), headers=PROTO).status_code == 200
    assert httpx.post(collector.http_url + "/v1/traces", content=b"not protobuf", headers=PROTO).status_code == 400
    recorder.record(now + timedelta(minutes=1))
    figures = rejected(collector.data_dir, now.replace(minute=0))
    assert figures[("collector.rejected_spans", '{"reason": "any"}')] == (2.0, "rejecting")
    assert figures[("collector.rejected_spans", '{"reason": "invalid"}')] == (2.0, "rejecting")
    assert figures[("collector.refused_requests", '{"answer": "http:400"}')] == (1.0, "rejecting")

    # the next hour starts from what the counters showed at the last recording
    later = now + timedelta(hours=1)
    recorder.record(later)
    assert rejected(collector.data_dir, later.replace(minute=0))[("collector.rejected_spans", '{"reason": "any"}')] \
        == (0.0, "ok")
