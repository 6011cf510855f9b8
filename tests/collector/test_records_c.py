"""The C record maker, column builder and JSON encoder against the Python code they replace.

Differential, like tests/collector/test_otlp_reader.py: each request must
normalize to the same batch, counts and messages through the C path and
through upb + Python. The cases sit on each boundary between what
collector/_records.c builds itself and what it hands to ``_Batch.add``, and
the tests say on which side each case falls, so that a fast path cannot
silently disappear. Then seeded random GenAI spans, random columns and
random JSON values.
"""
from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest

from bench.normalize_micro import build_request as bench_request
from collector import attributes as a
from collector import normalize
from collector.conventions.mapping import KEY_BITS, SPECS
from collector.redact import RedactionRules
from tests.collector.builders import INGEST, T0, request, settings, span
from tests.collector.test_normalize import BAD_SPANS, CHAT, CONTENT
from tests.collector.test_otlp_reader import SETTINGS, assert_same, pure_python, read_in_c

_otlp_reader = pytest.importorskip("collector._otlp_reader", reason="C extension not built (no compiler)")

PARENT = bytes.fromhex("0123456789abcdef")


def handed_to_python(body: bytes, normalize_settings) -> int:
    """How many spans of the body the C record maker gives to ``_Batch.add``."""
    handed = []
    batch = normalize._Batch(normalize_settings, INGEST, presorted=True)
    assert batch.record_maker is not None

    def fallback(one_span, resource):
        handed.append(one_span)
        batch.add(one_span, resource)

    s = normalize_settings
    redact = s.redactor.redact_content if s.redactor is not None else None
    for attributes, spans in read_in_c(body, s.capture_content, s.max_attribute_value_bytes):
        batch.record_maker.add(spans, normalize._Resource(attributes, s), batch.inferences,
                               batch.ingest_us, s.pseudonymizer, redact, s.max_tokens, s.keep_http_spans,
                               fallback, batch._reject_error)
    return len(handed)


def check(*spans, resource=None, in_c: bool, normalize_settings=None, **span_kwargs):
    """Both paths agree on the request, and the C maker builds the spans itself or not."""
    normalize_settings = normalize_settings or settings()
    body = request(*spans, resource=resource).SerializeToString()
    assert_same(body, normalize_settings)
    handed = handed_to_python(body, normalize_settings)
    assert (handed == 0) == in_c, f"{handed} of {len(spans)} spans went to Python"


# --- built in C ------------------------------------------------------------------------

BUILT_IN_C = {
    "chat": CHAT,
    "no other attributes": {"gen_ai.request.model": "m"},
    "better key unusable, worse key usable": {**CHAT, "gen_ai.provider.name": "", "gen_ai.system": "openai"},
    "empty strings": {**CHAT, "gen_ai.request.model": "", "gen_ai.response.model": "", "llm.model_name": ""},
    "non-ASCII": {**CHAT, "gen_ai.request.model": "модель-✓-𝄞", "inferledger.tenant.id": "é\n\"\\\x01"},
    "tokens as strings and floats": {**CHAT, "gen_ai.usage.input_tokens": " 12 ", "gen_ai.usage.output_tokens": 7.0,
                                     "gen_ai.usage.reasoning_tokens": "3.0"},
    "tokens unusable": {**CHAT, "gen_ai.usage.input_tokens": 7.5, "gen_ai.usage.prompt_tokens": True,
                        "llm.token_count.prompt": "x"},
    "cache beside input": {**CHAT, "gen_ai.usage.cache_read.input_tokens": 50,
                           "gen_ai.usage.cache_creation.input_tokens": 3},
    "cache inside input": {**CHAT, "gen_ai.usage.cache_read.input_tokens": 4},
    "total says cache beside": {**CHAT, "gen_ai.usage.cache_read.input_tokens": 4, "gen_ai.usage.total_tokens": 19},
    "reasoning beside output": {**CHAT, "gen_ai.usage.reasoning.output_tokens": 9},
    "total says reasoning beside": {**CHAT, "gen_ai.usage.reasoning.output_tokens": 2, "llm.usage.total_tokens": 17},
    "total mismatch (gen_ai)": {**CHAT, "gen_ai.usage.total_tokens": 99},
    "total mismatch (llm)": {**CHAT, "llm.usage.total_tokens": 99},
    "total mismatch (openinference)": {**CHAT, "llm.token_count.total": 99, "llm.token_count.prompt": 3},
    "total without counts": {"gen_ai.request.model": "m", "gen_ai.usage.total_tokens": 5},
    "all notes": {**CHAT, "gen_ai.usage.cache_read.input_tokens": 50, "gen_ai.usage.reasoning.output_tokens": 9,
                  "gen_ai.usage.total_tokens": 1},
    "tokens at the maximum": {**CHAT, "gen_ai.usage.input_tokens": 10_000_000, "gen_ai.usage.output_tokens": 0},
    "finish reasons": {**CHAT, "gen_ai.response.finish_reasons": ["stop", "length", "é"]},
    "finish reasons mixed": {**CHAT, "gen_ai.response.finish_reasons": ["stop", 3, None, True]},
    "finish reasons empty": {**CHAT, "gen_ai.response.finish_reasons": [], "gen_ai.response.finish_reason": "x"},
    "finish reason string": {**CHAT, "llm.response.finish_reason": "stop"},
    "completion finish reasons": {**CHAT, "gen_ai.completion.0.finish_reason": "stop",
                                  "gen_ai.completion.1.finish_reason": "length"},
    "people": {**CHAT, "user.id": "u-1", "inferledger.subject.id": 42, "inferledger.review.reviewer.id": "r"},
    "review with parent": {"inferledger.review.outcome": "approved", "inferledger.review.override": "true",
                           "inferledger.review.duration_s": "12.5"},
    "prediction": {"inferledger.model.name": "fraud-v3", "inferledger.decision.label": "deny",
                   "inferledger.decision.score": 0.25, "inferledger.decision.reasons": ["a", "b"]},
    "decision only": {"inferledger.decision.score": "0.5", "inferledger.decision.label": "deny"},
    "operation from the span name": {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": 1},
    "provider from the host": {"gen_ai.request.model": "m", "server.address": "api.anthropic.com"},
    "provider from the api base": {"gen_ai.request.model": "m", "gen_ai.openai.api_base": "https://x.openai.azure.com/v1"},
    "provider from the pool": {"gen_ai.request.model": "m", "inferledger.compute.pool": "gpu-a"},
    "provider spellings": {**CHAT, "gen_ai.provider.name": " Mistral ", "llm.provider": "aws"},
    "langfuse beside GenAI": {**CHAT, "langfuse.environment": "staging", "langfuse.release": "9",
                              "langfuse.observation.level": "WARNING", "langfuse.session.id": "s"},
    "openllmetry": {**CHAT, "gen_ai.is_streaming": True, "llm.request.type": "chat"},
    "openinference beside GenAI": {**CHAT, "openinference.span.kind": "LLM",
                                   "llm.invocation_parameters": '{"model": "gpt-4o-mini"}'},
    "retries and tiers": {**CHAT, "inferledger.attempt": "2", "http.request.resend_count": 5,
                          "openai.response.service_tier": "default", "openai.request.service_tier": "auto",
                          "inferledger.request.key": "k", "inferledger.cache.hit": 1},
    "costs in USD": {**CHAT, "gen_ai.usage.cost": "0.5", "llm.cost.total": 1, "operation.cost": float("inf")},
    "every value kind in the JSON": {**CHAT, "x.nan": float("nan"), "x.inf": float("-inf"), "x.big": 2**63 - 1,
                                     "x.small": -(2**63), "x.float": 1e-7, "x.float2": 1e16, "x.negzero": -0.0,
                                     "x.bytes": b"\x00\xff", "x.list": [1, "é", [True, None]],
                                     "x.map": {"k": {"n": 1.5}}, "x.none": None, "x.ctl": "\x00\x1f\x7f\u2028"},
}


@pytest.mark.parametrize("attributes", BUILT_IN_C.values(), ids=BUILT_IN_C.keys())
def test_common_spans_are_built_in_c(attributes):
    check(span(attributes), span(attributes, parent=PARENT, name="embeddings é"), in_c=True)


def test_resource_values_and_fallbacks():
    resource = {"service.name": "svc", "deployment.environment": "prod", "inferledger.tenant.id": "t",
                "inferledger.feature.name": "f", "inferledger.budget.id": "b", "inferledger.compute.pool": "p",
                "user.id": "someone", "langfuse.release": "r1", "x": [1, 2]}
    for attributes in ({"gen_ai.request.model": "m"}, {**CHAT, "inferledger.tenant.id": "own"}):
        check(span(attributes), resource=resource, in_c=True)
        check(span({**attributes, "langfuse.release": "span", "langfuse.environment": "e"}), resource={}, in_c=True)


@pytest.mark.parametrize("parent", [b"", bytes(8), PARENT])
def test_reviews_concern_their_parent(parent):
    check(span({"inferledger.review.outcome": "ok"}, parent=parent), in_c=True)
    check(span({"gen_ai.request.model": "m"}, name="review it", parent=parent), in_c=True)


def test_dropped_spans_are_counted_in_c():
    spans = [span({"custom": 1}), span({"http.request.method": "GET"}, kind=1), span({})]
    check(*spans, in_c=True)
    check(span({"http.request.method": "GET", "gen_ai.conversation.id": "c"}), in_c=True,
          normalize_settings=settings(keep_http_spans=False))


def test_the_bench_payload_is_built_in_c():
    body = bench_request(64).SerializeToString()
    assert_same(body, settings())
    assert handed_to_python(body, settings()) == 0


@pytest.mark.parametrize("index", range(len(SETTINGS)))
def test_content_and_limits_of_every_setting(index):
    check(span({**CHAT, **CONTENT, "x.long": "é" * 200}), in_c=True, normalize_settings=SETTINGS[index])


# --- given to Python -----------------------------------------------------------------

GIVEN_TO_PYTHON = {
    "openinference only": {"openinference.span.kind": "LLM", "llm.model_name": "m"},
    "openinference chain": {"openinference.span.kind": "CHAIN", "llm.model_name": "m"},
    "langfuse only": {"langfuse.observation.type": "generation", "langfuse.observation.model.name": "m"},
    "langfuse usage": {**CHAT, "langfuse.observation.usage_details": '{"input": 5, "output": 2}'},
    "langfuse error level": {**CHAT, "langfuse.observation.level": "ERROR"},
    "error.type": {**CHAT, "error.type": "<class 'openai.BadRequestError'>"},
    "cost currency USD": {**CHAT, "gen_ai.usage.cost": 0.5, "gen_ai.usage.cost.currency": "usd"},
    "cost currency EUR": {**CHAT, "gen_ai.usage.cost": 0.5, "gen_ai.usage.cost.currency": "EUR"},
    "personal attribute without a column": {**CHAT, "user.email": "a@b.c"},
    "tokens above the maximum": {**CHAT, "gen_ai.usage.input_tokens": 10_000_001},
    "negative tokens": {**CHAT, "gen_ai.usage.cache_read.input_tokens": -1},
    "huge tokens": {**CHAT, "gen_ai.usage.output_tokens": 2**63 - 1},
    "huge total": {**CHAT, "gen_ai.usage.total_tokens": -(2**63)},
    "unusable value and no provider": {"gen_ai.request.model": "m", "gen_ai.usage.input_tokens": "x",
                                       "server.address": "api.openai.com"},
    "a reader raises": {"gen_ai.provider.name": "openai", "llm.invocation_parameters": '{"model": ' + "[" * 9_000},
}


@pytest.mark.parametrize("attributes", GIVEN_TO_PYTHON.values(), ids=GIVEN_TO_PYTHON.keys())
def test_unusual_spans_go_to_python(attributes):
    check(span(CHAT), span(attributes), span(CHAT, parent=PARENT), in_c=False)


@pytest.mark.parametrize("fields,problem", BAD_SPANS, ids=[p for _, p in BAD_SPANS])
def test_rejected_spans_go_to_python(fields, problem):
    fields = dict(fields)
    check(span(CHAT), span(fields.pop("attributes", CHAT), name="bad", **fields), in_c=False)


def test_status_events_links_and_http_spans_go_to_python():
    check(span(CHAT, status=2), in_c=False)
    check(span(CHAT, status=1), in_c=True)
    check(span(CHAT, events=[("exception", {"exception.type": "ValueError"})]), in_c=False)
    check(span(CHAT, links=[(PARENT, {"inferledger.link.type": "retry_of"})]), in_c=False)
    check(span({"inferledger.review.outcome": "ok"}, links=[(PARENT, {})]), in_c=False)
    check(span({"http.response.status_code": 429, "server.address": "api.openai.com"}), in_c=False)


def test_redaction_runs_on_the_json_of_spans_built_in_c():
    content = {**CHAT, **CONTENT, "gen_ai.prompt.1.content": "call +44 20 7946 0958 or a@b.example"}
    for rules in (RedactionRules(patterns=(("secret", "SECRET-[0-9]+"),)), RedactionRules(builtin=())):
        check(span(content), span(CHAT), in_c=True, normalize_settings=settings(capture_content=True, redaction=rules))
    failing = settings(capture_content=True, redaction=RedactionRules(patterns=(("secret", "SECRET-[0-9]+"),)))
    object.__setattr__(failing, "redactor", _FailingRedactor())
    check(span(content), span({"gen_ai.request.model": "m"}), in_c=True, normalize_settings=failing)


class _FailingRedactor:
    """A redactor that fails on content: the span is rejected the same way on both paths."""

    def redact_content(self, attributes: dict) -> None:
        if any(key.startswith("gen_ai.prompt.") for key in attributes):
            raise ValueError("redaction failed")


def test_odd_token_limits_keep_the_request_in_python():
    body = request(span({**CHAT, **CONTENT})).SerializeToString()
    for max_tokens in (-1, 0, 2**60):
        odd = settings(max_tokens=max_tokens)
        assert (normalize._Batch(odd, INGEST, presorted=True).record_maker is None) == (max_tokens != 0)
        assert_same(body, odd)


def test_too_many_unusable_values_go_to_python():
    attributes = {key: [] for key in sorted(SPECS)}
    attributes["gen_ai.request.model"] = "m"
    check(span(attributes), in_c=False)


class _Unprintable:
    def __str__(self):
        raise ValueError("no text")


def test_an_error_after_the_commit_is_rejected_like_python():
    """The JSON is written after the span's extra dict changed: its error cannot go to Python."""
    batch = normalize._Batch(settings(), INGEST, presorted=True)
    [(attributes, [one])] = read_in_c(request(span({**CHAT, "x": "t"})).SerializeToString())
    one.sorted_attributes.extra["x"] = _Unprintable()  # C declines it, Python's encoder raises
    received, dropped = batch.record_maker.add(
        [one], normalize._Resource(attributes, settings()), batch.inferences, batch.ingest_us,
        batch.settings.pseudonymizer, None, 10, True, batch.add, batch._reject_error)
    assert (received, dropped, batch.rejected, batch.inferences) == (1, 0, 1, [])
    assert batch.messages == [f"span {one.span_id.hex()} 'chat gpt-4o': could not be normalized "
                              "(ValueError: no text)"]


# --- random GenAI spans ---------------------------------------------------------------

MAPPED_KEYS = sorted(KEY_BITS)
# Keys that do not by themselves send a span to Python: most spans of real traffic.
COMMON_KEYS = [key for key in MAPPED_KEYS if not KEY_BITS[key] & (a.MARK_OI | a.MARK_LF | a.PERSONAL_ONLY)
               and key not in (a.ERROR_TYPE, a.GENAI_COST_CURRENCY) and not key.startswith("langfuse.")]
STRINGS = ["", "chat", "openai", "OpenAI ", "gpt-4o", "LLM", "generation", "ERROR", "12", " 7 ", "3.5",
           "1e3", "true", "False", "default", "auto", "USD", "eur", "review", "<class 'x.Error'>",
           "api.openai.com", '["stop"]', '{"model": "m"}', '{"input": 5}', "é✓𝄞", "a\nb\"c\\"]


def random_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(10 if depth < 2 else 7)
    if kind == 0:
        return None
    if kind in (1, 2):
        return rng.choice(STRINGS)
    if kind == 3:
        return rng.choice([0, 1, 2, 5, 40, 9_999, 10_000, 10_001, -1, 2**31, 2**63 - 1, -(2**63)])
    if kind == 4:
        return rng.choice([0.0, -0.0, 2.0, 2.5, 1e300, float("nan"), float("inf"), 40.0])
    if kind == 5:
        return rng.random() < 0.5
    if kind == 6:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(4)))
    if kind in (7, 8):
        return [rng.choice(STRINGS) if rng.random() < 0.8 else random_value(rng, depth + 1)
                for _ in range(rng.randrange(4))]
    return {rng.choice(STRINGS) or "k": random_value(rng, depth + 1) for _ in range(rng.randrange(3))}


def random_span(rng: random.Random):
    keys = MAPPED_KEYS if rng.random() < 0.4 else COMMON_KEYS
    attributes = {key: random_value(rng) for key in rng.sample(keys, rng.randrange(1, 14))}
    if rng.random() < 0.5:
        attributes.update(rng.choice([CHAT, {"gen_ai.request.model": "m"}, {"inferledger.model.name": "x"}]))
    for _ in range(rng.randrange(3)):
        attributes[rng.choice(["x.a", "server.address", "gen_ai.openai.api_base", "é"])] = random_value(rng)
    valid = rng.random() < 0.95
    return span(attributes, name=rng.choice(["chat m", "embeddings", "review", "", "é x"]),
                kind=rng.choice([1, 3, 3]), status=rng.choice([0, 0, 0, 0, 0, 1, 2]),
                parent=rng.choice([b"", bytes(8), PARENT]), duration_ns=rng.choice([0, 1, 10**9, 2**40]),
                trace_id=bytes(range(1, 17)) if valid else bytes(16),
                events=[("log", {})] if rng.random() < 0.05 else (),
                links=[(PARENT, {})] if rng.random() < 0.05 else ())


def test_random_genai_spans():
    rng = random.Random(20261123)
    variants = [*SETTINGS, settings(max_tokens=10_000), settings(keep_http_spans=False, max_tokens=0)]
    spans_seen = handed = 0
    for case in range(100):
        spans = [random_span(rng) for _ in range(50)]
        body = request(*spans, resource=rng.choice([None, {}, {"inferledger.tenant.id": "t",
                                                                "service.version": "", "x": 1.5}])).SerializeToString()
        normalize_settings = variants[case % len(variants)]
        assert_same(body, normalize_settings)
        spans_seen += len(spans)
        handed += handed_to_python(body, normalize_settings)
    assert spans_seen == 5000
    assert 0.15 < handed / spans_seen < 0.85, handed  # both sides of the boundary were exercised


# --- columns (_columns.c) ---------------------------------------------------------------

EVERY_KIND = pa.schema([pa.field("s", pa.string()), pa.field("i", pa.int64()), pa.field("j", pa.int32()),
                        pa.field("f", pa.float64()), pa.field("b", pa.bool_()),
                        pa.field("l", pa.list_(pa.string())), pa.field("t", pa.timestamp("us", tz="UTC"))],
                       metadata={"m": "1"})
COLUMN_VALUES = {
    "s": [None, "", "x", "é✓𝄞", "a" * 300, 5, b"bytes", "\ud800"],
    "i": [None, 0, -1, 2**63 - 1, -(2**63), 2**63, True, 1.0, "1"],
    "j": [None, 0, 2**31 - 1, -(2**31), 2**31, False, 3],
    "f": [None, 0.0, -0.0, 1.5, float("nan"), float("inf"), 1, "x"],
    "b": [None, True, False, 1, 0],
    "l": [None, [], ["a"], ["é", ""], [None], ["a", 1], ("a",), "ab"],
    "t": [None, 0, 1_700_000_000_000_000, -1, 2**63, 1.5],
}
TYPICAL = {"s": [None, "", "x", "é✓𝄞"], "i": [None, 0, 2**63 - 1, -(2**63)], "j": [None, 0, 2**31 - 1],
           "f": [None, 1.5, float("nan")], "b": [None, True, False], "l": [None, [], ["a", "é"]],
           "t": [None, 0, 1_700_000_000_000_000]}


def batch_or_error(build, rows, schema):
    try:
        return build(rows, schema)
    except Exception as error:  # the same error either way
        return (type(error), str(error))


@pytest.mark.parametrize("seed", range(6))
def test_random_columns(seed):
    rng = random.Random(seed)
    pool = TYPICAL if seed % 2 else COLUMN_VALUES
    for _ in range(40):
        rows = [tuple(rng.choice(pool[f.name]) if rng.random() < 0.7 else None for f in EVERY_KIND)
                for _ in range(rng.randrange(1, 30))]
        built_in_c = normalize.otlp_reader.record_batch(rows, EVERY_KIND)
        expected = batch_or_error(normalize._to_batch, rows, EVERY_KIND)
        assert type(batch_or_error(normalize._to_batch_in_c, rows, EVERY_KIND)) is type(expected)
        if isinstance(expected, tuple):
            assert batch_or_error(normalize._to_batch_in_c, rows, EVERY_KIND) == expected
            assert built_in_c is None
            continue
        if pool is TYPICAL:
            assert built_in_c is not None
        got = normalize._to_batch_in_c(rows, EVERY_KIND)
        got.validate(full=True)
        assert got.schema.equals(expected.schema, check_metadata=True)
        assert repr(got.to_pylist()) == repr(expected.to_pylist())  # NaN and -0.0 as well
        no_nan = [row for row in rows if not (type(row[3]) is float and math.isnan(row[3]))]
        if len(no_nan) == len(rows):  # Arrow's equals says NaN != NaN
            assert got.equals(expected)


def test_columns_of_the_warehouse_schemas():
    body = request(*[span(attributes) for attributes in BUILT_IN_C.values()],
                   span({"http.request.method": "GET", "http.response.status_code": 503})).SerializeToString()
    with pure_python(False):
        batch = normalize.normalize_protobuf(body, settings(), INGEST)
    for built in (batch.inferences, batch.http_attempts):
        built.validate(full=True)
        rows = [tuple(row.values()) for row in built.to_pylist()]
        assert normalize.otlp_reader.record_batch([tuple(_raw(v) for v in row) for row in rows],
                                                  built.schema) is not None


def _raw(value):
    """A to_pylist value back as the row value normalize stores (timestamps as µs)."""
    if hasattr(value, "timestamp"):
        return round(value.timestamp() * 1_000_000)
    return value


def test_rows_that_are_not_tuples_of_the_schema_width_are_left_to_pyarrow():
    assert normalize.otlp_reader.record_batch([("x",) * 6], EVERY_KIND) is None
    assert normalize.otlp_reader.record_batch([["x"] * 7], EVERY_KIND) is None
    assert normalize.otlp_reader.record_batch([], EVERY_KIND) is None


# --- JSON (_json.c) -------------------------------------------------------------------


def random_text(rng: random.Random) -> str:
    return "".join(chr(rng.choice([rng.randrange(0x20), rng.randrange(0x20, 0x80), 0x7f, 0xe9, 0x2028,
                                   0x1d11e, 0xfeff, ord('"'), ord("\\")]))
                   for _ in range(rng.randrange(12)))


def json_value(rng: random.Random, depth: int = 0):
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return rng.choice([0, -1, 7, 2**63 - 1, -(2**63), 2**64, -(10**30), 10**400])
    if kind == 2:
        return rng.choice([0.0, -0.0, 0.1, 1e16, 1e-7, 123456789.125, 1e300, -2.5e-300, float("nan"),
                           float("inf"), float("-inf"), 5e-324])
    if kind in (3, 4, 5):
        return random_text(rng)
    if kind in (6, 7):
        return [json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {random_text(rng): json_value(rng, depth + 1) for _ in range(rng.randrange(4))}


def test_json_matches_the_python_encoder_on_random_values():
    rng = random.Random(7)
    for _ in range(5000):
        value = {"k" + str(i): json_value(rng) for i in range(rng.randrange(6))}
        assert _otlp_reader.to_json(value) == a.to_json(value)


def test_json_declines_what_only_the_python_encoder_handles():
    deep = [1]
    for _ in range(80):
        deep = [deep]
    for value in ({"t": (1, 2)}, {1: "x"}, {"s": "\ud800"}, {"o": object()}, {"i": bool}, {"deep": deep},
                  {"sub": type("S", (str,), {})("x")}, {"f": type("F", (float,), {})(1.0)}):
        assert _otlp_reader.to_json(value) is None
    assert _otlp_reader.to_json({"ok": [math.pi, "é", None]}) == a.to_json({"ok": [math.pi, "é", None]})
