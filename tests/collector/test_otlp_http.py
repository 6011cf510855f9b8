"""OTLP/HTTP receiver answers, end to end against a running collector."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from inferledger.app import RunningServer
from tests.conftest import make_config, wait_for_rows
from tests.otlp_builders import export_request, genai_span

# A copy of ../shared/reference/otlp-example-trace.json (opentelemetry-proto examples/trace.json).
EXAMPLE = Path(__file__).resolve().parents[1] / "data" / "otlp_json" / "otlp-example-trace.json"
PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def post(server, body: bytes, headers: dict, path: str = "/v1/traces") -> httpx.Response:
    return httpx.post(server.http_url + path, content=body, headers=headers, timeout=10)


def example_with_genai() -> dict:
    """The official example payload, with GenAI attributes added so it becomes an inference."""
    payload = json.loads(EXAMPLE.read_text())
    span = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["attributes"] += [
        {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
        {"key": "gen_ai.provider.name", "value": {"stringValue": "openai"}},
        {"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}},
        {"key": "gen_ai.usage.input_tokens", "value": {"intValue": "1200"}},
        {"key": "gen_ai.usage.output_tokens", "value": {"intValue": 80}},
    ]
    return payload


def test_protobuf_export_lands_one_row_per_inference(collector):
    request = export_request([genai_span(model="gpt-4o-mini", input_tokens=7, output_tokens=3) for _ in range(5)])
    reply = post(collector, request.SerializeToString(), PROTO)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/x-protobuf"
    parsed = ExportTraceServiceResponse.FromString(reply.content)
    assert not parsed.HasField("partial_success")
    rows = wait_for_rows(collector.data_dir, "select * from inferences", 5)
    assert {(r["response_model"], r["input_tokens"], r["output_tokens"]) for r in rows} == {("gpt-4o-mini", 7, 3)}


def test_official_example_ingests_as_json_and_as_protobuf(collector):
    reply = post(collector, EXAMPLE.read_bytes(), JSON)
    assert reply.status_code == 200 and reply.json() == {}
    # A plain server span is not an inference: accepted, counted as dropped, not stored.
    assert "inferledger_spans_dropped_total 1.0" in httpx.get(collector.http_url + "/metrics").text

    as_json = json.dumps(example_with_genai()).encode()
    assert post(collector, as_json, JSON).status_code == 200
    from collector.otlp_decode import decode_json

    as_proto = decode_json(as_json)
    as_proto.resource_spans[0].scope_spans[0].spans[0].span_id = bytes.fromhex("00000000000000aa")
    assert post(collector, as_proto.SerializeToString(), PROTO).status_code == 200
    rows = wait_for_rows(collector.data_dir, "select * from inferences order by span_id", 2)
    assert [r["span_id"] for r in rows] == ["00000000000000aa", "eee19b7ec3c1b174"]
    assert {r["trace_id"] for r in rows} == {"5b8efff798038103d269b633813fc60c"}
    assert rows[1]["parent_span_id"] == "eee19b7ec3c1b173"
    assert rows[1]["service_name"] == "my.service" and rows[1]["input_tokens"] == 1200


def test_gzip_protobuf_and_json(collector):
    request = export_request([genai_span()])
    gz = {"Content-Encoding": "gzip"}
    assert post(collector, gzip.compress(request.SerializeToString()), {**PROTO, **gz}).status_code == 200
    assert post(collector, gzip.compress(json.dumps(example_with_genai()).encode()), {**JSON, **gz}).status_code == 200
    wait_for_rows(collector.data_dir, "select * from inferences", 2)


def test_partial_success_keeps_good_spans(collector):
    good = [genai_span(input_tokens=10) for _ in range(3)]
    bad_tokens = genai_span(input_tokens=-5)
    bad_id = genai_span(span_id=b"\x01\x02\x03")
    reply = post(collector, export_request(good + [bad_tokens, bad_id]).SerializeToString(), PROTO)
    assert reply.status_code == 200
    parsed = ExportTraceServiceResponse.FromString(reply.content)
    assert parsed.partial_success.rejected_spans == 2
    assert "2 span(s) rejected" in parsed.partial_success.error_message
    rows = wait_for_rows(collector.data_dir, "select * from inferences", 3)
    assert len(rows) == 3


def test_partial_success_in_json_uses_int64_string(collector):
    payload = example_with_genai()
    span = payload["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    bad = json.loads(json.dumps(span))
    bad["spanId"] = "abcd"  # wrong length
    payload["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad)
    reply = post(collector, json.dumps(payload).encode(), JSON)
    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["partialSuccess"]["rejectedSpans"] == "1"
    assert body["partialSuccess"]["errorMessage"]
    wait_for_rows(collector.data_dir, "select * from inferences", 1)


@pytest.mark.parametrize(
    "body, headers, status, fragment",
    [
        (b"\x0a\xff\xff\xff", PROTO, 400, "protobuf"),
        (b'{"resourceSpans": [', JSON, 400, "JSON"),
        (b"not gzip at all", {**PROTO, "Content-Encoding": "gzip"}, 400, "gzip"),
        (b"{}", {"Content-Type": "text/plain"}, 415, "Content-Type"),
        (b"{}", {}, 415, "Content-Type"),
        (b"{}", {**JSON, "Content-Encoding": "br"}, 415, "Content-Encoding"),
    ],
)
def test_bad_requests_get_clear_4xx(collector, body, headers, status, fragment):
    reply = post(collector, body, headers)
    assert reply.status_code == status
    if headers.get("Content-Type") not in ("application/json", "application/x-protobuf"):
        assert reply.headers["content-type"].startswith("text/plain")
        assert fragment in reply.text
        return
    if headers.get("Content-Type") == "application/json":
        message = reply.json()["message"]
    else:
        message = status_pb2.Status.FromString(reply.content).message
    assert fragment.lower() in message.lower()


def test_body_and_gzip_bomb_limits(tmp_path):
    config = make_config(tmp_path / "data", ingest__max_body_bytes=64 * 1024)
    with RunningServer(config) as server:
        big = export_request([genai_span(**{"app__blob": "x" * 100_000})]).SerializeToString()
        reply = post(server, big, PROTO)
        assert reply.status_code == 413
        assert "limit" in status_pb2.Status.FromString(reply.content).message
        bomb = gzip.compress(b"\x00" * 50_000_000)  # ~50 KB on the wire, 50 MB inflated
        assert len(bomb) < 64 * 1024
        reply = post(server, bomb, {**PROTO, "Content-Encoding": "gzip"})
        assert reply.status_code == 413
        assert "decompressed" in status_pb2.Status.FromString(reply.content).message


def test_huge_attribute_values_are_truncated_not_refused(collector):
    span = genai_span(**{"app__note": "y" * 200_000})
    reply = post(collector, export_request([span]).SerializeToString(), PROTO)
    assert reply.status_code == 200
    rows = wait_for_rows(collector.data_dir, "select attributes from inferences", 1)
    assert len(rows[0]["attributes"]) < 20_000


def test_backpressure_answers_503_with_retry_after(tmp_path):
    config = make_config(tmp_path / "data", storage__min_free_bytes=1 << 62, ingest__retry_after_s=7)
    with RunningServer(config) as server:
        reply = post(server, export_request([genai_span()]).SerializeToString(), PROTO)
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "7"
        assert "capacity" in status_pb2.Status.FromString(reply.content).message
        ready = httpx.get(server.http_url + "/readyz")
        assert ready.status_code == 503


@pytest.mark.parametrize("path", ["/v1/logs", "/v1/metrics"])
def test_logs_and_metrics_are_accepted_and_discarded(collector, path):
    reply = post(collector, b"", PROTO, path)
    assert reply.status_code == 200 and reply.headers["content-type"] == "application/x-protobuf"
    reply = post(collector, b"{}", JSON, path)
    assert reply.status_code == 200 and reply.json() == {}


def test_operations_endpoints(collector):
    assert httpx.get(collector.http_url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(collector.http_url + "/readyz").status_code == 200
    post(collector, export_request([genai_span()]).SerializeToString(), PROTO)
    metrics = httpx.get(collector.http_url + "/metrics").text
    assert 'inferledger_spans_received_total{transport="http"} 1.0' in metrics
    assert 'inferledger_spans_accepted_total{dataset="inferences"} 1.0' in metrics
    assert "inferledger_storage_" in metrics
