"""Build OTLP protobuf requests by hand, for tests that need exact control of the wire form.

Tests that can use the real OpenTelemetry SDK do; these builders are for the
cases an SDK will not produce (bad ids, absurd token counts, every AnyValue form).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

BASE_TIME_NS = 1_763_900_000_000_000_000  # 2025-11-23T12:13:20Z


def any_value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    if isinstance(value, (list, tuple)):
        return AnyValue(array_value=ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, bytes):
        return AnyValue(bytes_value=value)
    return AnyValue(string_value=str(value))


def attributes(values: Mapping[str, Any]) -> list[KeyValue]:
    return [KeyValue(key=key, value=any_value(value)) for key, value in values.items()]


def genai_span(
    model: str = "gpt-4o",
    input_tokens: int = 100,
    output_tokens: int = 20,
    trace_id: bytes | None = None,
    span_id: bytes | None = None,
    start_ns: int = BASE_TIME_NS,
    duration_ns: int = 250_000_000,
    error: str | None = None,
    **extra: Any,
) -> Span:
    """One OTel GenAI chat span (current attribute names)."""
    values = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": model,
        "gen_ai.response.model": model,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
    }
    values.update({key.replace("__", "."): value for key, value in extra.items()})
    span = Span(
        trace_id=trace_id or os.urandom(16),
        span_id=span_id or os.urandom(8),
        name=f"chat {model}",
        kind=Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + duration_ns,
        attributes=attributes(values),
    )
    if error:
        span.status.CopyFrom(Status(code=Status.STATUS_CODE_ERROR, message=error))
        span.attributes.append(KeyValue(key="error.type", value=AnyValue(string_value=error)))
    return span


def export_request(spans: list[Span], service: str = "test-service", **resource: Any) -> ExportTraceServiceRequest:
    resource_values = {"service.name": service, **{k.replace("__", "."): v for k, v in resource.items()}}
    request = ExportTraceServiceRequest()
    resource_spans = ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])
    resource_spans.resource.attributes.extend(attributes(resource_values))
    request.resource_spans.append(resource_spans)
    return request
