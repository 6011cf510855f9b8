"""Build OTLP protobuf requests from plain Python values, for the collector tests."""
from __future__ import annotations

from datetime import datetime, timezone

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from collector.normalize import NormalizeSettings, normalize_request

TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")
T0 = 1_700_000_000_000_000_000  # ns
KEY = b"test-key-0123456789abcdef-0123456789"
INGEST = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
_next_span = [1]


def set_value(target: AnyValue, value) -> None:
    """Fill an AnyValue from a Python value (None leaves it empty)."""
    if value is None:
        return
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, (list, tuple)):
        target.array_value.SetInParent()
        for item in value:
            set_value(target.array_value.values.add(), item)
    elif isinstance(value, dict):
        target.kvlist_value.SetInParent()
        for key, item in value.items():
            kv = target.kvlist_value.values.add()
            kv.key = key
            set_value(kv.value, item)
    else:
        raise TypeError(value)


def add_attributes(container, attributes: dict) -> None:
    for key, value in attributes.items():
        kv = container.add()
        kv.key = key
        set_value(kv.value, value)


def new_span_id() -> bytes:
    _next_span[0] += 1
    return _next_span[0].to_bytes(8, "big")


def span(attributes: dict | None = None, *, name: str = "chat gpt-4o", span_id: bytes | None = None,
         trace_id: bytes = TRACE_ID, parent: bytes = b"", kind: int = 3, start: int = T0,
         duration_ns: int = 1_500_000_000, status: int = 0, events=(), links=()) -> Span:
    """A span; ``events`` are (name, attributes); ``links`` are (span_id, attributes)."""
    result = Span(trace_id=trace_id, span_id=span_id if span_id is not None else new_span_id(),
                  parent_span_id=parent, name=name, kind=kind, start_time_unix_nano=start,
                  end_time_unix_nano=start + duration_ns)
    result.status.code = status
    add_attributes(result.attributes, attributes or {})
    for event_name, event_attributes in events:
        event = result.events.add(name=event_name, time_unix_nano=start)
        add_attributes(event.attributes, event_attributes)
    for link_span_id, link_attributes in links:
        link = result.links.add(trace_id=trace_id, span_id=link_span_id)
        add_attributes(link.attributes, link_attributes)
    return result


def request(*spans: Span, resource: dict | None = None) -> ExportTraceServiceRequest:
    result = ExportTraceServiceRequest()
    resource_spans = result.resource_spans.add()
    add_attributes(resource_spans.resource.attributes,
                   {"service.name": "checkout"} if resource is None else resource)
    resource_spans.scope_spans.add().spans.extend(spans)
    return result


def settings(**overrides) -> NormalizeSettings:
    return NormalizeSettings(subject_key=KEY, **overrides)


def normalize(*spans: Span, resource: dict | None = None, **overrides):
    return normalize_request(request(*spans, resource=resource), settings(**overrides), INGEST)


def records(*spans: Span, resource: dict | None = None, **overrides) -> list[dict]:
    """Normalize and return the inference rows as dicts (rejections must be none)."""
    batch = normalize(*spans, resource=resource, **overrides)
    assert batch.rejected_spans == 0, batch.rejection_messages
    return batch.inferences.to_pylist()


def record(attributes: dict, **span_fields) -> dict:
    """The single inference record made from one span with these attributes."""
    rows = records(span(attributes, **span_fields))
    assert len(rows) == 1, rows
    return rows[0]
