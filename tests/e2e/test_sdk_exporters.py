"""The real OpenTelemetry Python SDK and its OTLP exporters against a running collector."""
from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tests.conftest import wait_for_rows

RESOURCE = Resource.create(
    {"service.name": "fraud-api", "service.version": "2.3.1", "deployment.environment.name": "prod",
     "inferledger.tenant.id": "acme"}
)


def emit_inferences(provider: TracerProvider) -> None:
    """Three inference spans (one failing, one a decision) and one plain span that is not an inference."""
    tracer = provider.get_tracer("app")
    with tracer.start_as_current_span("handle request", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
                "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
                "gen_ai.usage.input_tokens": 1500, "gen_ai.usage.output_tokens": 200,
                "gen_ai.usage.cache_read.input_tokens": 1024, "gen_ai.usage.reasoning.output_tokens": 50,
                "inferledger.feature.name": "support-reply",
            })
        with tracer.start_as_current_span("chat claude", kind=SpanKind.CLIENT) as span:
            span.set_attributes({
                "gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-sonnet-4-5", "error.type": "overloaded_error",
            })
            span.set_status(Status(StatusCode.ERROR, "overloaded"))
        with tracer.start_as_current_span("predict fraud", kind=SpanKind.INTERNAL) as span:
            span.set_attributes({
                "inferledger.model.name": "fraud-gbm", "inferledger.model.version": "v3",
                "inferledger.decision.label": "decline", "inferledger.decision.score": 0.93,
                "inferledger.decision.reasons": ["velocity", "new_device"],
                "inferledger.subject.id": "customer-4711",
            })
    provider.force_flush()


def assert_rows(data_dir):
    rows = wait_for_rows(data_dir, "select * from inferences order by start_time", 3)
    assert len(rows) == 3
    by_model = {r["request_model"] or r["model_version"]: r for r in rows}
    chat = by_model["gpt-4o"]
    assert chat["provider"] == "openai" and chat["response_model"] == "gpt-4o-2024-08-06"
    assert (chat["input_tokens"], chat["output_tokens"], chat["cache_read_tokens"], chat["reasoning_tokens"]) == (
        1500, 200, 1024, 50)
    assert chat["service_name"] == "fraud-api" and chat["environment"] == "prod" and chat["tenant"] == "acme"
    assert chat["feature"] == "support-reply" and chat["status"] == "ok" and chat["convention"] == "otel_genai"
    failed = [r for r in rows if r["provider"] == "anthropic"][0]
    assert failed["status"] == "error" and failed["error_type"] == "overloaded_error"
    decision = [r for r in rows if r["decision_label"]][0]
    assert decision["decision_label"] == "decline" and decision["decision_score"] == pytest.approx(0.93)
    assert decision["decision_reasons"] == ["velocity", "new_device"]
    assert decision["model_version"] == "v3" and decision["convention"] == "inferledger"
    assert decision["subject_id"] and "customer-4711" not in decision["subject_id"]


def test_http_protobuf_exporter(collector):
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(HttpExporter(endpoint=collector.http_url + "/v1/traces")))
    emit_inferences(provider)
    assert_rows(collector.data_dir)
    provider.shutdown()


def test_http_exporter_with_gzip(collector):
    exporter = HttpExporter(endpoint=collector.http_url + "/v1/traces", compression=Compression.Gzip)
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emit_inferences(provider)
    assert_rows(collector.data_dir)
    provider.shutdown()


def test_grpc_exporter(collector):
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(GrpcExporter(endpoint=collector.grpc_target, insecure=True)))
    emit_inferences(provider)
    assert_rows(collector.data_dir)
    provider.shutdown()


def test_grpc_exporter_with_gzip(collector):
    from grpc import Compression as GrpcCompression

    exporter = GrpcExporter(endpoint=collector.grpc_target, insecure=True, compression=GrpcCompression.Gzip)
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    emit_inferences(provider)
    assert_rows(collector.data_dir)
    provider.shutdown()


def test_retried_export_appears_once(collector):
    """Exporters retry; a span received twice (same trace_id and span_id) is one row."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=RESOURCE)
    provider.add_span_processor(SimpleSpanProcessor(memory))
    emit_inferences(provider)
    spans = memory.get_finished_spans()
    http = HttpExporter(endpoint=collector.http_url + "/v1/traces")
    grpc_exporter = GrpcExporter(endpoint=collector.grpc_target, insecure=True)
    assert http.export(spans) == SpanExportResult.SUCCESS
    assert grpc_exporter.export(spans) == SpanExportResult.SUCCESS
    assert http.export(spans) == SpanExportResult.SUCCESS
    assert_rows(collector.data_dir)
    import time

    time.sleep(1.0)  # let every copy land before counting
    from warehouse.catalog import query

    assert query(collector.data_dir, "select count(*) as n from inferences").to_pylist() == [{"n": 3}]
