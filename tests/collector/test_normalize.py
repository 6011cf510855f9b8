"""normalize_request: validation, partial rejection, HTTP attempts, content, pseudonyms, shape."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from collector.normalize import NormalizeSettings, normalize_request
from collector.otlp_decode import decode_json
from collector.pseudonymize import pseudonymize
from tests.collector.builders import (INGEST, KEY, T0, TRACE_ID, normalize, record, records, request,
                                      settings, span)
from warehouse.record import HTTP_ATTEMPT_SCHEMA, RECORD_SCHEMA

ALL_FORMS = Path(__file__).resolve().parents[1] / "data" / "otlp_json" / "all_value_forms.json"
CHAT = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5}


def test_batches_have_the_warehouse_schemas_even_when_empty():
    for batch in (normalize(span(CHAT)), normalize_request(request(), settings(), INGEST)):
        assert batch.inferences.schema.equals(RECORD_SCHEMA, check_metadata=True)
        assert batch.http_attempts.schema.equals(HTTP_ATTEMPT_SCHEMA, check_metadata=True)


def test_identity_times_and_counts():
    parent = bytes.fromhex("ABCDEF0123456789")
    batch = normalize(span(CHAT, span_id=bytes.fromhex("00000000000000FF"), parent=parent,
                           start=T0 + 1999, duration_ns=2_500_000))
    [row] = batch.inferences.to_pylist()
    assert (row["trace_id"], row["span_id"], row["parent_span_id"]) == (
        TRACE_ID.hex(), "00000000000000ff", "abcdef0123456789")
    assert row["start_time"] == datetime.fromtimestamp(T0 // 10**9, timezone.utc).replace(microsecond=1)
    assert row["duration_ms"] == 2.5
    assert row["ingest_time"] == INGEST
    assert (batch.spans_received, batch.rejected_spans, batch.dropped_spans) == (1, 0, 0)


def test_naive_ingest_time_is_utc():
    batch = normalize_request(request(span(CHAT)), settings(), datetime(2026, 1, 2, 3, 4, 5))
    assert batch.inferences.to_pylist()[0]["ingest_time"] == INGEST


def test_resource_columns_and_span_allocation_keys_win():
    resource = {"service.name": "checkout", "service.version": "1.4.2",
                "deployment.environment": "staging", "inferledger.tenant.id": "acme",
                "inferledger.feature.name": "search", "user.id": "resource-user",
                "telemetry.sdk.name": "opentelemetry"}
    rows = records(span(CHAT), span({**CHAT, "inferledger.tenant.id": "globex"}), resource=resource)
    assert [(r["tenant"], r["feature"]) for r in rows] == [("acme", "search"), ("globex", "search")]
    row = rows[0]
    assert (row["service_name"], row["service_version"], row["environment"]) == (
        "checkout", "1.4.2", "staging")
    assert json.loads(row["resource"]) == {"telemetry.sdk.name": "opentelemetry",
                                           "user.id": pseudonymize("resource-user", KEY)}


def test_environment_name_beats_the_older_attribute():
    [row] = records(span(CHAT), resource={"deployment.environment.name": "prod",
                                          "deployment.environment": "old"})
    assert (row["environment"], row["resource"]) == ("prod", None)


def test_mapped_attributes_are_not_repeated_in_the_json():
    row = record({**CHAT, "gen_ai.response.model": "gpt-4o-2024-08-06", "gen_ai.response.id": "r1",
                  "gen_ai.usage.total_tokens": 15, "server.address": "api.openai.com"})
    assert json.loads(row["attributes"]) == {"gen_ai.response.id": "r1",
                                             "server.address": "api.openai.com"}


BAD_SPANS = [
    (dict(trace_id=bytes(15)), "trace_id must be 16 bytes (32 hex digits), got 15"),
    (dict(trace_id=bytes(16)), "trace_id is all zero"),
    (dict(span_id=bytes(8)), "span_id is all zero"),
    (dict(span_id=b"\x01\x02"), "span_id must be 8 bytes (16 hex digits), got 2"),
    (dict(parent=b"\x01\x02\x03"), "parent_span_id must be empty or 8 bytes, got 3"),
    (dict(duration_ns=-5), "is before start_time_unix_nano"),
    (dict(start=0, duration_ns=0), "start_time_unix_nano is missing"),
    (dict(attributes={**CHAT, "gen_ai.usage.input_tokens": -3}), "input_tokens = -3 is outside 0..10000000"),
    (dict(attributes={**CHAT, "gen_ai.usage.output_tokens": 10**12}), "output_tokens = 1000000000000 is outside"),
    (dict(attributes={**CHAT, "gen_ai.usage.total_tokens": -1}), "total tokens = -1 is outside"),
    (dict(attributes={"langfuse.observation.type": "generation",
                      "langfuse.observation.usage_details": '{"input": -9}'}), "input_tokens = -9"),
]


@pytest.mark.parametrize("fields,problem", BAD_SPANS, ids=[p for _, p in BAD_SPANS])
def test_a_bad_span_is_rejected_and_its_neighbours_kept(fields, problem):
    fields = dict(fields)
    bad = span(fields.pop("attributes", CHAT), name="bad one", **fields)
    batch = normalize(span(CHAT), bad, span(CHAT))
    assert (batch.inferences.num_rows, batch.rejected_spans, batch.spans_received) == (2, 1, 3)
    [message] = batch.rejection_messages
    assert message.startswith(f"span {bad.span_id.hex() or '(empty id)'} 'bad one': ")
    assert problem in message


def test_rejection_messages_are_capped_but_all_rejections_counted():
    batch = normalize(*[span(CHAT, trace_id=bytes(3)) for _ in range(9)], span(CHAT))
    assert (batch.rejected_spans, len(batch.rejection_messages), batch.inferences.num_rows) == (9, 5, 1)


def test_max_tokens_is_a_setting():
    batch = normalize(span({**CHAT, "gen_ai.usage.input_tokens": 500}), max_tokens=100)
    assert batch.rejected_spans == 1 and "outside 0..100" in batch.rejection_messages[0]


CONTENT = {
    "gen_ai.input.messages": '[{"role":"user","parts":[{"type":"text","content":"SECRET-1"}]}]',
    "gen_ai.output.messages": "SECRET-2", "gen_ai.system_instructions": "SECRET-3",
    "gen_ai.prompt.0.content": "SECRET-4", "gen_ai.completion.0.content": "SECRET-5",
    "llm.input_messages.0.message.content": "SECRET-6", "llm.output_messages.0.message.content": "SECRET-7",
    "input.value": "SECRET-8", "output.value": "SECRET-9", "langfuse.observation.input": "SECRET-10",
    "langfuse.observation.output": "SECRET-11", "traceloop.entity.input": "SECRET-12",
    "traceloop.entity.output": "SECRET-13", "gen_ai.tool.call.arguments": "SECRET-14",
    "gen_ai.tool.call.result": "SECRET-15", "llm.prompts.0.prompt.text": "SECRET-16",
    "embedding.embeddings.0.embedding.text": "SECRET-17",
    "gen_ai.headers": "{'Authorization': 'Bearer SECRET-18'}",
}


def test_content_is_dropped_by_default():
    row = record({**CHAT, **CONTENT, "app.kept": "yes"})
    assert row["attributes"] == '{"app.kept":"yes"}'


def test_content_is_kept_when_capture_is_on():
    [row] = records(span({**CHAT, **CONTENT}), capture_content=True)
    assert json.loads(row["attributes"]) == CONTENT


def test_long_values_are_truncated_with_a_marker():
    [row] = records(span({**CHAT, "app.note": "é" * 100, "app.list": ["x" * 300]}),
                    max_attribute_value_bytes=64)
    attributes = json.loads(row["attributes"])
    assert attributes["app.note"] == "é" * 32 + "...[truncated 136 bytes]"
    assert attributes["app.list"] == ["x" * 64 + "...[truncated 236 bytes]"]


def test_no_raw_personal_identifier_reaches_the_batch():
    secrets = {"inferledger.subject.id": "SUBJ-4471", "user.id": "USER-9921",
               "enduser.id": "END-7781", "inferledger.review.reviewer.id": "REVIEWER-31",
               "user.email": "someone@example.com", "gen_ai.user": "GENAI-USER-5"}
    batch = normalize(span({**CHAT, **secrets}), span({"inferledger.review.outcome": "upheld",
                                                       "inferledger.review.reviewer.id": "REVIEWER-31"}),
                      resource={"service.name": "s", "enduser.id": "END-7781"})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.inferences.schema) as writer:
        writer.write_batch(batch.inferences)
    stored = sink.getvalue().to_pybytes()
    for raw in secrets.values():
        assert raw.encode() not in stored
    first, review = batch.inferences.to_pylist()
    assert first["subject_id"] == pseudonymize("SUBJ-4471", KEY)
    assert first["user_id"] == pseudonymize("USER-9921", KEY)
    assert json.loads(first["attributes"]) == {"user.email": pseudonymize("someone@example.com", KEY)}
    assert review["reviewer_id"] == pseudonymize("REVIEWER-31", KEY)


def test_pseudonyms_depend_on_the_key():
    attributes = {**CHAT, "inferledger.subject.id": "s-1"}
    one = records(span(attributes))[0]["subject_id"]
    other = normalize_request(request(span(attributes)), NormalizeSettings(subject_key=b"other key"),
                              INGEST).inferences.to_pylist()[0]["subject_id"]
    assert one != other and len(one) == len(other) == 64


def test_settings_need_a_key_and_are_immutable():
    with pytest.raises(ValueError):
        NormalizeSettings(subject_key=b"")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings().capture_content = True


def test_http_client_spans_become_attempt_rows():
    parent = bytes.fromhex("00000000000000aa")
    first = span({"http.request.method": "POST", "http.response.status_code": 429,
                  "server.address": "api.openai.com", "error.type": "429"},
                 name="POST", parent=parent, duration_ns=4_000_000)
    second = span({"http.method": "POST", "http.status_code": 200, "net.peer.name": "api.openai.com",
                   "http.request.resend_count": 1}, name="POST", parent=parent)
    batch = normalize(first, second)
    assert batch.inferences.num_rows == 0 and batch.dropped_spans == 0
    rows = batch.http_attempts.to_pylist()
    assert [(r["status_code"], r["resend_count"], r["error_type"], r["server_address"]) for r in rows] == [
        (429, 0, "429", "api.openai.com"), (200, 1, None, "api.openai.com")]
    assert rows[0]["parent_span_id"] == "00000000000000aa" and rows[0]["duration_ms"] == 4.0
    assert rows[0]["ingest_time"] == INGEST


def test_http_spans_are_dropped_when_not_kept_or_not_client():
    client = span({"http.request.method": "GET"}, name="GET")
    server = span({"http.request.method": "GET", "http.response.status_code": 200}, kind=2)
    assert normalize(client, keep_http_spans=False).dropped_spans == 1
    batch = normalize(server)
    assert (batch.http_attempts.num_rows, batch.dropped_spans) == (0, 1)


def test_other_spans_are_dropped_not_rejected():
    batch = normalize(span({"db.system": "postgresql"}, name="SELECT"), span(CHAT))
    assert (batch.dropped_spans, batch.rejected_spans, batch.inferences.num_rows) == (1, 0, 1)


def test_json_value_forms_survive_into_the_attributes_json():
    batch = normalize_request(decode_json(ALL_FORMS.read_bytes()), settings(), INGEST)
    [row] = batch.inferences.to_pylist()
    assert json.loads(row["attributes"]) == {
        "app.flag": True, "app.ratio": 0.25, "app.nan": "nan", "app.inf": "-inf",
        "app.blob": "aGVsbG8=", "app.list": ["a", 2, None], "app.map": {"k": False},
        "app.empty": None, "app.null": None}
    assert (row["input_tokens"], row["cache_read_tokens"], row["status"], row["error_type"]) == (
        1200, 1000, "error", "ValueError")
    assert (row["retry_of_span_id"], row["environment"], row["trace_id"]) == (
        "00000000000000a1", "prod", "5b8efff798038103d269b633813fc60c")


def test_the_official_example_server_span_is_dropped():
    body = ALL_FORMS.with_name("otlp-example-trace.json").read_bytes()
    batch = normalize_request(decode_json(body), settings(), INGEST)
    assert (batch.spans_received, batch.dropped_spans, batch.inferences.num_rows) == (1, 1, 0)
