"""OTLP decoding: protobuf and JSON bodies, and the errors clients get back."""
from __future__ import annotations

import base64
import copy
import json
import random
import re
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from collector.errors import PermanentError
from collector.normalize import normalize_request
from collector.otlp_decode import decode_json, decode_protobuf
from tests.collector.builders import INGEST, settings

DATA = Path(__file__).resolve().parents[1] / "data" / "otlp_json"
EXAMPLE = DATA / "otlp-example-trace.json"  # opentelemetry-proto examples/trace.json, unchanged
ALL_FORMS = DATA / "all_value_forms.json"
ID_KEYS = ("traceId", "spanId", "parentSpanId")


def example_bytes() -> bytes:
    return EXAMPLE.read_bytes()


def hex_ids_to_base64(node):
    """What a correct reader must do before json_format: ids are hex in OTLP/JSON."""
    if isinstance(node, dict):
        return {key: base64.b64encode(bytes.fromhex(value)).decode()
                if key in ID_KEYS and isinstance(value, str) else hex_ids_to_base64(value)
                for key, value in node.items()}
    if isinstance(node, list):
        return [hex_ids_to_base64(item) for item in node]
    return node


def reference_parse(body: bytes) -> ExportTraceServiceRequest:
    """An independent oracle: protobuf's own JSON parser, fed base64 ids."""
    document = hex_ids_to_base64(json.loads(body))
    return json_format.ParseDict(document, ExportTraceServiceRequest(), ignore_unknown_fields=True)


def snake_case(node):
    if isinstance(node, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", key).lower(): snake_case(value)
                for key, value in node.items()}
    if isinstance(node, list):
        return [snake_case(item) for item in node]
    return node


def first_span(request):
    return request.resource_spans[0].scope_spans[0].spans[0]


def test_official_example_decodes_with_hex_ids():
    request = decode_json(example_bytes())
    span = first_span(request)
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert span.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert span.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert (span.start_time_unix_nano, span.end_time_unix_nano) == (1544712660000000000,
                                                                    1544712661000000000)
    assert span.kind == 2 and span.name == "I'm a server span"
    assert request == reference_parse(example_bytes())


def test_official_example_round_trips_through_protobuf():
    request = decode_json(example_bytes())
    assert decode_protobuf(request.SerializeToString()) == request


def test_every_value_form_matches_the_reference_parser():
    body = ALL_FORMS.read_bytes()
    request = decode_json(body)
    assert request == reference_parse(body)
    values = {kv.key: kv.value for kv in first_span(request).attributes}
    assert values["gen_ai.usage.input_tokens"].int_value == 1200  # int64 as a string
    assert values["gen_ai.usage.output_tokens"].int_value == 300  # int64 as a number
    assert values["app.nan"].double_value != values["app.nan"].double_value
    assert values["app.inf"].double_value == float("-inf")
    assert values["app.blob"].bytes_value == b"hello"
    assert [v.WhichOneof("value") for v in values["app.list"].array_value.values] == [
        "string_value", "int_value", None]
    assert values["app.map"].kvlist_value.values[0].key == "k"
    assert values["app.empty"].WhichOneof("value") is None
    assert first_span(request).links[0].span_id == bytes.fromhex("00000000000000a1")


def test_snake_case_keys_and_enum_names_are_accepted():
    document = json.loads(ALL_FORMS.read_bytes())
    span = document["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span["kind"] = "SPAN_KIND_CLIENT"
    span["status"]["code"] = "STATUS_CODE_ERROR"
    camel = decode_json(json.dumps(document).encode())
    snake = decode_json(json.dumps(snake_case(document)).encode())
    assert snake == camel == decode_json(ALL_FORMS.read_bytes())


def test_legacy_instrumentation_library_keys_are_read():
    body = json.dumps({"resourceSpans": [{"instrumentationLibrarySpans": [{
        "instrumentationLibrary": {"name": "old"},
        "spans": [{"traceId": "01" * 16, "spanId": "02" * 8, "name": "s"}]}]}]}).encode()
    scope_spans = decode_json(body).resource_spans[0].scope_spans[0]
    assert (scope_spans.scope.name, scope_spans.spans[0].name) == ("old", "s")


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_empty_body_is_an_empty_request(body):
    assert decode_json(body) == ExportTraceServiceRequest()
    assert decode_protobuf(b"") == ExportTraceServiceRequest()


@pytest.mark.parametrize("body,message", [
    (b'{"resourceSpans": [}', "invalid JSON at line 1 column 20: Expecting value"),
    (b"[1, 2]", "invalid OTLP JSON: expected an object, got an array"),
    (b'{"resourceSpans": {}}', "invalid OTLP JSON at resourceSpans: expected an array, got an object"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "soon"}]}]}]}',
     "invalid OTLP JSON at resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano: "
     "expected an integer, got 'soon'"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"kind": "SIDEWAYS"}]}]}]}',
     "invalid OTLP JSON at resourceSpans[0].scopeSpans[0].spans[0].kind: expected an integer or one "
     "of SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, "
     "SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER, got 'SIDEWAYS'"),
    (b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"bytesValue": "%%"}}]}}]}',
     "invalid OTLP JSON at resourceSpans[0].resource.attributes[0].value.bytesValue: "
     "invalid base64: '%%'"),
    (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"droppedAttributesCount": -1}]}]}]}',
     "invalid OTLP JSON at resourceSpans[0].scopeSpans[0].spans[0].droppedAttributesCount"),
    (b'{"resourceSpans": [{"resource": {"attributes": [{"key": "k", "value": {"intValue": "99999999999999999999"}}]}}]}',
     "invalid OTLP JSON at resourceSpans[0].resource.attributes[0].value.intValue: Value out of range"),
    (b"\xff\xfe\x00garbage", "invalid JSON"),
])
def test_invalid_json_is_a_permanent_error_with_a_readable_message(body, message):
    with pytest.raises(PermanentError) as raised:
        decode_json(body)
    assert raised.value.message.startswith(message)


def test_truncated_protobuf_says_truncated():
    body = decode_json(ALL_FORMS.read_bytes()).SerializeToString()
    with pytest.raises(PermanentError) as raised:
        decode_protobuf(body[:-7])
    assert raised.value.message.startswith("protobuf decode failed: truncated message")


def test_protobuf_garbage_and_every_prefix_fail_only_with_permanent_errors():
    body = decode_json(ALL_FORMS.read_bytes()).SerializeToString()
    rng = random.Random(7)
    candidates = [body[:cut] for cut in range(len(body))]
    for _ in range(300):
        mutated = bytearray(body)
        for _ in range(3):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        candidates.append(bytes(mutated))
    candidates += [b"garbage", b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"]
    failures = 0
    for candidate in candidates:
        try:
            decode_protobuf(candidate)
        except PermanentError as error:
            assert error.message.startswith("protobuf decode failed: ")
            failures += 1
    assert failures > len(body) // 2  # most prefixes really are broken


def test_wrong_json_types_anywhere_fail_only_with_permanent_errors():
    document = json.loads(ALL_FORMS.read_bytes())
    paths = list(_value_paths(document))
    for path in paths:
        for replacement in (7, "x", [], {}, True, None, 1.5, [{}]):
            mutated = copy.deepcopy(document)
            _set_path(mutated, path, replacement)
            try:
                decode_json(json.dumps(mutated).encode())
            except PermanentError as error:
                assert error.message.startswith("invalid OTLP JSON")


@pytest.mark.parametrize("bad_id", ["abcd", "zz" * 16, "zz" * 8, "", "5B8EFFF798038103D269B633813FC60C00"])
def test_a_bad_trace_id_rejects_only_its_span(bad_id):
    good = {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "00000000000000b1",
            "name": "chat", "startTimeUnixNano": "1", "endTimeUnixNano": "2",
            "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "gpt-4o"}}]}
    bad = dict(good, traceId=bad_id, spanId="00000000000000b2")
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [good, bad]}]}]}).encode()
    batch = normalize_request(decode_json(body), settings(), INGEST)
    assert (batch.inferences.num_rows, batch.rejected_spans) == (1, 1)
    assert batch.rejection_messages[0].startswith("span 00000000000000b2 'chat': trace_id must be 16 bytes")


def test_a_bad_span_id_in_json_rejects_only_its_span():
    spans = [{"traceId": "01" * 16, "spanId": span_id, "name": "s", "startTimeUnixNano": "5",
              "endTimeUnixNano": "6",
              "attributes": [{"key": "gen_ai.request.model", "value": {"stringValue": "m"}}]}
             for span_id in ("00000000000000c1", "c2", "not-hex!", "zzzzzzzzzzzzzzzz")]
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}).encode()
    batch = normalize_request(decode_json(body), settings(), INGEST)
    assert (batch.inferences.num_rows, batch.rejected_spans) == (1, 3)
    assert all("span_id must be 8 bytes" in message for message in batch.rejection_messages)


def _value_paths(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield path + (key,)
            yield from _value_paths(value, path + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield path + (index,)
            yield from _value_paths(value, path + (index,))


def _set_path(node, path, value):
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
