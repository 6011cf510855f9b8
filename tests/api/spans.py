"""OTLP spans for the API tests: a model only a test price file prices, HTTP client spans, human reviews."""
from __future__ import annotations

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests.otlp_builders import BASE_TIME_NS, attributes, genai_span

SECOND = 1_000_000_000
PRICES = """
[[model]]
id = "acme/judge"
provider = "acme-ml"
models = ["acme-judge"]
effective_from = 2025-01-01
input_mtok = 1.00
output_mtok = 2.00
"""


def judge(trace_id, span_id, offset_s, **extra) -> Span:
    return genai_span(model="acme-judge", input_tokens=1000, output_tokens=500, trace_id=trace_id, span_id=span_id,
                      start_ns=BASE_TIME_NS + offset_s * SECOND, gen_ai__provider__name="acme-ml", **extra)


def http_client(trace_id, span_id, parent, offset_s, status) -> Span:
    return Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="POST", kind=Span.SPAN_KIND_CLIENT,
                start_time_unix_nano=BASE_TIME_NS + offset_s * SECOND,
                end_time_unix_nano=BASE_TIME_NS + offset_s * SECOND + 10_000_000,
                attributes=attributes({"http.request.method": "POST", "http.response.status_code": status,
                                       "server.address": "api.acme-ml.example"}))


def review(trace_id, span_id, offset_s, parent=b"", link=None, outcome="upheld") -> Span:
    span = Span(trace_id=trace_id, span_id=span_id, parent_span_id=parent, name="review",
                start_time_unix_nano=BASE_TIME_NS + offset_s * SECOND,
                end_time_unix_nano=BASE_TIME_NS + offset_s * SECOND + SECOND,
                attributes=attributes({"inferledger.review.outcome": outcome, "inferledger.review.override": False,
                                       "inferledger.review.reviewer.id": "reviewer-7",
                                       "inferledger.review.duration_s": 30.0}))
    if link:
        span.links.add(trace_id=link[0], span_id=link[1], attributes=attributes({"inferledger.link.type": "review_of"}))
    return span
