"""The C reader (collector/_otlp_reader.c) against the pure-Python path (upb + read_attributes).

Differential: every request must normalize to the same batch (Arrow batches,
counts, rejection messages) or fail with the same ``PermanentError`` message,
whichever path reads it. The requests are real captures, the official OTLP
example, the builders of the other collector tests, the benchmark payload,
hand-written wire forms and seeded random requests and mutations.
"""
from __future__ import annotations

import contextlib
import os
import random
import struct
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                     ExportTraceServiceResponse)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from bench.normalize_micro import build_request as bench_request
from collector import attributes as a
from collector import otlp_reader
from collector.conventions.mapping import KEY_BITS
from collector.errors import PermanentError
from collector.normalize import normalize_protobuf
from collector.otlp_decode import decode_json
from tests import otlp_builders
from tests.collector.builders import INGEST, add_attributes, request, settings, span
from tests.collector.test_conventions import CASES as CONVENTION_CASES
from tests.collector.test_normalize import BAD_SPANS, CHAT, CONTENT
from tests.conftest import wait_for_rows

_otlp_reader = pytest.importorskip("collector._otlp_reader", reason="C reader not built (no compiler)")

DATA = Path(__file__).resolve().parents[1] / "data"
JSON_BODIES = sorted([*DATA.glob("payloads/*.json"), *DATA.glob("otlp_json/*.json")], key=str)  # incl. the OTLP example
SETTINGS = [settings(), settings(capture_content=True), settings(max_attribute_value_bytes=64),
            settings(capture_content=True, max_attribute_value_bytes=64, keep_http_spans=False)]


@contextlib.contextmanager
def pure_python(on: bool = True):
    """The switch on or off, whatever the environment of the test run says."""
    previous = os.environ.get(otlp_reader.PURE_PYTHON_ENV)
    os.environ[otlp_reader.PURE_PYTHON_ENV] = "1" if on else "0"
    try:
        yield
    finally:
        if previous is None:
            del os.environ[otlp_reader.PURE_PYTHON_ENV]
        else:
            os.environ[otlp_reader.PURE_PYTHON_ENV] = previous


def outcome(body: bytes, normalize_settings):
    """The batch as comparable values, or the PermanentError message."""
    try:
        batch = normalize_protobuf(body, normalize_settings, INGEST)
    except PermanentError as error:
        return ("PermanentError", str(error))
    return (batch.inferences, batch.http_attempts, batch.spans_received, batch.rejected_spans,
            batch.rejection_messages, batch.dropped_spans)


def assert_same(body: bytes, normalize_settings, *, read_in_c: bool | None = True):
    """Both paths agree; ``read_in_c``: the C reader must (True) or must not (False) take the body."""
    with pure_python(False):
        taken = otlp_reader.read_request(body, normalize_settings.capture_content,
                                         normalize_settings.max_attribute_value_bytes) is not None
        fast = outcome(body, normalize_settings)
    if read_in_c is not None:
        assert taken == read_in_c, body[:200]
    with pure_python():
        slow = outcome(body, normalize_settings)
    if slow[0] == "PermanentError" or fast[0] == "PermanentError":
        assert fast == slow
        return taken
    for fast_batch, slow_batch in zip(fast[:2], slow[:2]):
        assert fast_batch.to_pylist() == slow_batch.to_pylist()
        assert fast_batch.equals(slow_batch)
        assert fast_batch.schema.equals(slow_batch.schema, check_metadata=True)
    assert fast[2:] == slow[2:]
    return taken


def read_in_c(body: bytes, capture_content: bool = False, max_value_bytes: int = 100) -> list:
    with pure_python(False):
        resources = otlp_reader.read_request(body, capture_content, max_value_bytes)
    assert resources is not None
    return resources


def json_body(path: Path) -> bytes:
    return decode_json(path.read_bytes()).SerializeToString()


# --- differential: real and built requests -----------------------------------------


@pytest.mark.parametrize("path", JSON_BODIES, ids=[p.stem for p in JSON_BODIES])
@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_captured_and_example_requests(path, index):
    assert_same(json_body(path), SETTINGS[index])


@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_convention_cases_in_one_request(index):
    spans = [span(attributes) for _, attributes, *_ in CONVENTION_CASES]
    assert_same(request(*spans).SerializeToString(), SETTINGS[index])


@pytest.mark.parametrize("fields,problem", BAD_SPANS, ids=[p for _, p in BAD_SPANS])
def test_rejected_spans(fields, problem):
    fields = dict(fields)
    bad = span(fields.pop("attributes", CHAT), name="bad one", **fields)
    body = request(span(CHAT), bad, span(CHAT)).SerializeToString()
    assert_same(body, settings())
    assert problem in outcome(body, settings())[4][0]


def test_many_rejections_keep_the_first_messages():
    body = request(*[span(CHAT, trace_id=bytes(3), name=f"s{i}") for i in range(9)]).SerializeToString()
    assert_same(body, settings())


@pytest.mark.parametrize("capture", [False, True])
def test_content_keys_with_and_without_capture(capture):
    finish = {"gen_ai.completion.0.finish_reason": "stop", "gen_ai.completion.1.finish_reason": 7,
              "gen_ai.completion.2.finish_reason": None}
    body = request(span({**CHAT, **CONTENT, **finish, "llm.request.functions.0.name": "f"})).SerializeToString()
    assert_same(body, settings(capture_content=capture))


def test_every_value_kind_on_span_and_resource():
    values = {"s": "text", "empty": "", "i": -(2**63), "big": 2**63 - 1, "f": 0.25, "negzero": -0.0,
              "nan": float("nan"), "inf": float("inf"), "-inf": float("-inf"), "t": True, "false": False,
              "b": b"\x00\xffbytes", "no value": None, "arr": [1, "x", [2.5, None], {"k": b"\x01"}],
              "kv": {"a": {"b": {"c": [True, float("nan")]}}, "dup": 1}, "emptyarr": [], "emptykv": {},
              "unicode ключ": "значение ✓ 𝄞"}
    for capture in (False, True):
        assert_same(request(span({**CHAT, **values}), resource=values).SerializeToString(),
                    settings(capture_content=capture))
    mapped = {key: value for key, value in zip(sorted(KEY_BITS), list(values.values()) * 10)}
    assert_same(request(span(mapped)).SerializeToString(), settings())


def test_truncation_over_the_limit():
    long_values = {"gen_ai.response.id": "x" * 200, "multibyte": "é" * 40 + "𝄞" * 20,
                   "gen_ai.request.model": "m" * 65, "exact": "y" * 64, "list": ["z" * 100],
                   "gen_ai.input.messages": "ü" * 100}
    for limit in (64, 65, 66, 67, 100, 16384):
        for capture in (False, True):
            body = request(span({**CHAT, **long_values}), resource=long_values).SerializeToString()
            assert_same(body, settings(max_attribute_value_bytes=limit, capture_content=capture))


def test_langfuse_usage_json_and_levels():
    spans = [span({"langfuse.observation.type": "generation", "langfuse.observation.model.name": "gpt-4o",
                   "langfuse.observation.usage_details": usage, "langfuse.observation.level": level})
             for usage, level in [('{"input": 10, "output": 5, "total": 15}', "DEFAULT"),
                                  ('{"prompt_tokens": 3, "completion_tokens": 4}', "ERROR"),
                                  ("not json", "WARNING"), ('{"input": -1}', "DEFAULT")]]
    assert_same(request(*spans, resource={"langfuse.release": "r1", "langfuse.environment": "dev"})
                .SerializeToString(), settings())


def test_links_events_status():
    review_of, retry_of = bytes(range(1, 9)), bytes(range(2, 10))
    spans = [
        span({**CHAT, "inferledger.review.outcome": "approved"}, links=[(review_of, {"inferledger.link.type": "review_of"})]),
        span({**CHAT}, links=[(retry_of, {"inferledger.link.type": "retry_of"}), (bytes(3), {}),
                              (review_of, {"other": [1, 2]})]),
        span({**CHAT}, status=2, events=[("log", {"x": 1}), ("exception", {"exception.type": "ValueError",
                                                                          "exception.message": "m"})]),
        span({**CHAT, "http.response.status_code": 503}, status=2),
        span({"http.request.method": "POST", "http.response.status_code": 429, "server.address": "h"}, kind=3),
        span({"http.method": "GET"}, kind=2),
    ]
    built = request(*spans)
    built.resource_spans[0].scope_spans[0].spans[2].status.message = "boom ✗"
    assert_same(built.SerializeToString(), settings())
    [resource] = read_in_c(built.SerializeToString())
    fast_span = resource[1][2]
    assert (fast_span.status.code, fast_span.status.message) == (2, "boom ✗")
    assert [event.name for event in fast_span.events] == ["log", "exception"]
    assert len(fast_span.links) == 0 and len(resource[1][1].links) == 3


def test_interleaved_events_and_links_keep_their_order():
    """Events and links between other fields: the C reader gathers their bytes for upb."""
    tail = b"".join(Span(events=[Span.Event(name=f"e{i}")], links=[Span.Link(span_id=bytes([i]) * 8)])
                    .SerializeToString() + _field(6, 0, b"\x03") for i in range(1, 4))
    body = _wrap_span(_chat_span_bytes(status=2) + tail)
    assert_same(body, settings())
    [(_, [fast_span])] = read_in_c(body)
    assert [event.name for event in fast_span.events] == ["e1", "e2", "e3"]
    assert [link.span_id for link in fast_span.links] == [bytes([i]) * 8 for i in (1, 2, 3)]


def test_invalid_ids_of_every_length():
    spans = [span(CHAT, trace_id=bytes([1]) * n, span_id=bytes([2]) * m, parent=bytes([3]) * p)
             for n, m, p in [(0, 8, 0), (16, 0, 0), (17, 8, 8), (16, 9, 7), (16, 8, 16), (16, 8, 8)]]
    assert_same(request(*spans).SerializeToString(), settings())


def test_multiple_resources_and_scopes_and_empty_ones():
    built = ExportTraceServiceRequest()
    for service in ("a", "b", "c"):
        resource_spans = built.resource_spans.add()
        add_attributes(resource_spans.resource.attributes, {"service.name": service, "inferledger.tenant.id": "t"})
        for scope in range(3 if service != "c" else 0):
            scope_spans = resource_spans.scope_spans.add()
            scope_spans.scope.name = f"scope {scope}"
            scope_spans.spans.extend(span(CHAT) for _ in range(scope))
    built.resource_spans.add()  # no resource at all
    built.resource_spans[-1].scope_spans.add().spans.append(span(CHAT))
    assert_same(built.SerializeToString(), settings())


def test_empty_request_and_empty_body():
    assert_same(b"", settings())
    assert_same(ExportTraceServiceRequest(resource_spans=[ResourceSpans()]).SerializeToString(), settings())


def test_bench_payload_and_other_builders():
    assert_same(bench_request(64).SerializeToString(), settings())
    spans = [otlp_builders.genai_span(error="RateLimitError"), otlp_builders.genai_span(
        input_tokens=2**40, gen_ai__usage__cost=0.5, gen_ai__usage__cost__currency="EUR")]
    assert_same(otlp_builders.export_request(spans, deployment__environment__name="prod").SerializeToString(),
                settings())


# --- wire forms that only upb may judge, and forms the C reader must read like upb ----------


def _field(number: int, wire_type: int, payload: bytes) -> bytes:
    tag = _varint(number << 3 | wire_type)
    return tag + (_varint(len(payload)) + payload if wire_type == 2 else payload)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _wrap_span(span_bytes: bytes) -> bytes:
    return _field(1, 2, _field(2, 2, _field(2, 2, span_bytes)))


def _chat_span_bytes(**fields) -> bytes:
    return span(CHAT, **fields).SerializeToString()


def _attribute(key: bytes, value: bytes) -> bytes:
    return _field(9, 2, _field(1, 2, key) + _field(2, 2, value))


UPB_DECIDES = {
    "invalid utf-8 in a name": _field(5, 2, b"\xff\xfe"),
    "surrogate in a key": _attribute(b"k\xed\xa0\x80", _field(1, 2, b"v")),
    "overlong utf-8 in a value": _attribute(b"k", _field(1, 2, b"\xc0\xaf")),
    "invalid utf-8 in a dropped content value": _attribute(b"gen_ai.prompt.0.content", _field(1, 2, b"\xff")),
    "invalid utf-8 in a trace_state": _field(3, 2, b"\x80"),
    "invalid utf-8 in an event name": _field(11, 2, _field(2, 2, b"\xe2\x82")),
    "invalid utf-8 in a status message": _field(15, 2, _field(2, 2, b"\xf5\x80\x80\x80")),
    "invalid utf-8 in an overwritten name": _field(5, 2, b"\xff") + _field(5, 2, b"ok"),
    "two oneof members": _attribute(b"k", _field(1, 2, b"v") + _field(3, 0, b"\x05")),
    "a value given twice": _field(9, 2, _field(1, 2, b"k") + _field(2, 2, b"") + _field(2, 2, b"")),
    "a group": b"\xfb\x01\xfc\x01",
    "an end-group tag": b"\x0c",
    "wire type 6": b"\x0e\x00",
    "field number 0": b"\x00\x01",
    "a name sent as a varint": _field(5, 0, b"\x01"),
    "a start time sent as a varint": _field(7, 0, b"\x01"),
    "an attribute sent as fixed64": _field(9, 1, b"\x00" * 8),
    "a kind beyond int32": _field(6, 0, _varint(2**32)),
    "a 10-byte varint with high bits": _field(10, 0, b"\xff" * 9 + b"\x7f"),
    "an 11-byte varint": _field(10, 0, b"\xff" * 10 + b"\x01"),
    "a length beyond the message": b"\x2a\x05ab",
    "a cut fixed64": b"\x39\x01\x02",
}


@pytest.mark.parametrize("extra", UPB_DECIDES.values(), ids=UPB_DECIDES.keys())
def test_unusual_wire_forms_go_to_upb(extra):
    assert_same(_wrap_span(_chat_span_bytes() + extra), settings(), read_in_c=False)


C_READS = {
    "unknown fields of every wire type": _field(99, 0, b"\x01") + _field(98, 1, b"\x00" * 8)
    + _field(97, 2, b"\xff\xfe") + _field(96, 5, b"\x00" * 4),
    "an unknown field inside an attribute value": _attribute(b"gen_ai.response.id", _field(1, 2, b"r") + _field(42, 0, b"\x01")),
    "a name given twice": _field(5, 2, b"first") + _field(5, 2, b"second"),
    "a kind given twice": _field(6, 0, b"\x01") + _field(6, 0, b"\x03"),
    "a negative kind": _field(6, 0, _varint(2**64 - 1)),
    "a status given twice": _field(15, 2, _field(3, 0, b"\x02")) + _field(15, 2, _field(2, 2, b"m")),
    "a key given twice": _field(9, 2, _field(1, 2, b"a") + _field(1, 2, b"error.type") + _field(2, 2, _field(1, 2, b"E"))),
    "a key_strindex": _field(9, 2, _field(1, 2, b"k") + _field(3, 0, b"\x07") + _field(2, 2, _field(3, 0, b"\x01"))),
    "a string_value_strindex": _attribute(b"k", _field(8, 0, b"\x03")),
    "an empty string value": _attribute(b"gen_ai.request.model", _field(1, 2, b"")),
    "a value with no kind": _attribute(b"gen_ai.request.model", b""),
    "a bool sent as a long varint": _attribute(b"inferledger.cache.hit", _field(2, 0, b"\x80\x01")),
    "an attribute without a key": _field(9, 2, _field(2, 2, _field(1, 2, b"v"))),
    "an attribute without a value": _field(9, 2, _field(1, 2, b"gen_ai.request.model")),
    "a finish reason that is not a string": _attribute(b"gen_ai.completion.0.finish_reason", _field(3, 0, b"\x01")),
    "a 10-byte varint": _attribute(b"gen_ai.usage.input_tokens", _field(3, 0, b"\xff" * 9 + b"\x01")),
    "redundant varint bytes": _field(6, 0, b"\x83\x80\x00"),
    "flags": _field(16, 5, b"\x01\x00\x00\x00"),
    "a NaN with a payload": _attribute(b"x", _field(4, 1, struct.pack("<Q", 0x7FF8_0000_0000_1234))),
    "a link with bad ids and attributes": _field(13, 2, _field(2, 2, b"\x01") + _field(4, 2, _field(1, 2, b"inferledger.link.type"))),
}


@pytest.mark.parametrize("extra", C_READS.values(), ids=C_READS.keys())
@pytest.mark.parametrize("capture", [False, True])
def test_wire_forms_read_in_c_like_upb(extra, capture):
    assert_same(_wrap_span(_chat_span_bytes() + extra), settings(capture_content=capture))


def test_resource_given_twice_merges_its_attributes():
    first = _field(1, 2, _field(1, 2, _field(1, 2, b"service.name") + _field(2, 2, _field(1, 2, b"a"))))
    second = _field(1, 2, _field(1, 2, _field(1, 2, b"inferledger.tenant.id") + _field(2, 2, _field(1, 2, b"t"))))
    body = _field(1, 2, first + _field(2, 2, _field(2, 2, _chat_span_bytes())) + second)
    assert_same(body, settings())


def test_nesting_deeper_than_the_c_limit_goes_to_upb():
    """Built as bytes: upb itself refuses more than 31 levels (Exceeded upb_DecodeOptions_MaxDepth)."""
    for depth, read_in_c in [(5, True), (18, True), (25, False), (31, False), (32, False), (200, False)]:
        value = _field(1, 2, b"leaf")
        for _ in range(depth):
            value = _field(6, 2, _field(1, 2, _field(1, 2, b"k") + _field(2, 2, value)))
        for key in (b"deep", b"gen_ai.prompt.0.content"):
            for capture in (False, True):
                assert_same(_wrap_span(_chat_span_bytes() + _attribute(key, value)),
                            settings(capture_content=capture), read_in_c=read_in_c)


def test_utf8_check_agrees_with_python():
    rng = random.Random(7)
    samples = [b"", b"a", b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xe0\x9f\xbf", b"\xed\x9f\xbf",
               b"\xed\xa0\x80", b"\xef\xbf\xbf", b"\xf0\x90\x80\x80", b"\xf0\x8f\xbf\xbf", b"\xf4\x8f\xbf\xbf",
               b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xc1\xbf", b"\x80", b"abcdefgh\xc3", b"\x00" * 9]
    alphabet = [0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED, 0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0xA0, 0x9F, 0x90, 0x8F]
    samples += [bytes(rng.choice(alphabet) for _ in range(rng.randrange(12))) for _ in range(20000)]
    samples += ["ascii then é 𝄞 ✓".encode()[:n] for n in range(25)]
    for sample in samples:
        try:
            sample.decode("utf-8")
            expected = True
        except UnicodeDecodeError:
            expected = False
        assert _otlp_reader.utf8_valid(sample) is expected, sample


# --- seeded random requests and mutations ----------------------------------------------

KEYS = [*KEY_BITS, *sorted(a.CONTENT_KEYS), "gen_ai.prompt.0.content", "gen_ai.completion.0.content",
        "gen_ai.completion.0.finish_reason", "llm.input_messages.0.message.role", "http.request.method",
        "http.response.status_code", "http.method", "server.address", "net.peer.name", "error.type",
        "user.email", "user.name", "service.name", "custom.key", "ключ", ""]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(12 if depth < 3 else 9)
    if kind == 0:
        return None
    if kind == 1:
        return rng.choice(["", "chat", "openai", "gpt-4o", "LLM", "generation", "ERROR", "12", "3.5",
                           "true", "[\"stop\"]", '{"input": 5, "output": 2}', "default", "USD", "EUR",
                           "<class 'x.Error'>", "api.openai.com", "review_of", "retry_of"])
    if kind == 2:
        return "".join(rng.choice("aé✓𝄞 x\n\"") for _ in range(rng.randrange(120)))
    if kind == 3:
        return rng.choice([0, 1, -1, 5, 300, 10**7 + 1, 2**63 - 1, -(2**63)])
    if kind == 4:
        return rng.choice([0.0, -0.0, 2.0, 1.5, -3.25, 1e300, float("nan"), float("inf"), float("-inf")])
    if kind == 5:
        return rng.random() < 0.5
    if kind in (6, 7, 8):
        return bytes(rng.randrange(256) for _ in range(rng.randrange(10)))
    if kind in (9, 10):
        return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(KEYS): random_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def random_request(rng: random.Random) -> ExportTraceServiceRequest:
    built = ExportTraceServiceRequest()
    for _ in range(rng.randrange(1, 3)):
        resource_spans = built.resource_spans.add()
        add_attributes(resource_spans.resource.attributes,
                       {rng.choice(KEYS): random_value(rng) for _ in range(rng.randrange(4))})
        for _ in range(rng.randrange(1, 3)):
            scope_spans = resource_spans.scope_spans.add()
            for _ in range(rng.randrange(4)):
                attributes = {rng.choice(KEYS): random_value(rng) for _ in range(rng.randrange(12))}
                if rng.random() < 0.6:
                    attributes.update(CHAT)
                start = rng.choice([0, 1_700_000_000_000_000_000])
                one = span(attributes, name=rng.choice(["chat gpt-4o", "", "é", "embeddings x"]),
                           kind=rng.randrange(6), status=rng.randrange(3),
                           trace_id=rng.choice([bytes(range(1, 17)), b"", bytes(16), b"\x01" * 17]),
                           span_id=rng.choice([None, None, b"\x00" * 8, b"\x02"]),
                           parent=rng.choice([b"", bytes(range(8)), b"\x01\x02"]),
                           start=start, duration_ns=rng.choice([0, 5, -5 if start else 1, 10**9]),
                           events=[(rng.choice(["exception", "log"]), {"exception.type": random_value(rng)})
                                   for _ in range(rng.randrange(2))],
                           links=[(rng.choice([bytes(range(8)), b"", bytes(8)]),
                                   {"inferledger.link.type": rng.choice(["retry_of", "review_of", None, 3])})
                                  for _ in range(rng.randrange(2))])
                scope_spans.spans.append(one)
    return built


def test_random_requests():
    rng = random.Random(20260510)
    for case in range(400):
        body = random_request(rng).SerializeToString()
        assert_same(body, SETTINGS[case % len(SETTINGS)])


def mutate(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randrange(1, 4)):
        choice = rng.randrange(5)
        if choice == 0 and data:  # flip a byte
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif choice == 1 and data:  # flip a bit
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        elif choice == 2:  # cut
            data = data[:rng.randrange(len(data) + 1)]
        elif choice == 3:  # insert random bytes
            position = rng.randrange(len(data) + 1)
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 6)))
        elif data:  # repeat a slice
            start = rng.randrange(len(data))
            data[start:start] = data[start:start + rng.randrange(1, 40)]
    return bytes(data)


def test_mutated_truncated_and_random_bodies():
    rng = random.Random(99)
    seeds = [json_body(path) for path in JSON_BODIES] + [
        random_request(rng).SerializeToString() for _ in range(20)]
    read_in_c = 0
    cases = 3000
    for case in range(cases):
        seed = rng.choice(seeds)
        if case % 10 == 0:
            body = bytes(rng.randrange(256) for _ in range(rng.randrange(64)))
        elif case % 10 == 1:
            body = seed[:rng.randrange(len(seed) + 1)]
        else:
            body = mutate(rng, seed)
        read_in_c += assert_same(body, SETTINGS[case % len(SETTINGS)], read_in_c=None)
    assert read_in_c > cases // 20  # the C path itself was exercised (upb accepts ~10% of these)


# --- the switch and the fallback -------------------------------------------------------


def test_the_switch_turns_the_c_reader_off():
    body = request(span(CHAT)).SerializeToString()
    with pure_python(False):
        assert otlp_reader.enabled()
    with pure_python():
        assert not otlp_reader.enabled()
        assert otlp_reader.read_request(body, False, 100) is None


def test_without_the_extension_everything_goes_through_upb(monkeypatch):
    body = request(span(CHAT)).SerializeToString()
    expected = outcome(body, settings())
    monkeypatch.setattr(otlp_reader, "_otlp_reader", None)
    assert not otlp_reader.enabled()
    assert otlp_reader.read_request(body, False, 100) is None
    got = outcome(body, settings())
    assert got[0].equals(expected[0]) and got[2:] == expected[2:]
    with pytest.raises(PermanentError, match="truncated message"):
        normalize_protobuf(body[:-3], settings(), INGEST)


def test_a_span_value_set_through_the_builders_matches_upb_attribute_by_attribute():
    """The sorted attributes themselves, not only the batch they end up in."""
    values = {**CHAT, **CONTENT, "gen_ai.completion.0.finish_reason": "length", "x": [1, {"y": b"z"}],
              "gen_ai.response.finish_reasons": ["stop"], "server.address": "api.openai.com"}
    built = span(values)
    for capture in (False, True):
        expected = a.read_attributes(built.attributes, KEY_BITS, capture, 64)
        [(_, [fast_span])] = read_in_c(_wrap_span(built.SerializeToString()), capture, 64)
        got = fast_span.sorted_attributes
        assert (list(got.known.items()), list(got.extra.items()), got.bits_seen, got.completion_finish) == (
            list(expected.known.items()), list(expected.extra.items()), expected.bits_seen,
            expected.completion_finish)


# --- gRPC hands the raw bytes to the same path ---------------------------------------------


def test_grpc_export_reads_the_raw_bytes(collector):
    """A real gRPC call: valid bytes are stored, malformed bytes are INVALID_ARGUMENT with the reason."""
    channel = grpc.insecure_channel(collector.grpc_target)
    export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                                 request_serializer=None, response_deserializer=ExportTraceServiceResponse.FromString)
    body = request(span(CHAT), span({"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": -1})).SerializeToString()
    with channel:
        reply = export(body, timeout=10)
        with pytest.raises(grpc.RpcError) as refused:
            export(body[:-4], timeout=10)
    assert reply.partial_success.rejected_spans == 1
    assert "input_tokens = -1" in reply.partial_success.error_message
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith("protobuf decode failed: truncated message")
    wait_for_rows(collector.data_dir, "select * from inferences", 1)
